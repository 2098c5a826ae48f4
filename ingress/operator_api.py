"""``/api/operator``: human operators list the handed-off web sessions, take one, answer in it, hand it back."""

from __future__ import annotations

import json
import random
import re
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, current_app, request
from flask.blueprints import BlueprintSetupState
from werkzeug.exceptions import BadRequest, NotFound

from adapters.handoffs import HandoffStore, ReleaseOutcome, TakeOutcome, Transition
from adapters.metrics import HANDOFF_RELEASED, HANDOFF_TAKEN
from adapters.tickets import OPERATOR_SCOPE
from ingress.auth import OPERATOR_BLUEPRINT, current_identity, current_token, require_token, token_problem
from ingress.messages import KEEPALIVE_SECONDS, MAX_TEXT, SESSION_ID, edge_parts, sse_closed
from ingress.tickets import OPERATOR_ROLES
from pipeline.envelope import Reply, ReplyRole, new_id, now, storable_text
from pipeline.handoff import Handoff, HandoffStatus, handoff_reply
from pipeline.stages import Channel

bp = Blueprint(OPERATOR_BLUEPRINT, __name__)

#: The most sessions the listing shows, the latest changed first: a flood of requests cannot make every open
#: operator stream carry (and the gateway read) thousands of sessions at each change.
LISTING_LIMIT = 100
#: A client's key for an operator reply (``client_msg_id``): a UUID or another short token.
CLIENT_MSG_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
#: ``app.extensions`` key of the gateway's ``SharedListing``.
LISTING_EXTENSION = "assistant.operator_listing"
#: Namespace of the ids derived from a client's key or from a handoff (``uuid5``).
ID_NAMESPACE = uuid.UUID("5b0f6f8e-3c1e-4d0e-9a57-0c8a0f3f5e21")


