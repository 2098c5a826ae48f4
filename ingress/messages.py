"""``/api/messages`` and ``/api/sessions``: accept a message, wait for or stream its replies."""

from __future__ import annotations

import json
import logging
import random
import re
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from flask import Blueprint, Response, current_app, request
from werkzeug.exceptions import BadRequest, NotFound

from adapters.bundle import Adapters
from adapters.state import Partial, Registration
from adapters.tickets import session_scope
from adapters.tokens import Identity
from ingress.auth import current_identity, current_token, require_token, token_problem
from ingress.metrics import GatewayMetrics
from ingress.replyhub import ReplyHub
from ingress.speech_submit import edge_context, submit
from pipeline.devices import checked_request_context
from pipeline.envelope import Envelope, Reply, ReplyKind, new_id, storable_text
from pipeline.handoff import HandoffStatus
from pipeline.message_context import working_on
from pipeline.stages import WANTS_SPEECH, WANTS_TEXT, Channel, Stage
from tasks.forward import Forwarder

bp = Blueprint("messages", __name__)
logger = logging.getLogger(__name__)

SESSION_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
#: A reply cursor is a Redis stream id: two unsigned 64-bit numbers in ASCII digits. Redis refuses any
#: other (``²``, ``٣`` or 2**64 pass ``str.isdigit``/``int``), and an exclusive start after the last id.
CURSOR = re.compile(r"([0-9]{1,20})(?:-([0-9]{1,20}))?")
LAST_STREAM_ID = (2**64 - 1, 2**64 - 1)
MAX_TEXT = 4000
MAX_CLIENT_MSG_ID = 128
#: Seconds between SSE keep-alive comments, so proxies and clients don't close an idle stream.
KEEPALIVE_SECONDS = 15.0
#: Messages an event stream remembers as answered, so their late partials are not sent after the reply.
ANSWERED_REMEMBERED = 256


def edge_parts() -> tuple[Adapters, ReplyHub, Forwarder]:
    ext = current_app.extensions["assistant"]
    return ext["adapters"], ext["hub"], ext["forwarder"]


def gateway_metrics() -> GatewayMetrics:
    metrics: GatewayMetrics = current_app.extensions["assistant"]["metrics"]
    return metrics


@bp.post("/api/messages")
@require_token()
def post_message() -> tuple[dict[str, Any], int]:
    adapters, hub, forwarder = edge_parts()
    settings = adapters.settings
    identity = current_identity()
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadRequest('the body must be a JSON object such as {"text": "现在几点"}')
    text = body.get("text")
    if not isinstance(text, str) or not text.strip():
        raise BadRequest("'text' is required and must be a non-empty string")
    if len(text) > MAX_TEXT:
        raise BadRequest(f"'text' is longer than {MAX_TEXT} characters")
    if not storable_text(text):  # the transcript write or the broker would fail on it later
        raise BadRequest("'text' must not contain NUL characters or unpaired surrogates")
    session_id = checked_session_id(body.get("session_id"))
    client_msg_id = checked_client_msg_id(body.get("client_msg_id"))
    reply_audio = body.get("reply_audio", False)
    if not isinstance(reply_audio, bool):
        raise BadRequest("'reply_audio' must be true or false")
    try:
        context = checked_request_context(body.get("context"))  # where the request was said: {"area": "卧室"}
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    wait = wait_param(settings.default_wait_seconds, settings.max_wait_seconds)

    # The envelope before it has its place in the session: registering keeps it until the reply goes out.
    draft = Envelope(
        message_id=new_id(),
        session_id=session_id or new_id(),
        channel=str(Channel.WEB),
        user_id=identity.subject,
        roles=identity.roles,
        text=text.strip(),
        client_msg_id=client_msg_id,
        wants=wanted(reply_audio),
        context=context,
    )
    with ExitStack() as stack:
        stack.enter_context(working_on(edge_context(draft)))  # the request's log lines carry the message's ids
        # Waiting is registered before the message is submitted, so no look-up for an early reply is needed.
        waiter = stack.enter_context(hub.expect(draft.message_id)) if wait > 0 else None
        registration = submit(adapters, forwarder, draft, session_id is None, Stage.DISPATCH)
        answer, status, _ = await_answer(registration, waiter, wait)
    return answer, status


