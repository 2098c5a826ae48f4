"""Marks, the expiring "seen once" keys, in memory and on the real Redis (DB 8), held to the same behaviour."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

from adapters.marks import Marks, MemoryMarks, RedisMarks

REDIS_DB = 8


@pytest.fixture(params=["memory", "redis"])
def marks(request: pytest.FixtureRequest) -> Iterator[Marks]:
    if request.param == "memory":
        yield MemoryMarks()
        return
    client = redis.Redis.from_url(f"redis://127.0.0.1:6379/{REDIS_DB}", decode_responses=True)
    client.flushdb()
    try:
        yield RedisMarks(client)
    finally:
        client.flushdb()
        client.close()


def test_a_mark_is_claimed_once_until_it_expires(marks: Marks) -> None:
    assert marks.remaining("a") == 0
    assert marks.claim("a", 0.3)
    assert not marks.claim("a", 0.3)
    assert 0 < marks.remaining("a") <= 0.3
    assert marks.claim("b", 10)  # another key is apart
    time.sleep(0.4)
    assert marks.remaining("a") == 0
    assert marks.claim("a", 10)


def test_a_released_mark_can_be_claimed_again(marks: Marks) -> None:
    assert marks.claim("k", 60)
    marks.release("k")
    marks.release("never-set")
    assert marks.remaining("k") == 0
    assert marks.claim("k", 60)
