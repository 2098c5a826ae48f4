"""The web deliverer keeps a session's replies in order although several threads deliver at once."""

from __future__ import annotations

import threading
import time

import pytest

from adapters.state import MemoryReplyStream
from pipeline.envelope import Reply, new_id
from tasks import deliver


def reply(session_id: str, seq: int) -> Reply:
    return Reply(message_id=new_id(), session_id=session_id, channel="web", text=f"第{seq}条", seq=seq)


def test_a_reply_that_overtook_the_previous_one_waits_for_it() -> None:
    stream = MemoryReplyStream()
    first, second = reply("s", 1), reply("s", 2)
    overtaking = threading.Thread(target=deliver.append_in_order, args=(stream, second, 60))
    overtaking.start()
    time.sleep(0.05)
    assert stream.read_after("s", None, 10) == []
    deliver.append_in_order(stream, first, 60)
    overtaking.join(timeout=5)
    assert [r.seq for _, r in stream.read_after("s", None, 10)] == [1, 2]


def test_a_lost_earlier_reply_holds_the_next_one_only_for_a_bounded_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deliver, "ORDER_WAIT_SECONDS", 0.05)
    stream = MemoryReplyStream()
    deliver.append_in_order(stream, reply("s", 1), 60)
    started = time.monotonic()
    assert deliver.append_in_order(stream, reply("s", 3), 60)
    assert 0.05 <= time.monotonic() - started < 2
    assert [r.seq for _, r in stream.read_after("s", None, 10)] == [1, 3]