#: Session ids the channels' edges give their conversations; no web client may name one.
CHANNEL_SESSION_PREFIXES = ("telegram:", "mqtt:")


def checked_session_id(session_id: Any) -> str | None:
    """A client's ``session_id`` (None: open a new session); 400 when it is not one."""
    if session_id is not None and (not isinstance(session_id, str) or not SESSION_ID.fullmatch(session_id)):
        raise BadRequest("'session_id' must be 1-64 letters, digits or _ . : -")
    if session_id is not None and session_id.startswith(CHANNEL_SESSION_PREFIXES):
        # Those are the Telegram chats' and MQTT devices' sessions: a web client that took one would lock them out.
        raise BadRequest(f"'session_id' may not start with {' or '.join(CHANNEL_SESSION_PREFIXES)}")
    return session_id


def checked_client_msg_id(client_msg_id: Any) -> str | None:
    """A client's ``client_msg_id``, or None; 400 when it is not one."""
    if client_msg_id is not None and (
        not isinstance(client_msg_id, str)
        or not client_msg_id
        or len(client_msg_id) > MAX_CLIENT_MSG_ID
        or not storable_text(client_msg_id)
    ):
        raise BadRequest(f"'client_msg_id' must be a non-empty string of at most {MAX_CLIENT_MSG_ID} characters")
    return client_msg_id


def wanted(reply_audio: bool) -> tuple[str, ...]:
    """``Envelope.wants`` of a client that asked for spoken replies, or not."""
    return (WANTS_TEXT, WANTS_SPEECH) if reply_audio else (WANTS_TEXT,)


def await_answer(registration: Registration, waiter: Any, wait: float) -> tuple[dict[str, Any], int, Reply | None]:
    """The answer to an accepted message: 200 with its reply once it comes within ``wait`` seconds, else 202.

    ``waiter`` (``ReplyHub.expect``'s, None when not waiting) was registered for the message before it was
    submitted. A duplicate gets
    the first message's reply, stored or still to come. Also returns the reply, when there is one.
    """
    _, hub, _ = edge_parts()
    metrics = gateway_metrics()
    ids: dict[str, Any] = {"message_id": registration.message_id, "session_id": registration.session_id}
    if registration.status == "duplicate":
        ids["duplicate"] = True
    if waiter is None:
        return ids, 202, None
    started = time.perf_counter()
    if registration.status == "ok":
        answered = hub.wait_for_reply(waiter, wait)
    else:
        # A resend: the first message's reply, stored or still to come.
        with hub.expect(registration.message_id) as first:
            answered = hub.reply_for(registration.message_id) or hub.wait_for_reply(first, wait)
    if answered is None:
        metrics.reply_timeouts.inc()
        return {**ids, "status": "pending"}, 202, None
    metrics.reply_wait.observe(time.perf_counter() - started)
    cursor, reply = answered
    return {**ids, "reply": reply_json(cursor, reply)}, 200, reply


@bp.get("/api/sessions/<session_id>")
@require_token()
def get_session(session_id: str) -> dict[str, Any]:
    adapters, _, _ = edge_parts()
    record = authorized_session(adapters, session_id)
    entries = adapters.repository.transcript(session_id)
    return {
        "session_id": session_id,
        "user_id": record["user_id"],
        "channel": record["channel"],
        "created_at": record["created_at"],
        "updated_at": record["updated_at"],
        "entries": [
            {
                # ``message`` (the visitor's), or the reply's kind: ``reply``, ``handoff`` or ``held`` (no text).
                "kind": e.kind,
                "role": e.role,
                "handoff": e.handoff,
                "message_id": e.message_id,
                "text": e.text,
                "skill": e.skill,
                "error": e.error,
                "at": _iso(e.created_at),
                "timestamp": e.created_at,
                # Replies: every stage's milliseconds (decode, vad, asr, dispatch, tts...), what was heard when
                # the message was speech, and the reply's speech.
                "timings": {stage: ms for stage, ms in e.timings},
                "heard": e.heard,
                "audio": audio_json(session_id, e.message_id, e.audio),
            }
            for e in entries
        ],
    }


