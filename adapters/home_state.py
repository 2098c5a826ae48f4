"""Remembered entity states: in memory (embedded) and in Redis (one hash per entity, no expiry)."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import redis

from pipeline.home_state import EntityState, HomeState

__all__ = ["EntityState", "HomeState", "MemoryHomeState", "RedisHomeState"]

logger = logging.getLogger(__name__)

#: Prefix of the Redis hashes (``home:state:light.bedroom_lamp``).
KEY_PREFIX = "home:state:"


class MemoryHomeState:
    """``HomeState`` for one process."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._states: dict[str, EntityState] = {}
        self._lock = threading.Lock()

    def set(self, entity_id: str, state: str, attributes: dict[str, Any] | None = None) -> None:
        remembered = EntityState(entity_id, str(state), dict(attributes or {}), self._clock())
        with self._lock:
            self._states[entity_id] = remembered

    def get(self, entity_id: str) -> EntityState | None:
        with self._lock:
            return self._states.get(entity_id)


class RedisHomeState:
    """``HomeState`` shared by every process: one hash per entity with ``state``, ``attributes`` (JSON) and
    ``updated_at``. States never expire: the last one reported stays true until the next."""

    def __init__(self, client: redis.Redis, prefix: str = KEY_PREFIX, clock: Callable[[], float] = time.time) -> None:
        self._redis = client
        self._prefix = prefix
        self._clock = clock

    def set(self, entity_id: str, state: str, attributes: dict[str, Any] | None = None) -> None:
        mapping: dict[Any, Any] = {
            "state": str(state),
            # default=str: an attribute JSON cannot hold (a date) is kept as its text rather than failing the edge.
            "attributes": json.dumps(attributes or {}, ensure_ascii=False, default=str),
            "updated_at": repr(self._clock()),
        }
        # One HSET: a reader never sees a new state with the old attributes.
        self._redis.hset(self._prefix + entity_id, mapping=mapping)

    def get(self, entity_id: str) -> EntityState | None:
        raw: dict[Any, Any] = self._redis.hgetall(self._prefix + entity_id)
        if not raw:
            return None
        values = {_text(k): _text(v) for k, v in raw.items()}
        try:
            attributes = json.loads(values.get("attributes") or "{}")
            updated_at = float(values.get("updated_at") or 0.0)
        except ValueError:
            logger.warning("remembered state of %s is unreadable; ignored", entity_id)
            return None
        if not isinstance(attributes, dict):
            attributes = {}
        return EntityState(entity_id, values.get("state", ""), attributes, updated_at)


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
