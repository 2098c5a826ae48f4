"""Marks of what went out once (an MQTT reply, a device command), set after the broker took it, checked before.

In Redis for the distributed layout (every deliverer sees every mark), in memory for the embedded one.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

import redis

#: Prefix of the Redis keys (``sent:mqtt:reply:<message id>``).
KEY_PREFIX = "sent:"


class SentMarks(Protocol):
    def sent(self, key: str) -> bool:
        """True when ``key`` was marked and its mark has not expired."""
        ...

    def mark(self, key: str, ttl: int) -> None:
        """Remember ``key`` for ``ttl`` seconds."""
        ...


class MemorySentMarks:
    """``SentMarks`` for one process; expired marks are dropped as new ones come."""

    #: Marks kept before the expired ones are swept out.
    SWEEP_AT = 10_000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._deadlines: dict[str, float] = {}

    def sent(self, key: str) -> bool:
        with self._lock:
            deadline = self._deadlines.get(key)
            return deadline is not None and deadline > time.monotonic()

    def mark(self, key: str, ttl: int) -> None:
        with self._lock:
            now = time.monotonic()
            if len(self._deadlines) >= self.SWEEP_AT:
                self._deadlines = {k: d for k, d in self._deadlines.items() if d > now}
            self._deadlines[key] = now + ttl


class RedisSentMarks:
    """``SentMarks`` in Redis: one key per mark, expiring with it."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    def sent(self, key: str) -> bool:
        return bool(self._redis.exists(KEY_PREFIX + key))

    def mark(self, key: str, ttl: int) -> None:
        self._redis.set(KEY_PREFIX + key, "1", ex=ttl)
