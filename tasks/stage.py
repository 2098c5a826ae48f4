"""The one stage skeleton: decode, count redeliveries, re-queue a message that must wait, retry with
back-off, and when a message is given up on, dead-letter it, free its place in the session and apologise.

A stage is a plain handler ``(item, runtime, waiting) -> None`` wrapped by ``stage_task``; every stage
(dispatch, inference, the deliverers, and the voice and channel stages to come) gets the same guarantees.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar, cast

from celery import Task, shared_task
from celery.exceptions import Ignore, Reject

from pipeline.envelope import Envelope, Reply
from pipeline.errors import AssistantError, EnvelopeError
from pipeline.language import detect_language
from pipeline.logsafe import trace_without_messages
from pipeline.message_context import MessageContext, stage_of_queue, working_on
from tasks.forward import shown_as
from tasks.runtime import StageRuntime

logger = logging.getLogger(__name__)

T = TypeVar("T", Envelope, Reply)

#: Retries of a message whose handling raised (a database or Redis outage): back-off doubles from 1 s up to
#: 30 s with full jitter, so about a minute and a half in all on average, which rides out a restart of either.
MAX_RETRIES = 10
RETRY_BACKOFF_MAX_SECONDS = 30
#: Delivery counters outlive any redelivery loop.
DELIVERY_COUNT_TTL = 24 * 3600

APOLOGY = {
    "zh": "抱歉，处理您的请求时出了点问题，请稍后再试。",
    "en": "Sorry, something went wrong while handling your request. Please try again.",
}


class Retrying(Exception):
    """What Celery logs with a retry: the failure's kind, without its text."""


class GiveUp(Exception):
    """Raised by a handler when trying again cannot help (a model that fails on this audio, audio that expired):
    the skeleton gives the message up at once, without retries. Its text is logged and dead-lettered, so it must
    not quote the message."""


class NotYet(Exception):
    """Raised by a handler whose message must wait (an earlier one of its session is in flight).

    The skeleton re-queues the message for ``delay`` seconds: it holds no worker thread while it waits.
    """

    def __init__(self, delay: float) -> None:
        super().__init__(f"not yet; again in {delay:g} s")
        self.delay = delay


@dataclass(frozen=True, slots=True)
class Waiting:
    """How long a message has been waiting for its turn: the handler's back-off and deadline read it."""

    #: Times it was re-queued to wait so far.
    attempt: int = 0
    #: Seconds since it first tried.
    seconds: float = 0.0


class StageApp(Protocol):
    """The Celery app as stages see it: it carries this process's runtime (see ``tasks.celery_app``)."""

    @property
    def runtime(self) -> StageRuntime: ...


@dataclass(frozen=True, slots=True)
class StageSpec(Generic[T]):
    """What the skeleton needs to know of a stage."""

    #: The task name, which edges and stages send to.
    name: str
    #: The queue it consumes, for dead letters.
    queue: str
    #: Decodes a queue message; raises ``EnvelopeError``.
    decode: Callable[[str], T]
    #: Handles one decoded message: ``(item, runtime, waiting)``; raises ``NotYet`` to wait.
    handle: Callable[[T, StageRuntime, Waiting], None]
    #: True when its messages come from a user who gets an apology if the stage gives one up (not for
    #: deliverers: their messages are the replies).
    answers_user: bool = True
    #: What to send the user instead of an apology when a message is given up, from its body; None: the apology.
    #: (``tts`` sends the reply it could not speak, unspoken.)
    salvage: Callable[[str], Reply | None] | None = None


def runtime_of(task: Task) -> StageRuntime:
    return cast(StageApp, task.app).runtime


class StageTask(Task):
    """Base of every stage task. Failures retry with back-off; past ``MAX_RETRIES`` the message is given up."""

    abstract = True
    autoretry_for = (Exception,)
    dont_autoretry_for = (EnvelopeError,)
    retry_backoff = 1
    retry_backoff_max = RETRY_BACKOFF_MAX_SECONDS
    retry_jitter = True
    max_retries = MAX_RETRIES
    spec: StageSpec[Any]

    def retry(self, *args: Any, **kwargs: Any) -> Any:
        """Celery's retry (``autoretry_for`` calls it), with three changes.

        Past the last retry the message is given up here (``give_up``) and the task ends as ignored, so Celery
        neither logs the error's text nor fails the task. The error Celery logs with each retry is only its kind:
        a driver's or a skill's message may quote what the user wrote. And a retry the broker would not take
        hands the message back instead of dropping it: Celery rejects a message whose retry it could not
        publish without requeueing it, so a message whose stage failed because the broker (Redis) was down would
        be lost. Requeued, it runs again once the broker is back; if the broker cannot take even that, it stays
        unacknowledged and comes back after the visibility timeout.
        """
        exc = kwargs.get("exc")
        if isinstance(exc, Exception):
            if self.request.retries >= kwargs.get("max_retries", self.max_retries):
                body = self.request.args[0] if self.request.args else ""
                logger.error("%s gave up on message %s after %d retries: %s", self.name, _message_id(body),
                             self.request.retries, trace_without_messages(exc))  # fmt: skip
                give_up(self, body, _reason(exc), deliveries=0)
                raise Ignore()
            kwargs["exc"] = Retrying(_reason(exc))
        try:
            return super().retry(*args, **kwargs)
        except Reject as rejected:
            if rejected.requeue:
                raise
            logger.warning("%s: could not schedule a retry (%s); requeueing the message",
                           self.name, _reason(rejected.reason))  # fmt: skip
            raise Reject(rejected.reason, requeue=True) from None

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        # What ``retry`` did not end: an error outside ``autoretry_for``.
        body = args[0] if args else ""
        logger.error("%s failed on message %s: %s", self.name, _message_id(body), _reason(exc))
        give_up(self, body, _reason(exc), deliveries=0)


