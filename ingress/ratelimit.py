"""Per-user and per-address request limits on ``/api``: fixed windows counted in Redis across replicas.

Built on ``limits``, the storage and strategy layer of Flask-Limiter. Flask-Limiter's own per-request
resolution of which limits apply cost about 0.3 ms of CPU per request here (measured with its Redis and
memory storages alike); checking two known limits directly costs one storage call each.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any

from flask import Flask, request
from limits import RateLimitItem, parse_many
from limits.errors import StorageError
from limits.storage import MemoryStorage, Storage
from limits.strategies import FixedWindowRateLimiter
from werkzeug.exceptions import TooManyRequests

from adapters.tokens import Identity
from ingress.auth import AUTHENTICATED_HOOKS
from ingress.openapi import PATH as OPENAPI_PATH
from pipeline.errors import ConfigurationError
from pipeline.settings import Settings

logger = logging.getLogger(__name__)

#: Only paths under this are limited, except the API description, which is public and static.
LIMITED_PREFIX = "/api/"
# The Telegram webhook is called by Telegram's few addresses for every user of the bot, and is guarded by its
# secret instead.
UNLIMITED_PATHS = frozenset({OPENAPI_PATH, "/api/telegram"})
#: Visitor tokens are limited per address on their own too (``RATE_LIMIT_VISITOR_TOKENS``).
VISITOR_TOKENS_PATH = "/api/visitor-tokens"
#: Namespaces the counters in Redis (``LIMITS:LIMITER/assistant/<scope>/<key>/<amount>/<n>/<unit>``).
KEY_PREFIX = "assistant"
#: After Redis failed, the limits are counted in memory this long before Redis is tried again.
RETRY_STORAGE_SECONDS = 5.0


class RateLimited(TooManyRequests):
    """429: one of the limits is used up until ``retry_after`` seconds from now."""

    def __init__(self, who: str, limit: RateLimitItem, retry_after: int) -> None:
        super().__init__(f"too many requests from {who} (at most {limit}); try again in {retry_after} s")
        self.retry_after = retry_after


class RateLimits:
    """The limits of one app and where they are counted: Redis (or memory when embedded), memory while Redis is away."""

    def __init__(
        self,
        per_user: list[RateLimitItem],
        per_address: list[RateLimitItem],
        storage: Storage,
        visitor_tokens: list[RateLimitItem] | None = None,
    ) -> None:
        self.per_user = per_user
        self.per_address = per_address
        #: Per address, on ``POST /api/visitor-tokens`` only: it needs no token, and each answer is a new visitor.
        self.visitor_tokens = visitor_tokens or []
        self._limiter = FixedWindowRateLimiter(storage)
        self._lock = threading.Lock()
        self._fallback: FixedWindowRateLimiter | None = None
        #: ``time.monotonic()`` until which the fallback counts instead of the storage.
        self._storage_down_until = 0.0

    def check_address(self) -> None:
        """Before the view (so requests without a valid token count too): the client address's limits."""
        path = request.path
        if self.per_address and path.startswith(LIMITED_PREFIX) and path not in UNLIMITED_PATHS:
            self._hit(self.per_address, "ip", request.remote_addr or "unknown", "this address")
        if self.visitor_tokens and path == VISITOR_TOKENS_PATH and request.method == "POST":
            self._hit(self.visitor_tokens, "visitor-token-ip", request.remote_addr or "unknown", "this address")

    def check_user(self, identity: Identity) -> None:
        """Once the token is verified: the limits of its subject."""
        self._hit(self.per_user, "user", identity.subject, "this user")

    def _hit(self, limits: list[RateLimitItem], scope: str, key: str, who: str) -> None:
        for limit in limits:
            limiter = self._current()
            try:
                allowed = limiter.hit(limit, KEY_PREFIX, scope, key)
            except StorageError as exc:
                limiter = self._storage_failed(exc)
                allowed = limiter.hit(limit, KEY_PREFIX, scope, key)
            if not allowed:
                raise RateLimited(who, limit, _retry_after(limiter, limit, scope, key))

    def _current(self) -> FixedWindowRateLimiter:
        if self._fallback is not None and time.monotonic() < self._storage_down_until:
            return self._fallback
        return self._limiter

    def _storage_failed(self, exc: StorageError) -> FixedWindowRateLimiter:
        with self._lock:
            if self._fallback is None:
                self._fallback = FixedWindowRateLimiter(MemoryStorage())
            if time.monotonic() >= self._storage_down_until:
                logger.warning(
                    "rate limit storage unreachable (%s): counting in this process's memory for %g s",
                    type(exc.storage_error).__name__,
                    RETRY_STORAGE_SECONDS,
                )
            self._storage_down_until = time.monotonic() + RETRY_STORAGE_SECONDS
            return self._fallback


def install_rate_limits(app: Flask, settings: Settings, storage: Storage) -> RateLimits | None:
    """Limit ``/api`` requests per client address and per token subject, counted in ``storage``; None when both
    limits are off."""
    per_user = _parse("RATE_LIMIT_PER_USER", settings.rate_limit_per_user)
    per_address = _parse("RATE_LIMIT_PER_IP", settings.rate_limit_per_ip)
    visitor_tokens = _parse("RATE_LIMIT_VISITOR_TOKENS", settings.rate_limit_visitor_tokens)
    if not per_user and not per_address and not visitor_tokens:
        return None
    limits = RateLimits(per_user, per_address, storage, visitor_tokens)
    if per_address or visitor_tokens:
        app.before_request(limits.check_address)
    if per_user:
        app.extensions.setdefault(AUTHENTICATED_HOOKS, []).append(limits.check_user)
    app.register_error_handler(RateLimited, _too_many_requests)
    app.extensions["rate_limits"] = limits
    return limits


def _parse(name: str, value: str | None) -> list[RateLimitItem]:
    if value is None:
        return []
    try:
        return parse_many(value)
    except ValueError as exc:
        raise ConfigurationError(f"{name}: {exc}") from exc


def _retry_after(limiter: FixedWindowRateLimiter, limit: RateLimitItem, scope: str, key: str) -> int:
    """Whole seconds until the window ends (its full length if the storage cannot say)."""
    try:
        reset_time, _remaining = limiter.get_window_stats(limit, KEY_PREFIX, scope, key)
        return max(1, math.ceil(reset_time - time.time()))
    except StorageError as exc:
        logger.warning("could not read the rate limit window: %s", exc)
        return max(1, limit.get_expiry())


def _too_many_requests(exc: RateLimited) -> tuple[dict[str, Any], int, dict[str, str]]:
    return {"error": "too_many_requests", "message": exc.description}, 429, {"Retry-After": str(exc.retry_after)}