@bp.get("/api/sessions/<session_id>/replies")
@require_token()
def get_replies(session_id: str) -> dict[str, Any]:
    """Long-poll: replies after ``after``; waits up to ``wait`` seconds for the first one."""
    adapters, hub, _ = edge_parts()
    authorized_session(adapters, session_id)
    after = _cursor_param(request.args.get("after"))
    wait = wait_param(adapters.settings.default_wait_seconds, adapters.settings.max_wait_seconds)
    found = hub.read_after(session_id, after)
    if not found and wait > 0:
        with hub.listen(session_id, after) as listener:
            # Listening first, then reading: a reply landing in between is in one or the other.
            found = listener.catch_up() or listener.next(wait)
    cursor = found[-1][0] if found else after
    return {"session_id": session_id, "replies": [reply_json(c, r) for c, r in found], "cursor": cursor}


@bp.get("/api/sessions/<session_id>/events")
@require_token(ticket=session_scope)
def stream_events(session_id: str) -> Response:
    """Server-Sent Events; a reconnect with ``Last-Event-ID`` resumes after the last event seen.

    Opens with the bearer token, or with a stream ticket for this session (``?ticket=``, from
    ``POST /api/sessions/<id>/stream-ticket``) where a browser's ``EventSource`` cannot send a header.

    ``reply`` events carry an ``id:`` (the cursor); ``partial`` events, the pieces of a reply being generated,
    carry none, so a reconnect resumes after the last reply and gets the whole text in the next one.
    """
    adapters, hub, _ = edge_parts()
    owner = authorized_session(adapters, session_id)["user_id"]
    after = _cursor_param(request.headers.get("Last-Event-ID") or request.args.get("after"))
    identity, token = current_identity(), current_token()

    def refused() -> str | None:
        # Checked again at each keep-alive and handoff event: the token may have been revoked or expired since,
        # or the session handed back by the operator reading it. The owner's stream costs one revocation look-up.
        problem = token_problem(token, adapters.revocations)
        reader = owner == identity.subject or identity.is_admin
        if problem is None and not reader and not _handed_to(adapters, identity, session_id):
            problem = "not_allowed"
        return problem

    def events() -> Iterator[str]:
        # Jittered retry so a gateway restart does not bring every client back in the same instant.
        yield f"retry: {random.randint(1000, 4000)}\n\n"
        answered: OrderedDict[str, None] = OrderedDict()
        with hub.listen(session_id, after, partials=True) as listener:
            for cursor, reply in listener.catch_up():
                _remember(answered, reply.message_id)
                yield _sse(cursor, reply)
            while True:
                found = listener.events(KEEPALIVE_SECONDS)
                if not found:
                    if problem := refused():
                        yield sse_closed(problem)
                        return
                    yield ": keep-alive\n\n"
                for event in found:
                    if isinstance(event, Partial):
                        # A piece still queued when its reply went out (read back after a gap) is not sent after it.
                        if event.message_id not in answered:
                            yield _sse_partial(event)
                        continue
                    cursor, reply = event
                    _remember(answered, reply.message_id)
                    yield _sse(cursor, reply)
                    if reply.kind == ReplyKind.HANDOFF and (problem := refused()):
                        yield sse_closed(problem)
                        return

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return Response(events(), mimetype="text/event-stream", headers=headers)


def reply_json(cursor: str, reply: Reply) -> dict[str, Any]:
    return {
        "id": cursor,
        "message_id": reply.message_id,
        "text": reply.text,
        "skill": reply.skill,
        "expects_reply": reply.expects_reply,
        "actions": list(reply.actions),
        "error": reply.error,
        "at": _iso(reply.created_at),
        "timings": {stage: ms for stage, ms in reply.timings},
        "language": reply.language,
        "heard": reply.heard,
        "audio": audio_json(reply.session_id, reply.message_id, reply.audio),
        "audio_url": audio_url(reply.session_id, reply.message_id, reply.audio),
        "kind": reply.kind,
        "role": reply.role,
        "handoff": reply.handoff,
    }


def audio_json(session_id: str, message_id: str, audio: dict[str, Any] | None) -> dict[str, Any] | None:
    """A reply's speech as clients see it: where to ``GET`` it (not the blob key), or why there is none."""
    if audio is None:
        return None
    url = audio_url(session_id, message_id, audio)
    if url is None:
        return {"status": "missing", "reason": str(audio.get("reason") or "not spoken")}
    return {
        "status": "ready",
        "url": url,
        "sample_rate": audio.get("sample_rate"),
        "duration_seconds": audio.get("duration_seconds"),
        "interrupted": bool(audio.get("interrupted")),
    }


