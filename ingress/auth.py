"""Bearer-token authentication for the HTTP API: flask-jwt-extended checks the token, then revocations and roles."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import wraps
from typing import Any, TypeVar

import jwt
from flask import Flask, current_app, g, request
from flask_jwt_extended import JWTManager, get_jwt, verify_jwt_in_request
from flask_jwt_extended.exceptions import (
    InvalidHeaderError,
    JWTExtendedException,
    NoAuthorizationError,
    RevokedTokenError,
    UserClaimsVerificationError,
)
from werkzeug.exceptions import Forbidden, ServiceUnavailable, Unauthorized

from adapters.revocation import Revocations, RevocationUnavailable
from adapters.tickets import StreamTickets
from adapters.tokens import ACCESS, ALGORITHM, REFRESH, Identity, claims_problem, identity_of, jwt_config
from pipeline.settings import Settings

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

#: ``app.extensions`` key of callables run with each verified identity before the view (the per-user rate limit).
AUTHENTICATED_HOOKS = "assistant.authenticated"


#: Everything a ``visitor`` token opens: sending a message (text or speech) and reading its own sessions (their
#: spoken replies too). Any other endpoint behind ``require_token`` answers 403 to a visitor, so a new endpoint is
#: closed to visitors until listed here.
VISITOR_ENDPOINTS = frozenset(
    {"messages.post_message", "messages.get_session", "messages.get_replies", "messages.stream_events",
     "audio.post_audio", "audio.get_reply_audio", "voice_ws.audio", "tickets.session_stream_ticket"}
)  # fmt: skip
#: The query parameter a stream ticket comes in (``GET /api/sessions/<id>/events?ticket=...``).
TICKET_PARAM = "ticket"
#: The longest ticket looked up; a real one is 43 characters.
MAX_TICKET = 128


#: Everything a token whose only role is ``agent`` (a human operator) opens: the operator API, the handed-off sessions'
#: transcripts and events (``messages.authorized_session`` lets an agent read only those), refreshing and logging
#: out. Operators do not chat with the assistant as users.
AGENT_ENDPOINTS = frozenset(
    {"messages.get_session", "messages.get_replies", "messages.stream_events", "audio.get_reply_audio",
     "auth.refresh", "auth.logout", "tickets.session_stream_ticket", "tickets.operator_stream_ticket"}
)  # fmt: skip
#: The blueprint of the operator API, all of whose endpoints an agent may call.
OPERATOR_BLUEPRINT = "operator"


def agent_only(identity: Identity) -> bool:
    """A human operator's token: the ``agent`` role without ``user`` or ``admin``."""
    return "agent" in identity.roles and not {"user", "admin"} & set(identity.roles)


class TokenRefused(Unauthorized):
    """401 with a machine-readable reason, ``error``, next to the message."""

    def __init__(self, error: str, message: str) -> None:
        super().__init__(message)
        self.error = error


def init_app(app: Flask, settings: Settings, revocations: Revocations) -> JWTManager:
    """Configure flask-jwt-extended on ``app``: our claims, the revocation look-up, refusals as JSON."""
    app.config.update(jwt_config(settings))
    manager = JWTManager(app)

    @manager.token_in_blocklist_loader
    def is_revoked(_header: dict[str, Any], claims: dict[str, Any]) -> bool:
        if claims_problem(claims):
            return False  # refused right after, with the reason
        try:
            return revocations.is_revoked(claims["jti"], claims["sub"], float(claims["iat"]))
        except RevocationUnavailable as exc:
            logger.warning("cannot check token revocations: %s", exc)
            raise ServiceUnavailable("token revocations cannot be checked right now; try again shortly") from exc

    @manager.token_verification_loader
    def has_our_claims(_header: dict[str, Any], claims: dict[str, Any]) -> bool:
        return claims_problem(claims) is None

    @app.errorhandler(TokenRefused)
    def refused(exc: TokenRefused) -> tuple[dict[str, str], int, dict[str, str]]:
        # RFC 6750: a request without a token gets the bare challenge, a bad token the error code.
        challenge = 'Bearer realm="assistant"' if exc.error == "missing_token" else 'Bearer error="invalid_token"'
        return {"error": exc.error, "message": exc.description or ""}, 401, {"WWW-Authenticate": challenge}

    return manager


