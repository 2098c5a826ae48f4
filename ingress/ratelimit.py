"""Per-user and per-address request limits on ``/api`` (Flask-Limiter), counted in Redis across replicas."""

from __future__ import annotations

import logging
import math
import time
from functools import partial
from typing import Any

from flask import Flask, g, request
from flask_limiter import ApplicationLimit, Limiter, RateLimitExceeded
from flask_limiter.util import get_remote_address

from adapters.tokens import Identity
from ingress.auth import AUTHENTICATED_HOOKS
from ingress.openapi import PATH as OPENAPI_PATH
from pipeline.settings import Settings

logger = logging.getLogger(__name__)

#: Only paths under this are limited, except the API description, which is public and static.
LIMITED_PREFIX = "/api/"
UNLIMITED_PATHS = frozenset({OPENAPI_PATH})
#: Namespaces the counters in Redis (``LIMITS:LIMITER/assistant/<key>/<scope>/...``).
KEY_PREFIX = "assistant"
#: How long one call to the limiter's Redis may take before the request goes on without it.
STORAGE_TIMEOUT_SECONDS = 1.0


def install_rate_limits(app: Flask, settings: Settings) -> Limiter | None:
    """Limit ``/api`` requests per client address and per token subject; None when both limits are off.

    The address limit is checked before the view, so it also counts requests without a valid token.
    The user limit needs the verified identity, so it is checked from the authentication decorator.
    Both are fixed windows: one Redis round trip each per request.
    """
    per_user, per_ip = settings.rate_limit_per_user, settings.rate_limit_per_ip
    if per_user is None and per_ip is None:
        return None
    address_limits = [ApplicationLimit(per_ip, key_function=get_remote_address, scope="ip")] if per_ip else []
    limiter = Limiter(
        get_remote_address,
        application_limits=address_limits,  # type: ignore[arg-type]
        strategy="fixed-window",
        # Embedded mode has no Redis: one process, so counting in memory is exact.
        storage_uri=settings.redis_url or "memory://",
        storage_options=_redis_options() if settings.redis_url else {},
        key_prefix=KEY_PREFIX,
        # Redis unreachable: count in this process's memory (one warning) and look for Redis again
        # now and then, rather than answer 500. Anything else the limiter fails at is logged, not raised.
        in_memory_fallback_enabled=True,
        swallow_errors=True,
        # Headers on every response would cost a second Redis round trip; 429s get Retry-After below.
        headers_enabled=False,
    )
    limiter.init_app(app)
    limiter.request_filter(_not_limited)
    if per_user is not None:
        count_user_request = limiter.shared_limit(per_user, scope="user", key_func=_subject)(_user_request)
        app.extensions.setdefault(AUTHENTICATED_HOOKS, []).append(count_user_request)
    app.register_error_handler(RateLimitExceeded, partial(_too_many_requests, limiter))
    return limiter


def _redis_options() -> dict[str, Any]:
    return {"socket_connect_timeout": STORAGE_TIMEOUT_SECONDS, "socket_timeout": STORAGE_TIMEOUT_SECONDS}


def _not_limited() -> bool:
    path = request.path
    return not path.startswith(LIMITED_PREFIX) or path in UNLIMITED_PATHS


def _subject() -> str:
    identity: Identity = g.identity
    return identity.subject


def _user_request(identity: Identity) -> None:
    """Does nothing: the user limit decorating it is counted when the authentication decorator calls it."""


def _too_many_requests(limiter: Limiter, exc: RateLimitExceeded) -> tuple[dict[str, Any], int, dict[str, str]]:
    retry_after = _retry_after(limiter, exc)
    who = "this user" if exc.limit.scope == "user" else "this address"
    message = f"too many requests from {who} (at most {exc.limit.limit}); try again in {retry_after} s"
    return {"error": "too_many_requests", "message": message}, 429, {"Retry-After": str(retry_after)}


def _retry_after(limiter: Limiter, exc: RateLimitExceeded) -> int:
    """Whole seconds until the breached window ends (its full length if the storage cannot say)."""
    try:
        breached = limiter.current_limit
        if breached is not None:
            reset_time, _remaining = breached.window
            return max(1, math.ceil(reset_time - time.time()))
    except Exception as error:
        logger.warning("could not read the rate limit window: %s", error)
    return max(1, math.ceil(exc.limit.limit.get_expiry()))
