"""The dispatch stage: one message of a session at a time, a skill answers or inference takes over."""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import replace
from functools import partial

from pipeline.dialogue import DialogueState
from pipeline.envelope import Envelope
from pipeline.stages import TASK_NAMES, Stage
from pipeline.turns import (
    LEASE_RENEW_SECONDS,
    TURN_LOCK_SECONDS,
    TURN_RETRY_MAX_SECONDS,
    TURN_WAIT_LIMIT_SECONDS,
    Turn,
    retry_delay,
)
from skills.dispatcher import Outcome, dispatch
from tasks.handoff import may_hand_off, request_handoff, route_message
from tasks.runtime import StageRuntime
from tasks.stage import NotYet, StageSpec, Waiting, stage_task

logger = logging.getLogger(__name__)


class TurnLease:
    """The session's turn lock, held by one message and renewed while its skill runs."""

    def __init__(self, runtime: StageRuntime, session_id: str, token: str, lock_ms: int) -> None:
        self._coordination = runtime.adapters.coordination
        self._session_id = session_id
        self._token = token
        self._lock_ms = lock_ms
        self._renewed = time.monotonic()

    def renew(self) -> None:
        if time.monotonic() - self._renewed < LEASE_RENEW_SECONDS / 2:
            return
        self._renewed = time.monotonic()
        try:
            if not self._coordination.renew_turn(self._session_id, self._token, self._lock_ms):
                logger.warning("session %s: the turn's lock was lost while its skill ran", self._session_id)
        except Exception as exc:
            logger.warning("session %s: could not renew the turn's lock: %s", self._session_id, type(exc).__name__)


def handle_message(envelope: Envelope, runtime: StageRuntime, waiting: Waiting) -> None:
    """Take the session's turn, decide, forward the reply (or hand over to inference), save state."""
    started = time.perf_counter()
    adapters = runtime.adapters
    settings = runtime.settings
    token = uuid.uuid4().hex
    lock_ms = int(TURN_LOCK_SECONDS * 1000)
    delay = retry_delay(waiting.attempt, waiting.seconds, TURN_WAIT_LIMIT_SECONDS)
    # Past the wait limit an earlier message is taken for lost and this one goes ahead (``force``).
    start = adapters.coordination.acquire_turn(envelope.session_id, envelope.seq, token, lock_ms, delay is None)
    if start.turn is Turn.WAIT:
        raise NotYet(TURN_RETRY_MAX_SECONDS if delay is None else delay)
    if start.turn is Turn.STALE:
        finish_handled(envelope, runtime)
        return
    lease = TurnLease(runtime, envelope.session_id, token, lock_ms)
    completed, new_state = 0, None
    try:
        raw_state = start.state_json
        if raw_state is None:
            # Redis lost the session (restart, eviction) or it is new: rebuild from the database's snapshot.
            record = adapters.repository.load_session(envelope.session_id)
            raw_state = record.state_json if record else None
        state = DialogueState.from_json(raw_state)
        # A web session handed to a person: its messages are held (the bot is silent), or asked for one.
        decided = route_message(envelope, state, runtime)
        if decided is not None:
            outcome = Outcome(replace(state, last_seq=max(state.last_seq, envelope.seq)), decided)
        else:
            run_skill = partial(runtime.run_skill, keep_alive=lease.renew)
            registry = runtime.current_registry(start.skills_version)
            outcome = dispatch(envelope, state, registry, run_skill, runtime.classify, settings.intents.threshold)
            if outcome.handoff and outcome.reply is not None and may_hand_off(envelope):
                asked = request_handoff(envelope, state, runtime, said=outcome.reply.text)
                outcome = replace(outcome, reply=asked or outcome.reply)
        new_state = outcome.state.to_json()
        stamped = envelope.with_timing(str(Stage.DISPATCH), (time.perf_counter() - started) * 1000)
        reply = None if outcome.reply is None else replace(outcome.reply, timings=stamped.timings)
        # The message, the state snapshot and a skill's reply in one transaction, before the reply leaves: a
        # client that has its reply finds both in the transcript. A redelivered message was recorded before
        # (False): its reply is left to the deliverer, which keeps the first one stored.
        recorded = adapters.repository.record_message(envelope, new_state, reply)
        if reply is None:
            runtime.forward.to_stage(Stage.INFERENCE, stamped)
        else:
            runtime.forward.reply(replace(reply, recorded=recorded))
        completed = envelope.seq
    finally:
        # The state goes back to Redis with the lock's release, in one round trip. On failure the lock is
        # released without marking the message done (seq 0), so its retry is not taken for a redelivery.
        owned = adapters.coordination.finish_turn(
            envelope.session_id, completed, token, settings.session_ttl_seconds, new_state if completed else None
        )
        if not owned:
            logger.warning("session %s: message %s outlived its turn's lock; its state was not saved",
                           envelope.session_id, envelope.message_id)  # fmt: skip


def finish_handled(envelope: Envelope, runtime: StageRuntime) -> None:
    """A message handled already (a redelivery, or sent again as lost): make sure its reply went out.

    The reply may have been lost on its way after the turn ended (the broker lost it, or the worker died before
    forwarding it); the skill's reply stored with the message is sent again, or inference is asked again.
    """
    adapters = runtime.adapters
    if adapters.replies.reply_for(envelope.message_id) is not None:
        logger.info("message %s was answered already; skipping the redelivery", envelope.message_id)
        return
    stored = adapters.repository.stored_reply(envelope.message_id)
    logger.warning("message %s was handled but its reply never went out; sending it again", envelope.message_id)
    if stored is not None:
        runtime.forward.reply(replace(stored, recorded=True))
    else:
        runtime.forward.to_stage(Stage.INFERENCE, envelope)


dispatch_task = stage_task(StageSpec(TASK_NAMES[Stage.DISPATCH], str(Stage.DISPATCH), Envelope.from_json,
                                     handle_message))  # fmt: skip