def current_identity() -> Identity:
    identity: Identity = g.identity
    return identity


@dataclass(frozen=True, slots=True)
class TokenBehind:
    """The token a request came with, directly or through the stream ticket it bought: what a long-lived stream
    checks again (``token_problem``) to end when the token no longer would be accepted."""

    jti: str
    subject: str
    issued_at: float
    expires_at: float | None


def current_token() -> TokenBehind:
    """The request's token (inside a view behind ``require_token``)."""
    token: TokenBehind = g.token
    return token


def token_problem(token: TokenBehind, revocations: Revocations) -> str | None:
    """Why ``token`` is no longer accepted (``token_expired``, ``token_revoked``); None while it is.

    One look-up in the revocations: cheap enough for every keep-alive of an open stream. When they cannot be read,
    the stream goes on (None): a Redis blip must not close every stream at once; the next check decides.
    """
    if token.expires_at is not None and token.expires_at <= time.time():
        return "token_expired"
    if not token.jti:
        return None
    try:
        revoked = revocations.is_revoked(token.jti, token.subject, token.issued_at)
    except RevocationUnavailable as exc:
        logger.warning("cannot check token revocations for an open stream: %s", exc)
        return None
    return "token_revoked" if revoked else None


def current_claims() -> dict[str, Any]:
    """The verified claims of the request's token (inside a view behind ``require_token``)."""
    claims: dict[str, Any] = get_jwt()
    return claims


