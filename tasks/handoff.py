"""The dispatch stage's side of human handoff (web channel): held messages, asking for a person, the time-out."""

from __future__ import annotations

import logging
import uuid
from dataclasses import replace

from celery import Task, shared_task

from adapters.metrics import HANDOFF_MESSAGE_LEFT, HANDOFF_REQUESTED, HANDOFF_TIMED_OUT
from pipeline.dialogue import DialogueState
from pipeline.envelope import Envelope, Reply, ReplyKind, ReplyRole
from pipeline.handoff import (
    HANDOFF_TIMEOUT_TASK,
    HELD,
    Handoff,
    HandoffStatus,
    asks_for_human,
    handoff_reply,
    timed_out_text,
    visitor_text,
)
from pipeline.language import detect_language
from pipeline.stages import WANTS_TEXT, Channel
from tasks.runtime import StageRuntime
from tasks.stage import MAX_RETRIES, RETRY_BACKOFF_MAX_SECONDS, runtime_of

logger = logging.getLogger(__name__)

#: The role of a website visitor's token: only their sessions are handed to operators.
VISITOR_ROLE = "visitor"
#: Names the time-out reply's message id after its handoff, so a repeated time-out task sends that reply once.
_TIMEOUT_IDS = uuid.UUID("6f1d0c52-8a2e-4f59-9a57-0d3c1b7e4a10")


def route_message(envelope: Envelope, state: DialogueState, runtime: StageRuntime) -> Reply | None:
    """Before the skills: the reply to a web message of a handed-off session, or to one asking for a person;
    None when the bot answers it as usual."""
    if not may_hand_off(envelope):
        return None
    store = runtime.adapters.handoffs
    ttl = runtime.settings.session_ttl_seconds
    current = store.get(envelope.session_id)
    if current is not None and current.handoff_id == envelope.message_id and current.status in HELD:
        # This message asked for the person the session waits for (a redelivery, or a retry after the first
        # attempt failed past the request): its answer again, and its time-out, which that attempt may not have
        # scheduled. A time-out scheduled twice is harmless: the second finds the handoff timed out already.
        if current.status is HandoffStatus.WAITING:
            runtime.forward.handoff_timeout(envelope.session_id, current.handoff_id,
                                            runtime.settings.handoff_wait_seconds)  # fmt: skip
        return _answer(envelope, current, visitor_text(current.status, current.language, current.agent))
    if current is not None and current.status in HELD:
        # A person has the session (or is being waited for): the bot stays silent, the operators see the message.
        noted = store.note(envelope.session_id, envelope.text, ttl) or current
        return _answer(envelope, noted, "", kind=ReplyKind.HELD)
    if current is not None and current.status is HandoffStatus.TIMED_OUT:
        left = store.leave_message(envelope.session_id, envelope.text, ttl)
        if left is not None:
            runtime.adapters.metrics.count_handoff(HANDOFF_MESSAGE_LEFT)
            return _answer(envelope, left, visitor_text(left.status, left.language))
    if asks_for_human(envelope.text):
        return request_handoff(envelope, state, runtime)
    return None


def may_hand_off(envelope: Envelope) -> bool:
    """Only website visitors' sessions go to operators: a household member's web session stays the bot's (its
    transcript is theirs, not the support team's)."""
    return envelope.channel == Channel.WEB and VISITOR_ROLE in envelope.roles


def hold_if_handed_off(reply: Reply, runtime: StageRuntime) -> Reply:
    """``reply`` (the bot's, made after its message was dispatched) as a ``held`` one when the session went to a
    person meanwhile: it is kept in the transcript, but the visitor is not answered by the bot while a person
    is (or is about to be) there."""
    if reply.channel != Channel.WEB or reply.kind != ReplyKind.REPLY or reply.role != ReplyRole.ASSISTANT:
        return reply
    current = runtime.adapters.handoffs.get(reply.session_id)
    if current is None or current.status not in HELD:
        return reply
    logger.info("session %s went to a person before message %s was answered; its reply is held",
                reply.session_id, reply.message_id)  # fmt: skip
    return replace(reply, kind=str(ReplyKind.HELD), wants=(WANTS_TEXT,),
                   handoff={"status": str(current.status), "agent": current.agent})  # fmt: skip


def request_handoff(
    envelope: Envelope, state: DialogueState, runtime: StageRuntime, said: str | None = None
) -> Reply | None:
    """Put the session in the operators' queue (``waiting``) and start its time-out; the ``handoff`` reply, after
    ``said`` (a skill's own words) when given. None when it cannot be asked for now (it is held already)."""
    store = runtime.adapters.handoffs
    settings = runtime.settings
    language = detect_language(envelope.text, envelope.language or state.language)
    # The asking message's id names the handoff: a redelivered message finds its own request, not a new one.
    handoff = store.request(envelope.session_id, envelope.message_id, envelope.user_id, language, envelope.text,
                            settings.session_ttl_seconds)  # fmt: skip
    if handoff is None:
        return None
    runtime.adapters.metrics.count_handoff(HANDOFF_REQUESTED)
    runtime.forward.handoff_timeout(envelope.session_id, handoff.handoff_id, settings.handoff_wait_seconds)
    text = visitor_text(handoff.status, handoff.language)
    return _answer(envelope, handoff, f"{said}\n{text}" if said else text)


def _answer(envelope: Envelope, handoff: Handoff, text: str, kind: str = ReplyKind.HANDOFF) -> Reply:
    reply = Reply.answering(
        envelope,
        text,
        skill="handoff",
        language=handoff.language,
        kind=str(kind),
        handoff={"status": str(handoff.status), "agent": handoff.agent},
    )
    # A held message has nothing to say: not through speech synthesis either, even when the client wants speech.
    return replace(reply, wants=(WANTS_TEXT,)) if kind == ReplyKind.HELD else reply


def timeout_message_id(handoff_id: str) -> str:
    """The message id of the reply saying nobody took handoff ``handoff_id`` in time."""
    return uuid.uuid5(_TIMEOUT_IDS, handoff_id).hex


@shared_task(
    name=HANDOFF_TIMEOUT_TASK,
    bind=True,
    autoretry_for=(Exception,),
    retry_backoff=1,
    retry_backoff_max=RETRY_BACKOFF_MAX_SECONDS,
    retry_jitter=True,
    max_retries=MAX_RETRIES,
)
def handoff_timeout(self: Task, session_id: str, handoff_id: str) -> None:
    """``HANDOFF_WAIT_SECONDS`` after a visitor asked for a person: if nobody took the session, tell them so."""
    runtime = runtime_of(self)
    result = runtime.adapters.handoffs.time_out(session_id, handoff_id, runtime.settings.session_ttl_seconds)
    if result.outcome != "timed_out" or result.handoff is None:
        return  # taken, given back, or asked for again since: this time-out is not due
    if result.changed:
        runtime.adapters.metrics.count_handoff(HANDOFF_TIMED_OUT)
        if result.handoff.status is HandoffStatus.MESSAGE_LEFT:
            # The visitor wrote while waiting: that message is the left one, and the session stays listed.
            runtime.adapters.metrics.count_handoff(HANDOFF_MESSAGE_LEFT)
        logger.info("session %s: nobody took the handoff in time", session_id)
    # Sent again when the task runs again (a retry, a redelivery): the deliverer keeps one reply per message id.
    runtime.forward.reply(handoff_reply(result.handoff, timeout_message_id(handoff_id), timed_out_text(result.handoff)))
