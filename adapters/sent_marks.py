"""Marks of what went out once (an MQTT reply, a device command): claimed before the publish, marked sent after
the broker took it, so two attempts of one message never both publish it.

In Redis for the distributed layout (every deliverer sees every mark), in memory for the embedded one.
"""

from __future__ import annotations

import threading
import time
from enum import StrEnum
from typing import Protocol

import redis

#: Prefix of the Redis keys (``sent:mqtt:reply:<message id>``).
KEY_PREFIX = "sent:"
#: The value of a mark once the message went out; a claim holds ``pending:<token>``.
SENT = "sent"

_CLAIM = """
local value = redis.call('GET', KEYS[1])
if value == 'sent' then return 'sent' end
if value then return 'busy' end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 'claimed'
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Claim(StrEnum):
    """Answer of ``SentMarks.claim``."""

    #: Yours to publish: nobody sent it, nobody is sending it.
    CLAIMED = "claimed"
    #: It went out already.
    SENT = "sent"
    #: Another attempt is publishing it now (until its claim's lease runs out).
    BUSY = "busy"


class SentMarks(Protocol):
    def claim(self, key: str, token: str, lease_seconds: float) -> Claim:
        """Claim ``key`` for ``lease_seconds`` under ``token``, unless it was sent or another claim holds it."""
        ...

    def mark(self, key: str, ttl: int) -> None:
        """``key`` went out: remember that for ``ttl`` seconds (ends the claim)."""
        ...

    def release(self, key: str, token: str) -> None:
        """Give up ``token``'s claim of ``key`` (the publish failed), so a retry may claim it at once."""
        ...


class MemorySentMarks:
    """``SentMarks`` for one process; expired marks and claims are dropped as new ones come."""

    #: Marks kept before the expired ones are swept out.
    SWEEP_AT = 10_000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._marks: dict[str, tuple[str, float]] = {}

    def claim(self, key: str, token: str, lease_seconds: float) -> Claim:
        with self._lock:
            now = time.monotonic()
            held = self._marks.get(key)
            if held is not None and held[1] > now:
                return Claim.SENT if held[0] == SENT else Claim.BUSY
            if len(self._marks) >= self.SWEEP_AT:
                self._marks = {k: v for k, v in self._marks.items() if v[1] > now}
            self._marks[key] = (f"pending:{token}", now + lease_seconds)
            return Claim.CLAIMED

    def mark(self, key: str, ttl: int) -> None:
        with self._lock:
            self._marks[key] = (SENT, time.monotonic() + ttl)

    def release(self, key: str, token: str) -> None:
        with self._lock:
            held = self._marks.get(key)
            if held is not None and held[0] == f"pending:{token}":
                del self._marks[key]


class RedisSentMarks:
    """``SentMarks`` in Redis: one key per mark, expiring with it; a claim and its check are one script."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client
        self._claim = client.register_script(_CLAIM)
        self._release = client.register_script(_RELEASE)

    def claim(self, key: str, token: str, lease_seconds: float) -> Claim:
        result = self._claim(keys=[KEY_PREFIX + key], args=[f"pending:{token}", int(lease_seconds * 1000)])
        return Claim(result.decode() if isinstance(result, bytes) else str(result))

    def mark(self, key: str, ttl: int) -> None:
        self._redis.set(KEY_PREFIX + key, SENT, ex=ttl)

    def release(self, key: str, token: str) -> None:
        self._release(keys=[KEY_PREFIX + key], args=[f"pending:{token}"])
