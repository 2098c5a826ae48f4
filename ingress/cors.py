"""Cross-origin requests from the pages of registered sites: exact origins, preflights, no credentials.

A page on ``https://shop.example`` calling the gateway sends ``Origin: https://shop.example``. The answer allows
exactly that origin when a registered site lists it (or it is the gateway's own), and only on the endpoints a
visitor uses; any other origin gets 403 and no ``Access-Control-Allow-Origin``. Tokens travel in the
``Authorization`` header, never in cookies, so credentials are never allowed. A visitor's token is only good
from its own site's pages.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from typing import Any

from flask import Flask, Response, current_app, request
from werkzeug.exceptions import Forbidden

from adapters.errors import UNAVAILABLE
from adapters.sites import Site, SiteRepository
from adapters.tokens import Identity
from ingress.auth import AUTHENTICATED_HOOKS

logger = logging.getLogger(__name__)

#: The site key of the embedded mode's built-in site: its one origin is the gateway's own (``/demo``).
DEMO_SITE_KEY = "demo"
#: The host names the demo site answers on: the quick start's own machine. The ``Host`` header is the client's
#: to choose, so any other name (``gw.lan``) would hand visitor tokens to whoever sends it.
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
#: Seconds the registered origins are cached: a site added or removed counts everywhere within this.
CACHE_SECONDS = 5.0
#: An origin not in the cache reloads it, at most this often: a site just added works at once, a flood of
#: requests from a foreign origin costs one query a second.
MISS_RELOAD_SECONDS = 1.0
#: The endpoints a page of a registered site may call: visitor tokens, messages, sessions (transcript, replies,
#: events, audio, stream tickets). Every other ``/api`` path refuses foreign origins.
CROSS_ORIGIN_PATHS = re.compile(r"^/api/(?:visitor-tokens|messages|audio|sessions/[^/]+(?:/.*)?)$")
ALLOW_METHODS = "GET, POST, DELETE"
ALLOW_HEADERS = "Authorization, Content-Type, Last-Event-ID"
#: Response headers a page's script may read: the rate limiter's.
EXPOSE_HEADERS = "Retry-After"
MAX_AGE_SECONDS = 600
EXTENSION = "assistant.sites"


class OriginRefused(Forbidden):
    """403 ``origin_not_allowed``."""


class SiteDirectory:
    """The registered sites as the edge sees them: read from the database every few seconds, plus the embedded
    mode's ``demo`` site."""

    def __init__(self, sites: SiteRepository, demo: bool, cache_seconds: float = CACHE_SECONDS) -> None:
        self._sites = sites
        self._demo = demo
        self._cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._by_key: dict[str, Site] = {}
        self._origins: frozenset[str] = frozenset()
        self._loaded_at = float("-inf")

    def site(self, site_key: str, fresh: bool = False) -> Site | None:
        """The site with ``site_key`` (``fresh``: from the database, not the cache); None when there is none."""
        if self._demo and site_key == DEMO_SITE_KEY:
            # No secret: the demo site cannot vouch for customers.
            return Site(DEMO_SITE_KEY, "Demo", (), "", 0.0)
        if fresh:
            return self._sites.get(site_key)
        site = self._snapshot()[0].get(site_key)
        if site is None and self._reload_on_miss():
            site = self._snapshot()[0].get(site_key)
        return site

    def site_allows(self, site: Site | str | None, origin: str) -> bool:
        """True when pages of ``origin`` may use ``site`` (a site or its key)."""
        if isinstance(site, str):
            site = self.site(site)
        if site is None:
            return False
        if self._demo and site.site_key == DEMO_SITE_KEY:
            # Only on the gateway's own machine: a page served on a LAN name must be registered as a site.
            return origin == own_origin() and own_host_is_loopback()
        return origin in site.origins

    def registered(self, origin: str) -> bool:
        """True when ``origin`` is the gateway's own or any site's (the embedded demo site is the gateway's own)."""
        if origin == own_origin():
            return True
        if origin in self._snapshot()[1]:
            return True
        return self._reload_on_miss() and origin in self._snapshot()[1]

    def _snapshot(self) -> tuple[dict[str, Site], frozenset[str]]:
        if time.monotonic() - self._loaded_at > self._cache_seconds:
            self._load(self._cache_seconds)
        return self._by_key, self._origins

    def _reload_on_miss(self) -> bool:
        """Reload unless that happened within ``MISS_RELOAD_SECONDS``; True when it reloaded."""
        if time.monotonic() - self._loaded_at < MISS_RELOAD_SECONDS:
            return False
        return self._load(MISS_RELOAD_SECONDS)

    def _load(self, older_than: float) -> bool:
        """Read the sites unless another thread did within ``older_than`` seconds (while this one waited for the
        lock); True when this call read them."""
        with self._lock:
            if time.monotonic() - self._loaded_at < older_than:
                return False
            try:
                sites = self._sites.list()
            except UNAVAILABLE:
                if self._loaded_at == float("-inf"):
                    raise  # nothing to go on: the request answers 503
                # The database is away: the last list holds, and is tried again in a second.
                logger.warning("cannot reload the registered sites; using the ones read before")
                self._loaded_at = time.monotonic() - self._cache_seconds + MISS_RELOAD_SECONDS
                return False
            self._by_key = {site.site_key: site for site in sites}
            self._origins = frozenset(origin for site in sites for origin in site.origins)
            self._loaded_at = time.monotonic()
            return True