def stage_task(spec: StageSpec[T], max_retries: int = MAX_RETRIES) -> Task:
    """The Celery task that runs ``spec.handle`` with the skeleton's guarantees."""

    def run(self: Task, body: str, attempt: int = 0, waiting_since: float | None = None) -> None:
        try:
            item = spec.decode(body)
        except EnvelopeError as exc:
            logger.error("%s: undecodable message dropped: %s", spec.name, exc)
            give_up(self, body, str(exc), deliveries=1)
            return
        context = MessageContext(item.message_id, item.session_id, item.channel, stage_of_queue(spec.queue), spec.name)
        with working_on(context):
            started = time.perf_counter()
            handle(self, spec, item, body, attempt, waiting_since)
            if logger.isEnabledFor(logging.DEBUG):  # the per-message line, as Celery's per-task ones: DEBUG only
                elapsed_ms = round((time.perf_counter() - started) * 1000, 3)
                logger.debug("%s handled message %s", spec.name, item.message_id, extra={"duration_ms": elapsed_ms})

    def handle(self: Task, spec: StageSpec[T], item: T, body: str, attempt: int, waiting_since: float | None) -> None:
        if too_many_deliveries(self, item.message_id, body):
            return
        first_try = waiting_since or time.time()
        try:
            timed(spec)(item, runtime_of(self), Waiting(attempt, time.time() - first_try))
        except EnvelopeError as exc:  # something the message carries cannot be read: retrying will not help
            logger.error("%s: message %s cannot be handled: %s", spec.name, item.message_id, exc)
            give_up(self, body, _reason(exc), deliveries=1)
        except GiveUp as exc:
            logger.error("%s: giving up on message %s: %s", spec.name, item.message_id, exc)
            give_up(self, body, str(exc), deliveries=1)
        except NotYet as wait:
            self.apply_async(
                args=(body,),
                kwargs={"attempt": attempt + 1, "waiting_since": first_try},
                countdown=wait.delay,
                queue=spec.queue,
                **shown_as(item.message_id),
            )

    run.__name__ = spec.name.rsplit(".", 1)[-1]
    # Options become attributes of the generated task class: ``spec`` is read back in ``give_up``.
    task = shared_task(name=spec.name, bind=True, base=StageTask, spec=spec, max_retries=max_retries)(run)
    return cast(Task, task)


def timed(spec: StageSpec[T]) -> Callable[[T, StageRuntime, Waiting], None]:
    """``spec.handle``, observed in ``assistant_stage_seconds{stage}`` however it ends."""

    def handle(item: T, runtime: StageRuntime, waiting: Waiting) -> None:
        started = time.perf_counter()
        try:
            spec.handle(item, runtime, waiting)
        finally:
            seconds = time.perf_counter() - started
            runtime.adapters.metrics.stage_seconds.labels(stage_of_queue(spec.queue)).observe(seconds)

    return handle


def too_many_deliveries(task: Task, message_id: str, body: str) -> bool:
    """Count a redelivery; past ``MAX_DELIVERIES``, give the message up and say so.

    A message that keeps killing its worker is redelivered forever otherwise. First deliveries are not
    counted: the broker marks restored messages ``redelivered``, so the common path costs no round trip.
    """
    delivery_info = task.request.delivery_info or {}
    if not delivery_info.get("redelivered"):
        return False
    runtime = runtime_of(task)
    deliveries = 1 + runtime.adapters.coordination.count_delivery(f"{task.name}:{message_id}", DELIVERY_COUNT_TTL)
    if deliveries <= runtime.settings.max_deliveries:
        logger.info("%s: message %s redelivered (delivery %d)", task.name, message_id, deliveries)
        return False
    logger.error("%s: message %s delivered %d times; giving it up", task.name, message_id, deliveries)
    give_up(task, body, f"delivered {deliveries} times", deliveries)
    return True


