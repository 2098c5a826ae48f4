"""Edge cases of the in-process stores; the contract shared with Redis is in tests/integration/test_redis_state.py."""

from __future__ import annotations

import threading

import pytest

from adapters.state import MemoryCoordination, MemoryReplyStream, Turn, cursor_key, valid_cursor
from pipeline.envelope import Reply, new_id


def reply(session_id: str, text: str) -> Reply:
    return Reply(message_id=new_id(), session_id=session_id, channel="web", text=text)


@pytest.mark.parametrize(
    ("cursor", "key"),
    [(None, (0, 0)), ("", (0, 0)), ("1700000000000-3", (1700000000000, 3)), ("17", (17, 0)), ("x-1", (0, 0))],
)
def test_cursor_key_orders_cursors(cursor: str | None, key: tuple[int, int]) -> None:
    assert cursor_key(cursor) == key


@pytest.mark.parametrize(
    ("cursor", "valid"),
    [("1700000000000-0", True), ("1700000000000", True), ("0-0", True), ("-1", False), ("1-", False),
     ("abc", False), ("1-x", False), ("", False), ("1-2-3", False)],
)  # fmt: skip
def test_valid_cursor(cursor: str, valid: bool) -> None:
    assert valid_cursor(cursor) is valid


def test_listeners_run_in_the_appending_thread_before_append_returns() -> None:
    stream = MemoryReplyStream()
    heard: list[tuple[str, str, threading.Thread]] = []
    subscription = stream.subscribe(
        lambda cursor, r: heard.append((cursor, r.text, threading.current_thread())), lambda: None
    )
    cursor = stream.append(reply("s", "你好"), ttl=60)
    assert heard == [(cursor, "你好", threading.current_thread())]
    subscription.close()
    subscription.close()  # closing twice is harmless
    stream.append(reply("s", "再见"), ttl=60)
    assert len(heard) == 1


def test_each_session_keeps_its_newest_replies_only() -> None:
    stream = MemoryReplyStream(max_per_session=3)
    sent = [reply("s", str(i)) for i in range(5)]
    cursors = [stream.append(r, ttl=60) for r in sent]
    assert [r.text for _, r in stream.read_after("s", None, 100)] == ["2", "3", "4"]
    # Dedup still remembers the trimmed ones: a redelivery of an old reply is not appended again.
    assert stream.append(sent[0], ttl=60) is None
    assert stream.reply_for(sent[0].message_id) == (cursors[0], sent[0])


def test_concurrent_appends_get_unique_increasing_cursors() -> None:
    stream = MemoryReplyStream()
    threads = [
        threading.Thread(target=lambda n=n: [stream.append(reply(f"s{n % 2}", f"{n}-{i}"), 60) for i in range(100)])
        for n in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = stream.read_after("s0", None, 1000) + stream.read_after("s1", None, 1000)
    assert len(everything) == 400
    assert len({cursor for cursor, _ in everything}) == 400
    for session_id in ("s0", "s1"):
        keys = [cursor_key(c) for c, _ in stream.read_after(session_id, None, 1000)]
        assert keys == sorted(keys)


def test_a_lock_with_no_time_left_is_free() -> None:
    coordination = MemoryCoordination()
    assert coordination.acquire_turn("s", 1, "lost", 0, False).turn is Turn.GO
    assert coordination.acquire_turn("s", 1, "next", 60_000, False).turn is Turn.GO