class SharedListing:
    """The operators' listing as an SSE event, built once per version and shared by every stream of the gateway:
    each held message bumps the version, and N open streams must not read the store N times for it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._version: int | None = None
        self._event = ""

    def event(self, store: HandoffStore, version: int) -> str:
        with self._lock:  # one stream builds it; the others wait for it rather than build it too
            if self._version != version:
                self._event = _sse_sessions(store)
                self._version = version
            return self._event


@bp.record_once
def _share_listing(state: BlueprintSetupState) -> None:
    state.app.extensions[LISTING_EXTENSION] = SharedListing()


def session_json(handoff: Handoff) -> dict[str, Any]:
    return {
        "session_id": handoff.session_id,
        "status": str(handoff.status),
        "agent": handoff.agent,
        "since": _iso(handoff.since),
        "user_id": handoff.user_id,
        "language": handoff.language,
        "last_text": handoff.last_text,
        "updated_at": _iso(handoff.updated_at),
    }


def sessions_json(store: HandoffStore) -> dict[str, Any]:
    return {"sessions": [session_json(h) for h in store.listed(LISTING_LIMIT)]}


@bp.get("/api/operator/sessions")
@require_token(role=OPERATOR_ROLES)
def list_sessions() -> dict[str, Any]:
    adapters, _, _ = edge_parts()
    return sessions_json(adapters.handoffs)


@bp.get("/api/operator/events")
@require_token(role=OPERATOR_ROLES, ticket=lambda: OPERATOR_SCOPE)
def stream_sessions() -> Response:
    """Server-Sent Events: ``sessions`` (the listing) at the start and whenever it changes; keep-alive comments.

    Opened with a single-use ticket (``?ticket=``, from ``POST /api/operator/stream-ticket``), since a browser's
    ``EventSource`` sends no Authorization header; a bearer token works too.
    """
    adapters, _, _ = edge_parts()
    store, token = adapters.handoffs, current_token()
    listing: SharedListing = current_app.extensions[LISTING_EXTENSION]
    # The first listing before the answer: a store that is down gives a 503 now, not a 200 that breaks.
    seen = store.version()
    first = listing.event(store, seen)

    def events() -> Iterator[str]:
        nonlocal seen
        yield f"retry: {random.randint(1000, 4000)}\n\n"
        yield first
        while True:
            version = store.wait_for_change(seen, KEEPALIVE_SECONDS)
            # Checked again at each keep-alive and change: a signed-out operator's stream ends.
            if problem := token_problem(token, adapters.revocations):
                yield sse_closed(problem)
                return
            if version == seen:
                yield ": keep-alive\n\n"
                continue
            seen = version
            yield listing.event(store, version)

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return Response(events(), mimetype="text/event-stream", headers=headers)


@bp.post("/api/operator/sessions/<session_id>/take")
@require_token(role=OPERATOR_ROLES)
def take(session_id: str) -> tuple[dict[str, Any], int]:
    agent = current_identity().subject
    adapters, _, forwarder = edge_parts()
    result = adapters.handoffs.take(_checked(session_id), agent, adapters.settings.session_ttl_seconds)
    if result.outcome == TakeOutcome.NOT_FOUND or result.handoff is None:
        raise NotFound(f"session '{session_id}' is not handed to a person")
    if result.outcome == TakeOutcome.ALREADY_TAKEN:
        holder = result.handoff.agent
        return {"error": "already_taken", "message": f"{holder} has this session", "agent": holder}, 409
    if result.changed:
        adapters.metrics.count_handoff(HANDOFF_TAKEN)
    # Again on a repeated take: the first may have changed the store and then failed to send the notice. Its id is
    # fixed, so a notice that did go out is not sent twice.
    forwarder.reply(notice(result.handoff))  # the visitor is told who joined
    return {"session_id": session_id, "status": str(HandoffStatus.ACTIVE), "agent": agent}, 200


@bp.post("/api/operator/sessions/<session_id>/messages")
@require_token(role=OPERATOR_ROLES)
def send(session_id: str) -> tuple[dict[str, Any], int]:
    agent = current_identity().subject
    adapters, _, forwarder = edge_parts()
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadRequest('the body must be a JSON object such as {"text": "您好，请问有什么可以帮您？"}')
    text = body.get("text")
    if not isinstance(text, str) or not text.strip():
        raise BadRequest("'text' is required and must be a non-empty string")
    if len(text) > MAX_TEXT or not storable_text(text):
        raise BadRequest(f"'text' must be at most {MAX_TEXT} characters, without NUL or unpaired surrogates")
    client_msg_id = body.get("client_msg_id")
    if client_msg_id is not None and (not isinstance(client_msg_id, str) or not CLIENT_MSG_ID.fullmatch(client_msg_id)):
        raise BadRequest("'client_msg_id' must be 1 to 64 letters, digits or '._:-' (a UUID, say)")
    handoff = adapters.handoffs.get(_checked(session_id))
    if handoff is None or handoff.status is HandoffStatus.BOT:
        raise NotFound(f"session '{session_id}' is not handed to a person")
    if handoff.status is not HandoffStatus.ACTIVE or handoff.agent != agent:
        message = "take the session before answering in it" if handoff.agent is None else f"{handoff.agent} has it"
        return {"error": "not_your_session", "message": message, "agent": handoff.agent}, 409
    reply = Reply(
        # A retried POST with the same key is the same reply: the deliverer sends a message id once.
        message_id=new_id() if client_msg_id is None else _derived_id(session_id, agent, client_msg_id),
        session_id=session_id,
        channel=str(Channel.WEB),
        text=text.strip(),
        user_id=handoff.user_id,
        created_at=now(),
        language=handoff.language,
        role=str(ReplyRole.AGENT),
    )
    forwarder.reply(reply)
    return {"message_id": reply.message_id}, 202


@bp.post("/api/operator/sessions/<session_id>/release")
@require_token(role=OPERATOR_ROLES)
def release(session_id: str) -> tuple[dict[str, Any], int]:
    identity = current_identity()
    adapters, _, forwarder = edge_parts()
    # An admin may hand back a session another operator left open; an agent only their own.
    agent = None if identity.is_admin else identity.subject
    result = adapters.handoffs.release(_checked(session_id), agent, adapters.settings.session_ttl_seconds)
    if _released_already(result, agent) and result.handoff is not None:
        # A retry of a release that changed the store but may not have told the visitor: the same notice again
        # (the same id: sent once).
        forwarder.reply(notice(result.handoff))
        return {"session_id": session_id, "status": str(HandoffStatus.BOT)}, 200
    if result.outcome == ReleaseOutcome.NOT_FOUND or result.handoff is None:
        raise NotFound(f"session '{session_id}' is not handed to a person")
    if result.outcome == ReleaseOutcome.NOT_YOURS:
        holder = result.handoff.agent
        return {"error": "not_your_session", "message": f"{holder} has this session", "agent": holder}, 409
    adapters.metrics.count_handoff(HANDOFF_RELEASED)
    if result.previous in (HandoffStatus.WAITING, HandoffStatus.ACTIVE):
        # A dismissed left message needs no word: the bot has answered that visitor since the time-out.
        forwarder.reply(notice(result.handoff))
    return {"session_id": session_id, "status": str(HandoffStatus.BOT)}, 200


def notice(handoff: Handoff) -> Reply:
    """The visitor's notice of ``handoff``'s status, with an id fixed by the handoff, its status and since when:
    a retried take or release sends the same reply, which goes out once."""
    message_id = _derived_id(handoff.handoff_id, str(handoff.status), f"{handoff.since:.3f}")
    return handoff_reply(handoff, message_id=message_id)


def _released_already(result: Transition, agent: str | None) -> bool:
    """True when the session was handed back from ``agent`` (any operator for an admin): a repeated release."""
    handoff = result.handoff
    return (result.outcome == ReleaseOutcome.NOT_FOUND and handoff is not None
            and handoff.status is HandoffStatus.BOT and handoff.agent is not None
            and (agent is None or handoff.agent == agent))  # fmt: skip


def _derived_id(*parts: str) -> str:
    return uuid.uuid5(ID_NAMESPACE, "\n".join(parts)).hex


def _checked(session_id: str) -> str:
    if not SESSION_ID.fullmatch(session_id):
        raise NotFound(f"unknown session '{session_id}'")
    return session_id


def _sse_sessions(store: HandoffStore) -> str:
    data = json.dumps(sessions_json(store), ensure_ascii=False)
    return f"event: sessions\ndata: {data}\n\n"


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")
