"""Access and refresh tokens (HS256 JWTs through flask-jwt-extended): their claims, roles, and issuing them anywhere."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from flask import Flask
from flask_jwt_extended import JWTManager, create_access_token, create_refresh_token, decode_token
from jwt import InvalidTokenError

from pipeline.settings import Settings

if TYPE_CHECKING:
    from adapters.revocation import Revocations

ALGORITHM = "HS256"
ACCESS = "access"
REFRESH = "refresh"
#: ``visitor`` is a web widget's visitor: it may only send messages and read its own sessions. ``agent`` is a human
#: operator who takes over widget conversations handed to a person.
ROLES = ("user", "admin", "visitor", "agent")
#: Seconds of clock difference allowed between the machines that issue and check tokens. An expired
#: token is accepted this much longer, so its revocation is kept this much longer too.
CLOCK_SKEW_SECONDS = 5


class TokenClaimsError(InvalidTokenError):
    """Correctly signed, but a claim this server relies on is missing or malformed."""


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a valid token says the caller is."""

    subject: str
    roles: tuple[str, ...]
    #: The website a visitor's token was issued for (its ``site`` claim, a site key); None for other tokens.
    site: str | None = None

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles

    @property
    def is_visitor(self) -> bool:
        """Only the visitor role (it is never combined with others)."""
        return "visitor" in self.roles


@dataclass(frozen=True, slots=True)
class TokenPair:
    """What ``assistant token --refresh`` prints."""

    access_token: str
    refresh_token: str
    #: Lifetime of the access token, seconds.
    expires_in: int
    #: Lifetime of the refresh token, seconds.
    refresh_expires_in: int

    def to_json(self) -> dict[str, Any]:
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "expires_in": self.expires_in,
            "refresh_expires_in": self.refresh_expires_in,
        }


def jwt_config(settings: Settings) -> dict[str, Any]:
    """The Flask configuration ``JWTManager`` reads: one place, used by the HTTP edge and by issuing outside it."""
    return {
        "JWT_SECRET_KEY": settings.jwt_secret,
        "JWT_ALGORITHM": ALGORITHM,
        # Never what a token's header asks for: 'none' and every other algorithm are refused.
        "JWT_DECODE_ALGORITHMS": [ALGORITHM],
        "JWT_ENCODE_AUDIENCE": settings.jwt_audience,
        "JWT_DECODE_AUDIENCE": settings.jwt_audience,
        "JWT_ENCODE_ISSUER": settings.jwt_issuer,
        "JWT_DECODE_ISSUER": settings.jwt_issuer,
        "JWT_ACCESS_TOKEN_EXPIRES": timedelta(seconds=settings.jwt_access_ttl_seconds),
        "JWT_REFRESH_TOKEN_EXPIRES": timedelta(seconds=settings.jwt_refresh_ttl_seconds),
        "JWT_DECODE_LEEWAY": CLOCK_SKEW_SECONDS,
        "JWT_TOKEN_LOCATION": ["headers"],
        # Bearer headers only: no cookies, so no CSRF claim; no nbf, iat says the same.
        "JWT_COOKIE_CSRF_PROTECT": False,
        "JWT_ENCODE_NBF": False,
    }


def longest_token_life(settings: Settings) -> int:
    """Seconds after its issue that any token may still be accepted: refresh tokens, or a visitor's token traded
    for a new one until ``VISITOR_RENEW_SECONDS`` after it expired."""
    visitor = settings.visitor_token_ttl_seconds + settings.visitor_renew_seconds
    return max(settings.jwt_refresh_ttl_seconds, visitor) + CLOCK_SKEW_SECONDS


def roles_problem(roles: object) -> str | None:
    """What is wrong with a token's ``roles``, or None."""
    if not isinstance(roles, list | tuple) or not all(isinstance(role, str) for role in roles):
        return "'roles' must be a list of strings"
    if not roles:
        return "a token needs at least one role"
    unknown = sorted(set(roles) - set(ROLES))
    if unknown:
        return f"unknown role(s) {unknown}; roles are {', '.join(ROLES)}"
    if "visitor" in roles and len(set(roles)) > 1:
        return "the visitor role cannot be combined with other roles"
    return None


def claims_problem(claims: Mapping[str, Any]) -> str | None:
    """What is wrong with a correctly signed token's claims, or None (aud, iss and expiry are checked when decoding)."""
    for name in ("sub", "jti"):
        if not isinstance(claims.get(name), str) or not claims[name]:
            return f"the '{name}' claim must be a non-empty string"
    for name in ("iat", "exp"):
        if not isinstance(claims.get(name), int | float) or isinstance(claims[name], bool):
            return f"the '{name}' claim must be a time"
    if claims.get("type") not in (ACCESS, REFRESH):
        return f"the 'type' claim must be '{ACCESS}' or '{REFRESH}'"
    problem = roles_problem(claims.get("roles"))
    if problem:
        return problem
    if claims["type"] == REFRESH and "visitor" in claims["roles"]:
        return "visitor tokens cannot be refreshed"
    if "site" in claims and (not isinstance(claims["site"], str) or not claims["site"]):
        return "the 'site' claim must be a non-empty string"
    return None


