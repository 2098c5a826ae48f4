"""The inference stage: answers what no skill matched, from the generative model when one is configured (its text
streamed to the session's event stream as it comes), else with the configured fallback."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import replace

from adapters.db import TranscriptEntry
from adapters.state import Partial
from pipeline.envelope import Envelope, Reply
from pipeline.errors import AssistantError, SkillTimeout
from pipeline.generation import ChatTurn, GenerationRequest, Generator
from pipeline.language import detect_language
from pipeline.settings import Settings
from pipeline.stages import TASK_NAMES, Stage
from tasks.handoff import hold_if_handed_off
from tasks.runtime import StageRuntime
from tasks.stage import NotYet, StageSpec, Waiting, stage_task

logger = logging.getLogger(__name__)

#: What the user hears when the model is down, too slow or answers nothing usable.
UNAVAILABLE = {
    "zh": "抱歉，模型暂时不可用，请稍后再试。",
    "en": "Sorry, the model is unavailable right now. Please try again.",
}
#: ``Reply.error`` of that answer.
MODEL_UNAVAILABLE = "model_unavailable"
#: ``Reply.skill`` of a generated answer.
MODEL_SKILL = "model"
#: The longest generated reply kept (about two Telegram messages); the rest is cut.
MAX_REPLY_CHARACTERS = 8000
#: Seconds a message's generation lease lasts beyond ``MODEL_TIMEOUT_SECONDS``.
GENERATION_LEASE_MARGIN_SECONDS = 30.0
#: How soon a copy of a message being generated looks again.
GENERATION_BUSY_RETRY_SECONDS = 1.0


def handle_unmatched(envelope: Envelope, runtime: StageRuntime, waiting: Waiting) -> None:
    if runtime.settings.model.backend is None:
        runtime.forward.reply(hold_if_handed_off(fallback_reply(envelope, runtime.settings), runtime))
        return
    if _answered_already(envelope, runtime):
        return
    # One generation per message: a second copy (the rescue sweep's, after a model slower than its patience, or a
    # redelivery) waits while this one runs, then finds its reply. The lease outlives the model's timeout; it is
    # kept after success, until the deliverer has the reply, and given back on failure so a retry can run.
    marks = runtime.adapters.marks
    lease = f"inference:{envelope.message_id}"
    if not marks.claim(lease, runtime.settings.model.timeout_seconds + GENERATION_LEASE_MARGIN_SECONDS):
        raise NotYet(GENERATION_BUSY_RETRY_SECONDS)
    try:
        started = time.perf_counter()
        reply = generated_reply(envelope, runtime)
        stamped = envelope.with_timing(str(Stage.INFERENCE), (time.perf_counter() - started) * 1000)
        # The session may have gone to a person while the model worked: then the bot's answer is not given.
        runtime.forward.reply(hold_if_handed_off(replace(reply, timings=stamped.timings), runtime))
    except BaseException:
        marks.release(lease)
        raise


def fallback_reply(envelope: Envelope, settings: Settings) -> Reply:
    """The configured answer in the user's language."""
    language = detect_language(envelope.text, envelope.language)
    text = settings.fallback_reply_zh if language == "zh" else settings.fallback_reply_en
    return Reply.answering(envelope, text, skill="fallback")


def generated_reply(envelope: Envelope, runtime: StageRuntime) -> Reply:
    """The model's answer, its pieces announced to the session as they come; the unavailable answer, counted, when
    the model fails or takes longer than ``MODEL_TIMEOUT_SECONDS``."""
    config = runtime.settings.model
    backend = config.backend or "none"
    language = "zh" if detect_language(envelope.text, envelope.language) == "zh" else "en"
    request = GenerationRequest(
        text=envelope.text,
        language=language,
        history=recent_turns(runtime, envelope, config.history_turns),
        system_prompt=config.system_prompt,
        timeout_seconds=config.timeout_seconds,
        message_id=envelope.message_id,
        session_id=envelope.session_id,
    )
    partials = PartialAnnouncer(runtime, envelope)
    try:
        generator = runtime.generator()
        if generator is None:
            raise RuntimeError("no generator was built")
        text = _generate(runtime, generator, request, partials, config.timeout_seconds)
    except Exception as exc:
        # Whatever failed (down, an error status, too slow, a broken answer), the user is told at once and the
        # message is answered: a retry would keep them waiting for as long again.
        partials.close()
        runtime.adapters.metrics.model_errors.labels(backend).inc()
        logger.warning("model %s failed on message %s: %s", backend, envelope.message_id, _reason(exc))
        return Reply.answering(envelope, UNAVAILABLE[language], skill=MODEL_SKILL, error=MODEL_UNAVAILABLE,
                               language=language)  # fmt: skip
    partials.close()
    return Reply.answering(envelope, text, skill=MODEL_SKILL, language=language)