def own_origin() -> str:
    """The gateway's origin as the request reached it: ``scheme://host[:port]`` (no default port)."""
    scheme = request.scheme.lower()
    host = request.host.lower()
    default = {"http": ":80", "https": ":443"}.get(scheme)
    if default and host.endswith(default):
        host = host[: -len(default)]
    return f"{scheme}://{host}"


def own_host_is_loopback() -> bool:
    """True when the request reached the gateway by a loopback name (``localhost``, ``127.0.0.1``, ``[::1]``; any
    port)."""
    host = request.host.lower()
    if host.startswith("["):
        name = host[1 : host.find("]")] if "]" in host else ""
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return name in LOOPBACK_HOSTS


def site_directory() -> SiteDirectory:
    directory: SiteDirectory = current_app.extensions[EXTENSION]
    return directory


def init_app(app: Flask, directory: SiteDirectory) -> None:
    """Answer preflights, refuse foreign origins, add the CORS headers, and check visitors' origins."""
    app.extensions[EXTENSION] = directory
    # First among the hooks: a preflight or a refused origin is answered before rate limits or tokens.
    app.before_request_funcs.setdefault(None, []).insert(0, _check_origin)
    app.after_request(_cors_headers)
    app.extensions.setdefault(AUTHENTICATED_HOOKS, []).append(check_visitor_origin)
    app.register_error_handler(OriginRefused, _refused)


def _allowed(origin: str) -> bool:
    """May a page of ``origin`` call this request's path?"""
    if origin == own_origin():
        return True
    return bool(CROSS_ORIGIN_PATHS.match(request.path)) and site_directory().registered(origin)


def _allowed_or_unknown(origin: str) -> bool:
    """``_allowed``, False when the sites cannot be read (the 503 for that is on its way)."""
    try:
        return _allowed(origin)
    except UNAVAILABLE:
        return False


def _check_origin() -> Response | None:
    origin = request.headers.get("Origin")
    if origin is None or not request.path.startswith("/api/"):
        return None
    if not _allowed(origin):
        raise OriginRefused(f"pages of {origin[:300]} may not call {request.path[:200]}: register the site's origin")
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        response = Response(status=204)
        del response.headers["Content-Type"]  # no body
        response.headers["Access-Control-Allow-Methods"] = ALLOW_METHODS
        response.headers["Access-Control-Allow-Headers"] = ALLOW_HEADERS
        response.headers["Access-Control-Max-Age"] = str(MAX_AGE_SECONDS)
        return response
    return None


def _cors_headers(response: Response) -> Response:
    if not request.path.startswith("/api/"):
        return response
    response.vary.add("Origin")
    origin = request.headers.get("Origin")
    # The same check as before the view, answered from the cache.
    if origin is not None and _allowed_or_unknown(origin):
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
    return response


def check_visitor_origin(identity: Identity) -> None:
    """A visitor's token used from a page (the request has an ``Origin``) must come from its own site's origins."""
    origin = request.headers.get("Origin")
    if origin is None or not identity.is_visitor:
        return
    if not site_directory().site_allows(identity.site, origin):
        raise OriginRefused(f"this visitor token is for another site than the pages of {origin[:300]}")


def _refused(exc: OriginRefused) -> tuple[dict[str, Any], int]:
    return {"error": "origin_not_allowed", "message": exc.description or "origin not allowed"}, 403