def identity_of(claims: Mapping[str, Any]) -> Identity:
    """The identity in claims that passed ``claims_problem``."""
    return Identity(subject=claims["sub"], roles=tuple(claims["roles"]), site=claims.get("site"))


def mint(subject: str, roles: Iterable[str], token_type: str, ttl_seconds: int, site: str | None = None) -> str:
    """A signed token; call inside an app context whose config came from ``jwt_config``.

    ``site``: the site key a visitor's token is for (its ``site`` claim).
    """
    if not subject:
        raise ValueError("a token needs a subject")
    roles = list(roles)
    problem = roles_problem(roles)
    if problem:
        raise ValueError(problem)
    if token_type == REFRESH and "visitor" in roles:
        raise ValueError("visitor tokens cannot be refreshed: issue a new access token instead")
    # iat to the microsecond: "revoke every token of this subject issued up to now" must not also
    # refuse a token issued later in the same second. iat and exp come from one clock reading, so
    # expires_delta=False keeps the library from computing exp from its own.
    now = time.time()
    claims: dict[str, Any] = {"roles": roles, "iat": now, "exp": int(now) + ttl_seconds}
    if site is not None:
        claims["site"] = site
    create = create_refresh_token if token_type == REFRESH else create_access_token
    return create(identity=subject, additional_claims=claims, expires_delta=False)


def issue_token(
    settings: Settings, subject: str, roles: Iterable[str], ttl_seconds: int | None = None, site: str | None = None
) -> str:
    """An access token for ``subject`` with ``roles``, valid ``ttl_seconds`` (default ``JWT_ACCESS_TTL_SECONDS``);
    ``site``: a visitor token's site key.

    Needs no request: for ``assistant token``, tests and benchmarks. A negative ttl gives an expired token.
    """
    ttl = settings.jwt_access_ttl_seconds if ttl_seconds is None else ttl_seconds
    _check_ttl(settings, ttl)
    with _jwt_context(settings):
        return mint(subject, roles, ACCESS, ttl, site=site)


def issue_pair(settings: Settings, subject: str, roles: Iterable[str], ttl_seconds: int | None = None) -> TokenPair:
    """An access token (``ttl_seconds``, default ``JWT_ACCESS_TTL_SECONDS``) and a refresh token for ``subject``."""
    roles = list(roles)
    ttl = settings.jwt_access_ttl_seconds if ttl_seconds is None else ttl_seconds
    _check_ttl(settings, ttl)
    with _jwt_context(settings):
        access = mint(subject, roles, ACCESS, ttl)
        refresh = mint(subject, roles, REFRESH, settings.jwt_refresh_ttl_seconds)
    return TokenPair(access, refresh, ttl, settings.jwt_refresh_ttl_seconds)


def read_token(settings: Settings, token: str, allow_expired: bool = False) -> dict[str, Any]:
    """The claims of ``token`` after checking signature, algorithm, audience, issuer, expiry and our claims.

    Raises ``jwt.InvalidTokenError`` (or a subclass) saying why it is not acceptable.
    """
    with _jwt_context(settings):
        claims: dict[str, Any] = decode_token(token, allow_expired=allow_expired)
    problem = claims_problem(claims)
    if problem:
        raise TokenClaimsError(problem)
    return claims


def revoke(revocations: Revocations, claims: Mapping[str, Any], visitor_renew_seconds: int = 0) -> None:
    """Revoke the token with ``claims`` until it would have stopped being accepted anyway: for a visitor's token,
    ``visitor_renew_seconds`` (``VISITOR_RENEW_SECONDS``) after its expiry, since it may be renewed until then."""
    renewable = visitor_renew_seconds if "visitor" in (claims.get("roles") or ()) else 0
    revocations.revoke_token(claims["jti"], claims["exp"] + CLOCK_SKEW_SECONDS + renewable)


def _check_ttl(settings: Settings, ttl: int) -> None:
    if ttl > settings.jwt_refresh_ttl_seconds:
        # Revoking every token of a subject is remembered only that long.
        raise ValueError(f"a token may live at most JWT_REFRESH_TTL_SECONDS ({settings.jwt_refresh_ttl_seconds} s)")


@contextmanager
def _jwt_context(settings: Settings) -> Iterator[None]:
    """An app context configured for tokens, for issuing and reading them outside a request."""
    app = Flask(__name__)
    app.config.update(jwt_config(settings))
    JWTManager(app)
    with app.app_context():
        yield
