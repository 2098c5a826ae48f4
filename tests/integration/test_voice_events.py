"""One contract for ``VoiceEvents``: in memory (embedded) and Redis streams (database 1 of the local server)."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from adapters.redis_state import connect
from adapters.voice_events import MemoryVoiceEvents, RedisVoiceEvents, VoiceEvent, VoiceEvents

REDIS_URL = os.environ.get("TEST_REDIS_VOICE_URL", "redis://127.0.0.1:6379/1")
PCM = bytes(range(256)) * 64


@pytest.fixture(params=["memory", "redis"])
def events(request: pytest.FixtureRequest) -> Iterator[VoiceEvents]:
    if request.param == "memory":
        yield MemoryVoiceEvents(ttl_seconds=60)
        return
    # A client as the composition root builds it: its 2 s socket timeout must not end a longer wait.
    client = connect(REDIS_URL, binary=True)
    try:
        yield RedisVoiceEvents(client, ttl_seconds=60)
    finally:
        client.close()


def message_id() -> str:
    return uuid.uuid4().hex


def test_events_come_back_in_order_with_their_audio(events: VoiceEvents) -> None:
    mid = message_id()
    events.publish(mid, {"type": "transcript", "message_id": mid, "text": "打开客厅的灯", "language": "zh"})
    events.publish(mid, {"type": "audio_start", "sample_rate": 22050})
    events.publish(mid, {"type": "chunk", "index": 0, "text": "好的。"}, PCM)
    events.publish(mid, {"type": "audio_end", "interrupted": False})
    read = events.read(mid, None, timeout=1)
    assert [e.event["type"] for e in read] == ["transcript", "audio_start", "chunk", "audio_end"]
    assert read[0].event["text"] == "打开客厅的灯"
    assert [e.audio for e in read] == [None, None, PCM, None]
    # Reading on from a cursor gives what follows it.
    assert [e.event["type"] for e in events.read(mid, read[1].cursor, timeout=0)] == ["chunk", "audio_end"]
    assert events.read(mid, read[-1].cursor, timeout=0) == []


def test_streams_are_per_message(events: VoiceEvents) -> None:
    one, two = message_id(), message_id()
    events.publish(one, {"type": "partial", "text": "one"})
    assert events.read(two, None, timeout=0) == []
    assert [e.event["text"] for e in events.read(one, None, timeout=0)] == ["one"]


def test_a_read_waits_for_the_next_event(events: VoiceEvents) -> None:
    mid = message_id()
    events.publish(mid, {"type": "audio_start"})
    (first,) = events.read(mid, None, timeout=0)
    threading.Timer(0.3, events.publish, args=(mid, {"type": "chunk", "index": 0}, PCM)).start()
    started = time.monotonic()
    got = events.read(mid, first.cursor, timeout=5)
    assert 0.2 < time.monotonic() - started < 2
    assert [(e.event["type"], e.audio) for e in got] == [("chunk", PCM)]


def test_a_read_with_nothing_new_waits_its_timeout_only(events: VoiceEvents) -> None:
    mid = message_id()
    started = time.monotonic()
    # Longer than the Redis client's socket timeout (2 s): the wait is a loop of shorter blocking reads.
    assert events.read(mid, None, timeout=2.5) == []
    assert 2.4 < time.monotonic() - started < 3.5


def test_cancel_is_seen_per_message(events: VoiceEvents) -> None:
    one, two = message_id(), message_id()
    assert not events.cancelled(one)
    events.cancel(one)
    assert events.cancelled(one)
    assert not events.cancelled(two)


def test_many_readers_wait_at_once(events: VoiceEvents) -> None:
    mid = message_id()
    got: list[list[VoiceEvent]] = []
    readers = [threading.Thread(target=lambda: got.append(events.read(mid, None, timeout=5))) for _ in range(8)]
    for reader in readers:
        reader.start()
    time.sleep(0.2)
    events.publish(mid, {"type": "transcript", "text": "hello"})
    for reader in readers:
        reader.join(6)
    assert len(got) == 8 and all(len(r) == 1 and r[0].event["text"] == "hello" for r in got)


def test_memory_streams_expire() -> None:
    events = MemoryVoiceEvents(ttl_seconds=0.2, sweep_seconds=0.0)
    old = message_id()
    events.publish(old, {"type": "transcript", "text": "old"})
    events.cancel(old)
    time.sleep(0.3)
    events.publish(message_id(), {"type": "transcript", "text": "new"})  # a publish sweeps what expired
    assert events.read(old, None, timeout=0) == []
    assert not events.cancelled(old)


def test_redis_streams_and_cancellations_expire() -> None:
    client = connect(REDIS_URL, binary=True)
    plain = redis.Redis.from_url(REDIS_URL)
    try:
        events = RedisVoiceEvents(client, ttl_seconds=30)
        mid = message_id()
        events.publish(mid, {"type": "chunk", "index": 0}, PCM)
        events.cancel(mid)
        assert 0 < plain.ttl(f"voice:{mid}") <= 30
        assert 0 < plain.ttl(f"voice:{mid}:cancel") <= 30
    finally:
        client.close()
        plain.close()
