"""``POST /api/visitor-tokens``: a short-lived token for a visitor of a registered site, asked for by its page.

No bearer token: the page's ``Origin`` must be one of the site's. A visitor is anonymous (``visitor:<site>:<id>``,
kept across renewals by sending the previous token) or a customer the site vouches for by signing the customer's
id with the site's secret (``customer:<site>:<id>``), who then has the same sessions on every device.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable
from typing import Any

import jwt
from flask import Blueprint, Flask, current_app, request
from werkzeug.exceptions import BadRequest, Forbidden, ServiceUnavailable

from adapters.bundle import Adapters
from adapters.revocation import RevocationUnavailable
from adapters.sites import Site
from adapters.tokens import ACCESS, CLOCK_SKEW_SECONDS, mint, read_token
from ingress.auth import TokenRefused
from ingress.cors import OriginRefused, site_directory
from pipeline.stages import Channel

bp = Blueprint("visitors", __name__)

PATH = "/api/visitor-tokens"
SITE_KEY = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
CUSTOMER_ID = re.compile(r"^[A-Za-z0-9_.@:-]{1,64}$")
#: ``customer_signature``: HMAC-SHA256 in hex.
SIGNATURE = re.compile(r"^[0-9a-fA-F]{64}$")
MAX_TOKEN = 4096
VISITOR = "visitor"
CUSTOMER = "customer"


class SiteRefused(Forbidden):
    """403 with a machine-readable reason: ``unknown_site`` or ``bad_signature``."""

    def __init__(self, error: str, message: str) -> None:
        super().__init__(message)
        self.error = error


@bp.post(PATH)
def issue_visitor_token() -> tuple[dict[str, Any], int]:
    adapters: Adapters = current_app.extensions["assistant"]["adapters"]
    settings = adapters.settings
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadRequest('the body must be a JSON object such as {"site_key": "site_..."}')
    site_key = body.get("site_key")
    if not isinstance(site_key, str) or not SITE_KEY.fullmatch(site_key):
        raise BadRequest("'site_key' is required: the key `assistant sites add` printed")
    # A JWT is ASCII; anything else (an unpaired surrogate) would fail inside the JWT library.
    previous = _optional(body, "visitor_token", lambda v: 0 < len(v) <= MAX_TOKEN and v.isascii(), "a token")
    customer_id = _optional(body, "customer_id", CUSTOMER_ID.fullmatch, "1-64 letters, digits or _ . @ : -")
    signature = _optional(body, "customer_signature", SIGNATURE.fullmatch, "64 hex digits (HMAC-SHA256)")
    if (customer_id is None) != (signature is None):
        raise BadRequest("'customer_id' and 'customer_signature' go together")

    directory = site_directory()
    # From the database, not the cache: a site just registered works at once, a removed one at once stops.
    site = directory.site(site_key, fresh=True)
    if site is None:
        raise SiteRefused("unknown_site", f"no site has the key {site_key!r}: see `assistant sites list`")
    origin = request.headers.get("Origin")
    if origin is None or not directory.site_allows(site, origin):
        where = "a request without an Origin header" if origin is None else f"pages of {origin[:300]}"
        raise OriginRefused(f"{where} may not use this site key: the site's origins are set by `assistant sites`")

    if customer_id is not None and signature is not None:
        if not _signed(site, customer_id, signature):
            raise SiteRefused("bad_signature", "customer_signature is not the site's HMAC-SHA256 of customer_id")
        subject = f"{CUSTOMER}:{site.site_key}:{customer_id}"
    elif previous is not None:
        subject = _renewed_subject(adapters, site, previous)
    else:
        subject = f"{VISITOR}:{site.site_key}:{secrets.token_urlsafe(16)}"
    ttl = settings.visitor_token_ttl_seconds
    token = mint(subject, [VISITOR], ACCESS, ttl, site=site.site_key)
    visitor_id = subject.split(":", 2)[2]
    answer = {"token": token, "expires_in": ttl, "visitor_id": visitor_id, "site_key": site.site_key}
    # A signed-in customer's latest conversation, so the widget on another device (no session id stored yet)
    # shows the same history and carries on in it.
    answer["session_id"] = adapters.repository.latest_session(subject, str(Channel.WEB)) if customer_id else None
    return answer, 201


def customer_signature(secret: str, customer_id: str) -> str:
    """What a site sends as ``customer_signature``: hex HMAC-SHA256 of the id's UTF-8 bytes, keyed by the secret's
    text (the 64 hex characters ``sites add`` printed, as they are)."""
    return hmac.new(secret.encode(), customer_id.encode(), hashlib.sha256).hexdigest()


def _signed(site: Site, customer_id: str, signature: str) -> bool:
    if not site.secret:  # the demo site has none: it vouches for no one
        return False
    return hmac.compare_digest(customer_signature(site.secret, customer_id), signature.lower())


def _renewed_subject(adapters: Adapters, site: Site, token: str) -> str:
    """The subject of a visitor's previous token, to keep it; 401 ``token_expired`` when that token cannot be
    renewed: expired longer than ``VISITOR_RENEW_SECONDS`` ago, revoked, another site's, or not a visitor token of
    this server (signature, audience and issuer are checked)."""
    settings = adapters.settings
    try:
        claims = read_token(settings, token, allow_expired=True)
    except jwt.InvalidTokenError:
        raise _cannot_renew("the visitor_token is not a valid token of this server") from None
    if claims["type"] != ACCESS or list(claims["roles"]) != [VISITOR] or claims.get("site") != site.site_key:
        raise _cannot_renew("the visitor_token is not a visitor token of this site")
    subject = str(claims["sub"])
    if not subject.startswith((f"{VISITOR}:{site.site_key}:", f"{CUSTOMER}:{site.site_key}:")):
        raise _cannot_renew("the visitor_token is not a visitor token of this site")
    if float(claims["exp"]) + settings.visitor_renew_seconds + CLOCK_SKEW_SECONDS < time.time():
        raise _cannot_renew("the visitor_token expired too long ago to be renewed")
    try:
        revoked = adapters.revocations.is_revoked(claims["jti"], subject, float(claims["iat"]))
    except RevocationUnavailable as exc:
        raise ServiceUnavailable("token revocations cannot be checked right now; try again shortly") from exc
    if revoked:
        raise _cannot_renew("the visitor_token has been revoked")
    return subject


def _cannot_renew(why: str) -> TokenRefused:
    return TokenRefused("token_expired", f"{why}; ask for a new one without visitor_token")


def _optional(body: dict[str, Any], name: str, valid: Callable[[str], object], what: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not valid(value):
        raise BadRequest(f"'{name}' must be {what}")
    return value


def init_app(app: Flask) -> None:
    """Serve ``POST /api/visitor-tokens`` on ``app``, its refusals as JSON with their reason."""
    app.register_blueprint(bp)

    @app.errorhandler(SiteRefused)
    def refused(exc: SiteRefused) -> tuple[dict[str, str], int]:
        return {"error": exc.error, "message": exc.description or ""}, 403
