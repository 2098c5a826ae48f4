"""``/api/operator``: human operators list the handed-off web sessions, take one, answer in it, hand it back."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, request
from werkzeug.exceptions import BadRequest, NotFound

from adapters.handoffs import HandoffStore, ReleaseOutcome, TakeOutcome
from adapters.metrics import HANDOFF_RELEASED, HANDOFF_TAKEN
from adapters.tickets import OPERATOR_SCOPE
from ingress.auth import OPERATOR_BLUEPRINT, current_identity, require_token
from ingress.messages import KEEPALIVE_SECONDS, MAX_TEXT, SESSION_ID, edge_parts
from ingress.tickets import OPERATOR_ROLES
from pipeline.envelope import Reply, ReplyRole, new_id, now, storable_text
from pipeline.handoff import Handoff, HandoffStatus, handoff_reply
from pipeline.stages import Channel

bp = Blueprint(OPERATOR_BLUEPRINT, __name__)



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
    return {"sessions": [session_json(h) for h in store.listed()]}


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
    store = adapters.handoffs

    def events() -> Iterator[str]:
        yield f"retry: {random.randint(1000, 4000)}\n\n"
        seen = store.version()
        yield _sse_sessions(store)
        while True:
            version = store.wait_for_change(seen, KEEPALIVE_SECONDS)
            if version == seen:
                yield ": keep-alive\n\n"
                continue
            seen = version
            yield _sse_sessions(store)

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
        forwarder.reply(handoff_reply(result.handoff))  # the visitor is told who joined
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
    handoff = adapters.handoffs.get(_checked(session_id))
    if handoff is None or handoff.status is HandoffStatus.BOT:
        raise NotFound(f"session '{session_id}' is not handed to a person")
    if handoff.status is not HandoffStatus.ACTIVE or handoff.agent != agent:
        message = "take the session before answering in it" if handoff.agent is None else f"{handoff.agent} has it"
        return {"error": "not_your_session", "message": message, "agent": handoff.agent}, 409
    reply = Reply(
        message_id=new_id(),
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
    if result.outcome == ReleaseOutcome.NOT_FOUND or result.handoff is None:
        raise NotFound(f"session '{session_id}' is not handed to a person")
    if result.outcome == ReleaseOutcome.NOT_YOURS:
        holder = result.handoff.agent
        return {"error": "not_your_session", "message": f"{holder} has this session", "agent": holder}, 409
    adapters.metrics.count_handoff(HANDOFF_RELEASED)
    if result.previous in (HandoffStatus.WAITING, HandoffStatus.ACTIVE):
        # A dismissed left message needs no word: the bot has answered that visitor since the time-out.
        forwarder.reply(handoff_reply(result.handoff))
    return {"session_id": session_id, "status": str(HandoffStatus.BOT)}, 200


def _checked(session_id: str) -> str:
    if not SESSION_ID.fullmatch(session_id):
        raise NotFound(f"unknown session '{session_id}'")
    return session_id


def _sse_sessions(store: HandoffStore) -> str:
    data = json.dumps(sessions_json(store), ensure_ascii=False)
    return f"event: sessions\ndata: {data}\n\n"


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")