def _generate(
    runtime: StageRuntime, generator: Generator, request: GenerationRequest, partials: PartialAnnouncer, timeout: float
) -> str:
    # In a thread of its own, so a backend that does not keep to its timeout costs that thread, not the answer.
    with runtime.adapters.metrics.model_call(str(runtime.settings.model.backend)):
        text = runtime.skill_threads.run(lambda: generator.generate(request, partials.announce), timeout, "model")
    if not isinstance(text, str) or not text.strip():
        raise ValueError("the model answered no text")
    return bounded(storable(text.strip()))


def bounded(text: str) -> str:
    """At most ``MAX_REPLY_CHARACTERS``: a server that ignores ``max_tokens`` must not flood a chat, a device or the
    transcript with megabytes."""
    if len(text) <= MAX_REPLY_CHARACTERS:
        return text
    return text[: MAX_REPLY_CHARACTERS - 1].rstrip() + "…"


def storable(text: str) -> str:
    """``text`` without what the transcript and the broker refuse (NUL, unpaired surrogates, which become ``?``)."""
    return text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")


class PartialAnnouncer:
    """Announces the model's pieces of text for one message, numbered, until its reply is made.

    ``close`` waits for a piece being announced and stops any later one: a backend still running past the timeout
    must not announce text after the reply that says it failed.
    """

    def __init__(self, runtime: StageRuntime, envelope: Envelope) -> None:
        self._replies = runtime.adapters.replies
        self._session_id = envelope.session_id
        self._message_id = envelope.message_id
        self._lock = threading.Lock()
        self._index = 0
        self._closed = False
        self._failed = False

    def announce(self, delta: str) -> None:
        if not delta:
            return
        with self._lock:
            if self._closed:
                return
            partial = Partial(self._session_id, self._message_id, self._index, storable(delta))
            self._index += 1
            try:
                self._replies.publish_partial(partial)
            except Exception as exc:
                # Partials are a courtesy: the reply carries the whole text. Said once per message.
                if not self._failed:
                    logger.warning("could not announce partial text of message %s: %s", self._message_id,
                                   type(exc).__name__)  # fmt: skip
                self._failed = True

    def close(self) -> None:
        with self._lock:
            self._closed = True


def recent_turns(runtime: StageRuntime, envelope: Envelope, count: int) -> tuple[ChatTurn, ...]:
    """The session's last ``count`` exchanges before this message, oldest first, read from the transcript.

    The transcript, not the dialogue state: this stage does not hold the session's turn, and the dispatch stage
    recorded the message (and every earlier one) before handing it over.
    """
    if count <= 0:
        return ()
    # Each exchange is two lines; later messages of the session may be there too, and a few without replies.
    entries = runtime.adapters.repository.transcript(envelope.session_id, limit=4 * count + 8)
    return turns_before(entries, envelope.message_id, count)


def turns_before(entries: Sequence[TranscriptEntry], message_id: str, count: int) -> tuple[ChatTurn, ...]:
    """Exchanges (a message and its reply) among ``entries`` that come before ``message_id``'s line; apologies and
    messages still without a reply are left out, as they tell the model nothing of the conversation."""
    position = next((i for i, e in enumerate(entries) if e.kind == "message" and e.message_id == message_id), None)
    earlier = entries if position is None else entries[:position]
    said = {e.message_id: e.text for e in earlier if e.kind == "message"}
    turns = [
        ChatTurn(said[e.message_id], e.text)
        for e in earlier
        if e.kind == "reply" and e.error is None and e.message_id in said and e.message_id != message_id
    ]
    return tuple(turns[-count:])


def _answered_already(envelope: Envelope, runtime: StageRuntime) -> bool:
    """A redelivered message whose reply went out (or was stored) is not generated again: the first reply stands."""
    if runtime.adapters.replies.reply_for(envelope.message_id) is not None:
        logger.info("message %s was answered already; not generating again", envelope.message_id)
        return True
    stored = runtime.adapters.repository.stored_reply(envelope.message_id)
    if stored is not None:
        logger.warning("message %s has a stored reply that never went out; sending it again", envelope.message_id)
        runtime.forward.reply(replace(stored, recorded=True))
        return True
    return False


def _reason(exc: BaseException) -> str:
    # The model's own wording is kept only for our errors (which never quote text); a library's may quote a reply.
    if isinstance(exc, SkillTimeout):
        return "no answer within the timeout"
    if isinstance(exc, AssistantError):
        return f"{type(exc).__name__}: {exc}"
    return type(exc).__name__


inference_task = stage_task(StageSpec(TASK_NAMES[Stage.INFERENCE], str(Stage.INFERENCE), Envelope.from_json,
                                      handle_unmatched))  # fmt: skip
