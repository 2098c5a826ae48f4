"""Hands an accepted message to the pipeline: its place in the session, its first stage, and its withdrawal when
the queue refuses it. Text and speech, from HTTP and the WebSocket, all go through here."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import replace
from functools import partial, wraps
from typing import ParamSpec

from werkzeug.exceptions import NotFound, ServiceUnavailable

from adapters.blobs import inbound_audio_key
from adapters.bundle import Adapters
from adapters.errors import UNAVAILABLE
from adapters.metrics import ACCEPTED, DUPLICATE, REJECTED
from adapters.state import Registration
from pipeline.envelope import Envelope, new_id
from pipeline.message_context import MessageContext, working_on
from pipeline.stages import WANTS_TEXT, Channel, Stage
from tasks.forward import Forwarder

logger = logging.getLogger(__name__)

P = ParamSpec("P")


def edge_context(draft: Envelope) -> MessageContext:
    """The ids logs show while an edge handles ``draft``: the MQTT edge's, or the gateway's (HTTP, Telegram)."""
    edge = "mqtt" if draft.channel == Channel.MQTT else "gateway"
    return MessageContext(draft.message_id, draft.session_id, draft.channel, edge)


def _working_on_draft(submit_draft: Callable[P, Registration]) -> Callable[P, Registration]:
    """``submit`` with its draft's ids bound (``current_message()``): whatever an edge logs while it hands a
    message on (a withdrawal, a broker error) carries them, for every edge at once."""

    @wraps(submit_draft)
    def bound(*args: P.args, **kwargs: P.kwargs) -> Registration:
        draft = kwargs.get("draft", args[2] if len(args) > 2 else None)
        if not isinstance(draft, Envelope):
            return submit_draft(*args, **kwargs)
        with working_on(edge_context(draft)):
            return submit_draft(*args, **kwargs)

    return bound


@_working_on_draft
def submit(
    adapters: Adapters,
    forwarder: Forwarder,
    draft: Envelope,
    claim_new: bool,
    stage: Stage,
) -> Registration:
    """Give ``draft`` its place in its session and send it to ``stage``.

    ``claim_new``: the session is new and becomes the sender's. Returns the registration: ``ok``, or ``duplicate``
    (the client sent this ``client_msg_id`` before; nothing is sent, the ids are the first message's). Raises
    ``NotFound`` for another user's session, and ``ServiceUnavailable`` when the broker refused the message, which
    is then withdrawn so that the client can send it again with the same ``client_msg_id``.

    Every edge submits through here, so ``assistant_messages_total{channel, outcome}`` is counted here.
    """
    count = adapters.metrics.count_message
    registration = _register(adapters, draft, claim_new)
    if registration.status not in ("ok", "duplicate"):
        count(draft.channel, REJECTED)
        raise NotFound(f"unknown session '{draft.session_id}'")
    if registration.status == "ok":
        try:
            forwarder.to_stage(stage, replace(draft, seq=registration.seq))
        except UNAVAILABLE as exc:
            # Not accepted: the same client_msg_id must work when the client tries again.
            count(draft.channel, REJECTED)
            _withdraw(adapters, draft.user_id, registration, draft.client_msg_id)
            raise ServiceUnavailable("the message queue is unreachable; try again shortly") from exc
    count(draft.channel, ACCEPTED if registration.status == "ok" else DUPLICATE)
    return registration


def submit_speech(
    adapters: Adapters,
    forwarder: Forwarder,
    *,
    user_id: str,
    roles: tuple[str, ...],
    pcm16: bytes,
    session_id: str | None,
    client_msg_id: str | None,
    wants: tuple[str, ...] = (WANTS_TEXT,),
    language: str | None = None,
    timings: Iterable[tuple[str, float]] = (),
    channel: str = Channel.WEB,
    message_id: str | None = None,
    provisional: bool = False,
    reply_to: str | None = None,
    context: dict[str, str] | None = None,
) -> Registration:
    """Store an utterance (16 kHz mono 16-bit PCM) and send it to the ``asr`` stage, as ``submit`` does.

    ``session_id`` None opens a new session. ``timings`` are the edge's own (``("decode", ms)``); the stages add
    theirs. ``message_id``: the id to give the message, when the caller waits for its reply already (a fresh one
    by default). ``provisional``: sent at a pause, before the end of the utterance is confirmed (see
    ``Envelope.provisional``). ``reply_to`` and ``context``: the envelope's (a Telegram chat id, an MQTT device and
    its area). The audio is kept for ``AUDIO_TTL_SECONDS``; a duplicate's, or one for another's session, is deleted
    at once.
    """
    message_id = message_id or new_id()
    key = inbound_audio_key(message_id)
    adapters.blobs.put(key, pcm16, adapters.settings.audio.audio_ttl_seconds)
    draft = Envelope(
        message_id=message_id,
        session_id=session_id or new_id(),
        channel=str(channel),
        user_id=user_id,
        roles=roles,
        text="",
        audio_key=key,
        client_msg_id=client_msg_id,
        wants=wants,
        language=language,
        timings=tuple((stage, round(ms, 3)) for stage, ms in timings),
        provisional=provisional,
        reply_to=reply_to,
        context=dict(context or {}),
    )
    try:
        registration = submit(adapters, forwarder, draft, session_id is None, Stage.ASR)
    except NotFound:
        _forget(adapters, key)
        raise
    # A refused message keeps its audio: if its withdrawal failed, the lost-message sweep still sends it.
    if registration.status != "ok":
        _forget(adapters, key)
    return registration


def _forget(adapters: Adapters, key: str) -> None:
    try:
        adapters.blobs.delete(key)
    except UNAVAILABLE as exc:  # it expires anyway
        logger.warning("could not delete audio %s: %s", key, type(exc).__name__)


def _withdraw(adapters: Adapters, user_id: str, registration: Registration, client_msg_id: str | None) -> None:
    try:
        ttl = adapters.settings.session_ttl_seconds
        adapters.coordination.withdraw_message(user_id, registration, client_msg_id, ttl)
    except UNAVAILABLE as exc:
        # Redis is away too: the message stays registered with its envelope kept, so the dispatch workers' sweep
        # sends it after all (tasks/rescue.py) and a resend with the same client_msg_id gets its reply.
        logger.warning("could not withdraw message %s: %s", registration.message_id, type(exc).__name__)


def _register(adapters: Adapters, draft: Envelope, claim_new: bool) -> Registration:
    """Claim a place in the session (a new one when ``claim_new``); ``forbidden`` for another's session."""
    ttl = adapters.settings.session_ttl_seconds
    coordination = adapters.coordination
    user_id, session_id = draft.user_id, draft.session_id
    register = partial(coordination.register_message, user_id, session_id, draft.message_id, draft.client_msg_id, ttl,
                       envelope_json=draft.to_json())  # fmt: skip
    if claim_new:
        return register()
    registration = register(claim=False)
    if registration.status != "unclaimed":
        return registration
    # Redis does not know the session (new, or Redis lost its keys): the database says whose it is.
    # Checked before claiming, so a refused message neither claims the session nor takes a sequence number.
    record = adapters.repository.load_session(session_id)
    if record is not None and record.user_id != user_id:
        return Registration("forbidden")
    return register()
