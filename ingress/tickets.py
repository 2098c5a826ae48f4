"""Stream tickets: ``POST /api/sessions/<id>/stream-ticket`` and ``POST /api/operator/stream-ticket``.

A browser's ``EventSource`` cannot send the bearer token; the page trades it for a ticket (single use, valid
``STREAM_TICKET_TTL_SECONDS``) and opens the stream with ``?ticket=``. The ticket is bound to the stream it was
asked for (its scope) and to the identity that asked.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from adapters.bundle import Adapters
from adapters.tickets import OPERATOR_SCOPE, TicketGrant, session_scope
from adapters.tokens import Identity
from ingress.auth import admit, current_identity, current_token, require_token, ticket_identity
from ingress.messages import authorized_session, edge_parts

bp = Blueprint("tickets", __name__)

#: Roles that may open the operators' stream.
OPERATOR_ROLES = ("agent", "admin")


def redeem_ticket(scope: str) -> Identity:
    """The identity behind the request's ``?ticket=`` for ``scope``, spending the ticket; it becomes the request's
    identity (``current_identity()``), with the per-user rate limit and a visitor's origin check applied as for a
    token. 401 (``missing_ticket``, ``invalid_ticket``) when there is none, it is unknown, expired, used, or for
    another scope."""
    identity = ticket_identity(scope)
    admit(identity)
    return identity


@bp.post("/api/sessions/<session_id>/stream-ticket")
@require_token()
def session_stream_ticket(session_id: str) -> tuple[dict[str, Any], int]:
    """A ticket for this session's event stream, to whoever may read the session."""
    adapters, _, _ = edge_parts()
    authorized_session(adapters, session_id)
    return _issue(adapters, session_scope(session_id))


@bp.post("/api/operator/stream-ticket")
@require_token(role=OPERATOR_ROLES)
def operator_stream_ticket() -> tuple[dict[str, Any], int]:
    """A ticket for the operators' event stream."""
    adapters, _, _ = edge_parts()
    return _issue(adapters, OPERATOR_SCOPE)


def _issue(adapters: Adapters, scope: str) -> tuple[dict[str, Any], int]:
    identity = current_identity()
    ttl = adapters.settings.stream_ticket_ttl_seconds
    token = current_token()
    grant = TicketGrant(scope, identity.subject, identity.roles, identity.site, token.jti, token.issued_at,
                        token.expires_at)  # fmt: skip
    ticket = adapters.tickets.issue(grant, ttl)
    return {"ticket": ticket, "expires_in": ttl}, 201
