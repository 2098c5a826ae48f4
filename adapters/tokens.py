"""Signed access tokens (HS256 JWTs): issued by ``assistant token``, checked by the HTTP edge."""

from __future__ import annotations

import time
from dataclasses import dataclass

import jwt

ALGORITHM = "HS256"
ROLES = ("user", "admin")


class TokenError(Exception):
    """The token is missing, malformed, expired or signed with another secret."""


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a valid token says the caller is."""

    subject: str
    roles: tuple[str, ...]

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles


def issue_token(secret: str, subject: str, roles: tuple[str, ...], ttl_seconds: int) -> str:
    """A token for ``subject`` with ``roles``, valid for ``ttl_seconds``."""
    if not subject:
        raise ValueError("a token needs a subject")
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown role(s) {sorted(unknown)}; roles are {', '.join(ROLES)}")
    issued = int(time.time())
    claims = {"sub": subject, "roles": list(roles), "iat": issued, "exp": issued + ttl_seconds}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_token(secret: str, token: str) -> Identity:
    """The identity in ``token``; raises ``TokenError`` saying why it is not acceptable."""
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], options={"require": ["sub", "exp"]})
    except jwt.ExpiredSignatureError as exc:
        raise TokenError("token expired") from exc
    except jwt.InvalidTokenError as exc:
        raise TokenError(f"invalid token: {exc}") from exc
    roles = claims.get("roles", [])
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise TokenError("invalid token: 'roles' must be a list of strings")
    return Identity(subject=str(claims["sub"]), roles=tuple(roles))
