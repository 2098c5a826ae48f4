"""Marks: keys that expire, for "seen once" checks at the edges (update ids, sent replies, per-chat pacing).

Redis in the distributed layout (``SET NX PX``, so several gateways and deliverers agree), a dictionary in
embedded mode.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

import redis

#: Every mark's Redis key starts with this.
PREFIX = "mark:"


class Marks(Protocol):
    def claim(self, key: str, ttl_seconds: float) -> bool:
        """Set ``key`` for ``ttl_seconds`` unless it is set; True when this call set it."""
        ...

    def remaining(self, key: str) -> float:
        """Seconds until ``key`` expires; 0 when it is not set."""
        ...

    def release(self, key: str) -> None:
        """Forget ``key`` (nothing happens when it is not set)."""
        ...


class MemoryMarks:
    """``Marks`` in this process (embedded mode)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._deadlines: dict[str, float] = {}
        self._next_sweep = 0.0

    def claim(self, key: str, ttl_seconds: float) -> bool:
        now = time.monotonic()
        with self._lock:
            self._sweep(now)
            if self._deadlines.get(key, 0.0) > now:
                return False
            self._deadlines[key] = now + ttl_seconds
            return True

    def remaining(self, key: str) -> float:
        with self._lock:
            return max(0.0, self._deadlines.get(key, 0.0) - time.monotonic())

    def release(self, key: str) -> None:
        with self._lock:
            self._deadlines.pop(key, None)

    def _sweep(self, now: float) -> None:
        # Now and then, not on every call: a long-running assistant must not keep every update id it saw.
        if now < self._next_sweep:
            return
        self._next_sweep = now + 60.0
        for key in [k for k, deadline in self._deadlines.items() if deadline <= now]:
            del self._deadlines[key]


class RedisMarks:
    """``Marks`` on Redis, one key each, prefixed ``mark:``."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    def claim(self, key: str, ttl_seconds: float) -> bool:
        return bool(self._redis.set(PREFIX + key, "1", nx=True, px=max(1, int(ttl_seconds * 1000))))

    def remaining(self, key: str) -> float:
        ms = int(self._redis.pttl(PREFIX + key))
        return max(0.0, ms / 1000) if ms > 0 else 0.0

    def release(self, key: str) -> None:
        self._redis.delete(PREFIX + key)