def require_token(
    role: str | Collection[str] | None = None,
    token_type: str = ACCESS,
    ticket: Callable[..., str] | None = None,
) -> Callable[[F], F]:
    """401 without a valid, unrevoked token of ``token_type``; 403 without ``role`` (one of them, when several are
    named) or for a visitor out of bounds.

    ``ticket``: the endpoint also opens with a stream ticket (``?ticket=``) instead of the bearer token; called with
    the view's arguments, it gives the scope the ticket must have (``session:<id>``).
    """

    def decorate(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            ticketed = ticket is not None and TICKET_PARAM in request.args
            identity = ticket_identity(ticket(**kwargs)) if ticket is not None and ticketed else authenticate()
            # Before the token type: a visitor is told it may not, rather than to bring another kind of token.
            if identity.is_visitor and request.endpoint not in VISITOR_ENDPOINTS:
                raise Forbidden("a visitor token may only send messages and read its own sessions")
            endpoint = request.endpoint or ""
            if agent_only(identity) and endpoint not in AGENT_ENDPOINTS and request.blueprint != OPERATOR_BLUEPRINT:
                raise Forbidden("an agent token may only use the operator API and read handed-off sessions")
            if not ticketed:
                claims = current_claims()
                _check_type(claims, token_type)
                g.token = TokenBehind(str(claims["jti"]), identity.subject, float(claims["iat"]),
                                      float(claims["exp"]))  # fmt: skip
            admit(identity, role)
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def admit(identity: Identity, role: str | Collection[str] | None = None) -> None:
    """Let ``identity`` through to the view: 403 without ``role`` (one of them); else it becomes the request's
    identity and the authenticated hooks run (the per-user rate limit, a visitor's origin check)."""
    if role is not None:
        wanted = (role,) if isinstance(role, str) else tuple(role)
        if not set(wanted) & set(identity.roles):
            raise Forbidden(f"this needs the {' or '.join(repr(name) for name in wanted)} role")
    g.identity = identity
    for hook in current_app.extensions.get(AUTHENTICATED_HOOKS, ()):
        hook(identity)


def ticket_identity(scope: str) -> Identity:
    """The identity that asked for the request's ``?ticket=``, which is spent now; 401 when it is missing, unknown,
    expired, used already, or for another stream than ``scope``."""
    ticket = request.args.get(TICKET_PARAM, "")
    if not ticket:
        raise TokenRefused("missing_ticket", "missing stream ticket: send ?ticket= (POST .../stream-ticket gives one)")
    tickets: StreamTickets = current_app.extensions["assistant"]["adapters"].tickets
    grant = tickets.redeem(ticket) if len(ticket) <= MAX_TICKET else None
    if grant is None:
        raise TokenRefused("invalid_ticket", "stream ticket unknown, expired or used already: get a new one")
    if grant.scope != scope:
        raise TokenRefused("invalid_ticket", "this stream ticket opens another stream: get one for this one")
    g.token = TokenBehind(grant.jti, grant.subject, grant.issued_at, grant.expires_at)
    return Identity(grant.subject, grant.roles, grant.site)


def authenticate() -> Identity:
    """The identity of the request's bearer token (access or refresh); ``TokenRefused`` saying why not."""
    try:
        # The type is checked by require_token, after the visitor's bounds.
        verify_jwt_in_request(verify_type=False)
    except (JWTExtendedException, jwt.InvalidTokenError) as exc:
        raise refusal(exc) from exc
    return identity_of(current_claims())


def refusal(exc: Exception) -> TokenRefused:
    """The 401 for a token flask-jwt-extended or PyJWT refused, saying why."""
    if isinstance(exc, NoAuthorizationError):
        return TokenRefused("missing_token", "missing bearer token: send 'Authorization: Bearer <token>'")
    if isinstance(exc, InvalidHeaderError):
        return TokenRefused("invalid_token", "malformed Authorization header: send 'Authorization: Bearer <token>'")
    if isinstance(exc, jwt.ExpiredSignatureError):
        claims = getattr(exc, "jwt_data", None)  # flask-jwt-extended attaches the expired token's claims
        return TokenRefused("token_expired", f"token expired{_expiry(claims)}; {_renew_hint(claims)}")
    if isinstance(exc, RevokedTokenError):
        return TokenRefused("token_revoked", f"token has been revoked; {_renew_hint(exc.jwt_data, revoked=True)}")
    if isinstance(exc, UserClaimsVerificationError):
        return TokenRefused("invalid_token", f"token claims are not valid: {claims_problem(exc.jwt_data)}")
    if isinstance(exc, jwt.InvalidAlgorithmError):
        message = f"token algorithm {_algorithm()} is not accepted: tokens must be signed with {ALGORITHM}"
        return TokenRefused("invalid_token", message)
    if isinstance(exc, jwt.InvalidSignatureError):
        message = "token signature does not verify: it was signed with another key or changed since"
        return TokenRefused("invalid_token", message)
    if isinstance(exc, jwt.InvalidAudienceError):
        return TokenRefused("invalid_token", f"token is for another audience: expected '{_config('AUDIENCE')}'")
    if isinstance(exc, jwt.InvalidIssuerError):
        return TokenRefused("invalid_token", f"token is from another issuer: expected '{_config('ISSUER')}'")
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return TokenRefused("invalid_token", f"token has no '{exc.claim}' claim")
    if isinstance(exc, jwt.ImmatureSignatureError):
        return TokenRefused("invalid_token", "token is not valid yet: it was issued in the future")
    if isinstance(exc, jwt.DecodeError):
        return TokenRefused("invalid_token", f"token is not a well-formed JWT ({exc})")
    return TokenRefused("invalid_token", f"invalid token: {exc}")


def _check_type(claims: Mapping[str, Any], expected: str) -> None:
    if claims["type"] == expected:
        return
    if expected == ACCESS:
        message = "a refresh token cannot be used as an access token: exchange it at POST /api/auth/refresh"
    else:
        message = "an access token cannot be used to refresh: send the refresh token"
    raise TokenRefused("wrong_token_type", message)


def _renew_hint(claims: Mapping[str, Any] | None, revoked: bool = False) -> str:
    claims = claims or {}
    if claims.get("type") == REFRESH:
        return "get a new refresh token"
    if revoked or "visitor" in (claims.get("roles") or ()):
        return "get a new token"
    return "refresh it at POST /api/auth/refresh or get a new one"


def _expiry(claims: Mapping[str, Any] | None) -> str:
    exp = (claims or {}).get("exp")
    if not isinstance(exp, int | float):
        return ""
    return f" at {datetime.fromtimestamp(exp, UTC).isoformat(timespec='seconds')}"


def _algorithm() -> str:
    """The ``alg`` the refused token's header names, for the message."""
    token = request.headers.get("Authorization", "").rpartition(" ")[2]
    try:
        return repr(jwt.get_unverified_header(token).get("alg"))
    except jwt.InvalidTokenError:
        return "(unreadable)"


def _config(name: str) -> str:
    return str(current_app.config[f"JWT_DECODE_{name}"])
