"""``/api/auth``: a refresh token buys a new access token; logout revokes the caller's tokens."""

from __future__ import annotations

from typing import Any

import jwt
from flask import Blueprint, current_app, request
from flask_jwt_extended import decode_token
from flask_jwt_extended.exceptions import JWTExtendedException
from werkzeug.exceptions import BadRequest, Forbidden, ServiceUnavailable

from adapters.bundle import Adapters
from adapters.revocation import RevocationUnavailable
from adapters.tokens import ACCESS, REFRESH, claims_problem, mint, revoke
from ingress.auth import current_claims, current_identity, refusal, require_token

bp = Blueprint("auth", __name__)


def _adapters() -> Adapters:
    adapters: Adapters = current_app.extensions["assistant"]["adapters"]
    return adapters


@bp.post("/api/auth/refresh")
@require_token(token_type=REFRESH)
def refresh() -> dict[str, Any]:
    """A new access token with the refresh token's subject and roles; the refresh token stays valid."""
    identity = current_identity()
    ttl = _adapters().settings.jwt_access_ttl_seconds
    return {"access_token": mint(identity.subject, identity.roles, ACCESS, ttl), "expires_in": ttl}


@bp.post("/api/auth/logout")
@require_token()
def logout() -> tuple[str, int]:
    """Revokes the access token, and the refresh token in the body (``{"refresh_token": ...}``) when given."""
    refresh_claims = _refresh_token_to_revoke()
    revocations = _adapters().revocations
    try:
        revoke(revocations, current_claims())
        if refresh_claims is not None:
            revoke(revocations, refresh_claims)
    except RevocationUnavailable as exc:
        raise ServiceUnavailable("tokens cannot be revoked right now; try again shortly") from exc
    return "", 204


def _refresh_token_to_revoke() -> dict[str, Any] | None:
    """The claims of the body's refresh token, checked before anything is revoked; None without one."""
    if not request.get_data().strip():
        return None
    body = request.get_json(silent=True, force=True)
    if not isinstance(body, dict):
        raise BadRequest('the body must be empty or a JSON object such as {"refresh_token": "..."}')
    token = body.get("refresh_token")
    if token is None:
        return None
    if not isinstance(token, str) or not token:
        raise BadRequest("'refresh_token' must be a non-empty string")
    try:
        # An expired one is accepted and revoked all the same: logging out must not fail because of it.
        claims: dict[str, Any] = decode_token(token, allow_expired=True)
    except (JWTExtendedException, jwt.InvalidTokenError) as exc:
        raise BadRequest(f"'refresh_token' is not usable: {refusal(exc).description}") from exc
    problem = claims_problem(claims)
    if problem:
        raise BadRequest(f"'refresh_token' is not usable: its claims are not valid: {problem}")
    if claims["type"] != REFRESH:
        raise BadRequest("'refresh_token' is an access token; send the refresh token")
    if claims["sub"] != current_identity().subject:
        raise Forbidden("'refresh_token' belongs to another user")
    return claims
