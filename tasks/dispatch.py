"""The dispatch stage: one message of a session at a time, a skill answers or inference takes over."""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import replace

from celery import Task, shared_task

from adapters.state import Turn, TurnStart
from pipeline.dialogue import DialogueState
from pipeline.envelope import Envelope, Reply
from pipeline.errors import EnvelopeError
from pipeline.language import detect_language
from pipeline.stages import Stage
from skills.dispatcher import dispatch
from tasks.forward import Forwarder, too_many_deliveries
from tasks.runtime import StageRuntime, runtime_for

logger = logging.getLogger(__name__)

#: Pause between tries for a session's turn; short, since the earlier message is usually nearly done.
TURN_POLL_SECONDS = 0.002
#: Retries of a message whose handling failed for reasons outside the skills (a database outage).
MAX_RETRIES = 3


@shared_task(name="assistant.dispatch", bind=True)
def dispatch_task(self: Task, envelope_json: str) -> None:
    runtime = runtime_for(self.app)
    try:
        envelope = Envelope.from_json(envelope_json)
    except EnvelopeError as exc:
        logger.error("dropping undecodable envelope: %s", exc)
        runtime.adapters.repository.dead_letter(self.name, "dispatch", None, envelope_json, str(exc), 1)
        return
    if too_many_deliveries(self, runtime, envelope.message_id, envelope_json):
        return
    forward = Forwarder(self.app)
    try:
        handle_message(envelope, runtime, forward)
    except Exception as exc:
        # Infrastructure trouble (database or Redis down): try again later, the message is kept.
        if self.request.retries < MAX_RETRIES:
            countdown = min(2**self.request.retries, 30)
            logger.warning("%s %s failed (%r); retrying in %d s", self.name, envelope.message_id, exc, countdown)
            raise self.retry(exc=exc, countdown=countdown) from exc
        logger.exception("giving up on message %s", envelope.message_id)
        runtime.adapters.repository.dead_letter(self.name, "dispatch", envelope.message_id, envelope_json, repr(exc), 0)
        forward.reply(apology(envelope))


def handle_message(envelope: Envelope, runtime: StageRuntime, forward: Forwarder) -> None:
    """Take the session's turn, decide, forward the reply (or hand over to inference), save state."""
    started = time.perf_counter()
    adapters = runtime.adapters
    settings = runtime.settings
    token = uuid.uuid4().hex
    lock_ms = turn_lock_ms(settings.skill_timeout_seconds)
    start = wait_for_turn(runtime, envelope, token, lock_ms)
    if start.turn is Turn.STALE:
        logger.info("message %s was handled already; skipping the redelivery", envelope.message_id)
        return
    completed, new_state = 0, None
    try:
        raw_state = start.state_json
        if raw_state is None:
            # Redis lost the session (restart, eviction) or it is new: rebuild from the database's snapshot.
            record = adapters.repository.load_session(envelope.session_id)
            raw_state = record.state_json if record else None
        state = DialogueState.from_json(raw_state)
        outcome = dispatch(envelope, state, runtime.current_registry(start.skills_version), runtime.run_skill)
        new_state = outcome.state.to_json()
        stamped = envelope.with_timing(str(Stage.DISPATCH), (time.perf_counter() - started) * 1000)
        reply = None if outcome.reply is None else replace(outcome.reply, timings=stamped.timings)
        # The message, the state snapshot and a skill's reply in one transaction, before the reply leaves: a
        # client that has its reply finds both in the transcript. A redelivered message was recorded before
        # (False): its reply is left to the deliverer, which keeps the first one stored.
        recorded = adapters.repository.record_message(envelope, new_state, reply)
        if reply is None:
            forward.to_stage(Stage.INFERENCE, stamped)
        else:
            forward.reply(replace(reply, recorded=recorded))
        completed = envelope.seq
    finally:
        # The state goes back to Redis with the lock's release, in one round trip. On failure the lock is
        # released without marking the message done (seq 0), so its retry is not taken for a redelivery.
        adapters.coordination.finish_turn(
            envelope.session_id, completed, token, settings.session_ttl_seconds, new_state if completed else None
        )


def turn_lock_ms(skill_timeout_seconds: float) -> int:
    """Lifetime of a session's turn lock: it outlives the longest skill, so two workers never run one session."""
    return int((skill_timeout_seconds + 10) * 1000)


def wait_for_turn(runtime: StageRuntime, envelope: Envelope, token: str, lock_ms: int) -> TurnStart:
    """Block until it is this message's turn in its session; past the deadline, go anyway.

    The deadline stops a lost earlier message from holding its session up for ever.
    """
    coordination = runtime.adapters.coordination
    deadline = time.monotonic() + lock_ms / 1000
    while True:
        force = time.monotonic() > deadline
        start = coordination.acquire_turn(envelope.session_id, envelope.seq, token, lock_ms, force)
        if start.turn is not Turn.WAIT:
            return start
        if force:
            logger.warning("session %s still locked after %d ms", envelope.session_id, lock_ms)
            deadline = time.monotonic() + lock_ms / 1000
        time.sleep(TURN_POLL_SECONDS)


def apology(envelope: Envelope) -> Reply:
    """The reply a user gets when their message cannot be handled."""
    language = detect_language(envelope.text, envelope.language)
    text = "抱歉,出了点问题,请稍后再试。" if language == "zh" else "Sorry, something went wrong. Please try again."
    return Reply.answering(envelope, text, error="dispatch_error")
