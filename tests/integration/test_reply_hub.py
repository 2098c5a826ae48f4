"""Open streams and waiting requests never miss a reply: not when a stream falls behind, not while the gateway's
Redis subscription reconnects (replies announced then are read back from the streams)."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from adapters.redis_state import RedisReplyStream, connect
from adapters.state import MemoryReplyStream, ReplyStream
from ingress.replyhub import STREAM_BUFFER, ReplyHub
from pipeline.envelope import Reply, new_id

REDIS_URL = os.environ.get("TEST_REDIS_HUB_URL", "redis://127.0.0.1:6379/7")
TTL = 600
SUBSCRIBER = f"test-hub-{uuid.uuid4().hex[:8]}"


def reply(session_id: str, n: int) -> Reply:
    return Reply(message_id=new_id(), session_id=session_id, channel="web", text=f"第{n}条")


def drain(hub_listener: object, count: int, timeout: float = 10.0) -> list[Reply]:
    got: list[Reply] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        got += [r for _, r in hub_listener.next(0.5)]  # type: ignore[attr-defined]
    return got


def test_a_stream_that_fell_behind_its_buffer_reads_the_rest_back_in_order() -> None:
    stream = MemoryReplyStream()
    hub = ReplyHub(stream)
    sent = [reply("s", n) for n in range(STREAM_BUFFER + 50)]
    with hub.listen("s", None) as listener:
        assert listener.catch_up() == []
        for item in sent:  # nobody reads meanwhile: the buffer overflows
            stream.append(item, TTL)
        got = drain(listener, len(sent))
    assert [r.message_id for r in got] == [r.message_id for r in sent]


@pytest.fixture
def redis_stream() -> Iterator[tuple[ReplyStream, redis.Redis]]:
    client = connect(REDIS_URL)
    subscriber = connect(REDIS_URL, max_connections=2, name=SUBSCRIBER)
    client.flushdb()
    try:
        yield RedisReplyStream(client, subscriber), client
    finally:
        client.flushdb()
        client.close()
        subscriber.close()


@pytest.mark.servers
def test_replies_announced_while_the_subscription_reconnects_reach_streams_and_waiting_requests(
    redis_stream: tuple[ReplyStream, redis.Redis],
) -> None:
    stream, client = redis_stream
    hub = ReplyHub(stream)
    session = f"s-{uuid.uuid4().hex[:8]}"
    try:
        with hub.listen(session, None) as listener:
            first = reply(session, 0)
            with hub.expect(first.message_id) as waiter:
                assert listener.catch_up() == []
                # Cut the gateway's subscription; the replies below are announced while nobody listens.
                (ours,) = [c for c in client.client_list(_type="pubsub") if c["name"] == SUBSCRIBER]
                assert client.client_kill_filter(_id=ours["id"]) == 1
                missed = [first, *(reply(session, n) for n in range(1, 4))]
                for item in missed:
                    stream.append(item, TTL)
                got = drain(listener, len(missed))
                assert [r.message_id for r in got] == [r.message_id for r in missed]
                found = hub.wait_for_reply(waiter, 5)
                assert found is not None and found[1].message_id == first.message_id
            # And the subscription works again afterwards.
            later = reply(session, 9)
            stream.append(later, TTL)
            assert [r.message_id for r in drain(listener, 1)] == [later.message_id]
    finally:
        hub.close()


@pytest.mark.servers
def test_a_waiting_request_whose_announcement_never_came_reads_the_stored_reply(
    redis_stream: tuple[ReplyStream, redis.Redis],
) -> None:
    stream, client = redis_stream
    hub = ReplyHub(stream)
    session = f"s-{uuid.uuid4().hex[:8]}"
    answer = reply(session, 1)
    try:
        with hub.expect(answer.message_id) as waiter:
            # Stored without an announcement (as if published while the gateway was cut off unnoticed).
            client.xadd(f"replies:{session}", {"r": answer.to_json()})
            client.set(f"reply:{answer.message_id}", f"1-0|{answer.to_json()}")
            found = hub.wait_for_reply(waiter, 0.2)
        assert found is not None and found[1] == answer
    finally:
        hub.close()