def audio_url(session_id: str, message_id: str, audio: dict[str, Any] | None) -> str | None:
    """The path of a spoken reply's WAV file; None when the reply has none."""
    if audio is None or audio.get("status") != "ready":
        return None
    return f"/api/sessions/{quote(session_id, safe='')}/audio/{message_id}.wav"


def _sse(cursor: str, reply: Reply) -> str:
    data = json.dumps(reply_json(cursor, reply), ensure_ascii=False)
    # The event is named after the reply's kind: ``reply`` (the assistant's or an operator's answer), ``handoff``
    # (who handles the session changed) or ``held`` (the message went to the operator); each has its id.
    return f"id: {cursor}\nevent: {reply.kind}\ndata: {data}\n\n"


def _sse_partial(partial: Partial) -> str:
    data = json.dumps({"message_id": partial.message_id, "index": partial.index, "delta": partial.delta},
                      ensure_ascii=False)  # fmt: skip
    return f"event: partial\ndata: {data}\n\n"


#: Why a stream ended (``event: closed``): the client should not reconnect with the same credentials.
CLOSED_MESSAGES = {
    "token_revoked": "the token behind this stream has been revoked; sign in again",
    "token_expired": "the token behind this stream has expired; renew it and open the stream again",
    "not_allowed": "this session is no longer handed to a person, so it is closed to operators",
}


def sse_closed(reason: str) -> str:
    """The last event of a stream the server ends: ``event: closed`` with ``{"error", "message"}``."""
    data = json.dumps({"error": reason, "message": CLOSED_MESSAGES[reason]}, ensure_ascii=False)
    return f"event: closed\ndata: {data}\n\n"


def _remember(answered: OrderedDict[str, None], message_id: str) -> None:
    answered[message_id] = None
    if len(answered) > ANSWERED_REMEMBERED:
        answered.popitem(last=False)


def authorized_session(adapters: Adapters, session_id: str) -> dict[str, Any]:
    """The session's owner and times; 404 when it does not exist or belongs to someone else."""
    identity = current_identity()
    if not SESSION_ID.fullmatch(session_id):
        raise NotFound(f"unknown session '{session_id}'")
    record = adapters.repository.load_session(session_id)
    channel: str | None = None
    if record is not None:
        owner, created, updated, channel = record.user_id, record.created_at, record.updated_at, record.channel
    else:
        # Accepted but not yet recorded by the dispatch stage: Redis knows the owner already.
        owner = adapters.coordination.session_owner(session_id) or ""
        created = updated = time.time()
    if not owner or (owner != identity.subject and not identity.is_admin
                     and not _handed_to(adapters, identity, session_id)):  # fmt: skip
        raise NotFound(f"unknown session '{session_id}'")
    return {"user_id": owner, "channel": channel, "created_at": _iso(created), "updated_at": _iso(updated)}


def _handed_to(adapters: Adapters, identity: Identity, session_id: str) -> bool:
    """True when ``identity`` is an operator and the session was handed to a person (and not given back)."""
    if "agent" not in identity.roles:
        return False
    handoff = adapters.handoffs.get(session_id)
    return handoff is not None and handoff.status is not HandoffStatus.BOT


def wait_param(default: float, ceiling: float) -> float:
    raw = request.args.get("wait")
    if raw is None:
        return default
    try:
        wait = float(raw)
    except ValueError as exc:
        raise BadRequest("'wait' must be a number of seconds") from exc
    if not 0 <= wait <= ceiling:
        raise BadRequest(f"'wait' must be between 0 and {ceiling:g} seconds")
    return wait


def _cursor_param(raw: str | None) -> str | None:
    if raw is None or raw == "":
        return None
    match = CURSOR.fullmatch(raw)
    position = (int(match[1]), int(match[2] or 0)) if match else LAST_STREAM_ID
    if max(position) > LAST_STREAM_ID[0] or position >= LAST_STREAM_ID:
        raise BadRequest("'after' (or Last-Event-ID) must be a cursor such as '1732540000000-0'")
    return raw


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")