def give_up(task: Task, body: str, reason: str, deliveries: int) -> None:
    """Dead-letter ``body``, free its place in the session, and apologise to the user when there is one.

    Each step is tried on its own: an outage that stops one must not stop the others.
    """
    runtime = runtime_of(task)
    spec: StageSpec[Any] = task.spec
    runtime.adapters.metrics.dead_letters.labels(stage_of_queue(spec.queue)).inc()
    ids = _salvage(body)
    steps: list[tuple[str, Callable[[], None]]] = [
        ("dead letter", lambda: runtime.adapters.repository.dead_letter(
            task.name, spec.queue, ids.get("message_id"), redacted(body), reason, deliveries)),
    ]  # fmt: skip
    session_id, seq = ids.get("session_id"), ids.get("seq")
    if isinstance(session_id, str) and isinstance(seq, int) and seq > 0:
        ttl = runtime.settings.session_ttl_seconds
        steps.append(("free its turn", lambda: runtime.adapters.coordination.pass_over(session_id, seq, ttl)))
    apology = _salvaged(spec, body) or (apology_for(ids) if spec.answers_user else None)
    if apology is not None:
        steps.append(("apologise", lambda: runtime.forward.reply(apology)))
    for what, step in steps:
        try:
            step()
        except Exception as exc:
            logger.error("%s: could not %s for message %s: %s", task.name, what, ids.get("message_id"), _reason(exc))


def _salvaged(spec: StageSpec[Any], body: str) -> Reply | None:
    if spec.salvage is None:
        return None
    try:
        return spec.salvage(body)
    except Exception as exc:
        logger.error("%s: could not salvage a reply: %s", spec.name, _reason(exc))
        return None


def apology_for(ids: dict[str, Any]) -> Reply | None:
    """The error reply to a message given up on, when it says who to answer."""
    needed = ("message_id", "session_id", "channel")
    if not all(isinstance(ids.get(key), str) and ids[key] for key in needed):
        return None
    text = ids.get("text") if isinstance(ids.get("text"), str) else ""
    hint = ids.get("language") if isinstance(ids.get("language"), str) else None
    language = detect_language(text or "", hint)
    seq = ids.get("seq")
    wants = ids.get("wants")
    language = "zh" if language == "zh" else "en"
    return Reply(
        message_id=ids["message_id"],
        session_id=ids["session_id"],
        channel=ids["channel"],
        text=APOLOGY[language],
        error="stage_error",
        reply_to=ids.get("reply_to") if isinstance(ids.get("reply_to"), str) else None,
        user_id=str(ids.get("user_id") or ""),
        seq=seq if isinstance(seq, int) else 0,
        accepted_at=float(accepted) if isinstance(accepted := ids.get("created_at"), int | float) else 0.0,
        # Spoken, when the client asked for speech: a voice client may have no screen to show it on.
        wants=tuple(w for w in wants if isinstance(w, str)) if isinstance(wants, list) else ("text",),
        language=language,
    )


def redacted(body: str) -> str:
    """``body`` as kept in the dead-letter table: its ids and shape, never what the user said."""
    try:
        data = json.loads(body)
    except (TypeError, ValueError):
        return json.dumps({"undecodable": True, "length": len(body or "")})
    if not isinstance(data, dict):
        return json.dumps({"undecodable": True, "length": len(body)})
    if isinstance(data.get("text"), str):
        data["text"] = f"<{len(data['text'])} characters>"
    heard = data.get("heard")
    if isinstance(heard, dict) and isinstance(heard.get("text"), str):
        heard["text"] = f"<{len(heard['text'])} characters>"  # a spoken message's transcript
    actions = data.get("actions")
    if isinstance(actions, list):
        # Smart-home actions quote the names the user said in their slots.
        data["actions"] = [{"type": a.get("type"), "intent": a.get("intent"), "targets": a.get("targets")}
                           if isinstance(a, dict) else "<action>" for a in actions]  # fmt: skip
    return json.dumps(data, ensure_ascii=False)


def _salvage(body: str) -> dict[str, Any]:
    """Whatever ids a message body still yields, however broken the rest of it is."""
    try:
        data = json.loads(body)
    except (TypeError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _message_id(body: str) -> str:
    return str(_salvage(body).get("message_id") or "?")


def _reason(exc: BaseException) -> str:
    """Why a message failed, for logs and dead letters: the error's kind, not its text, which may quote user data.

    The assistant's own errors are worded here, so their text is kept.
    """
    if isinstance(exc, AssistantError):
        return f"{type(exc).__name__}: {exc}"
    return type(exc).__name__
