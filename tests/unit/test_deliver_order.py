"""The web deliverer keeps a session's replies in order although several threads deliver at once."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from adapters.state import MemoryReplyStream
from pipeline.envelope import Reply, new_id
from pipeline.settings import Settings
from pipeline.turns import REPLY_ORDER_WAIT_SECONDS
from tasks.deliver import deliver_reply
from tasks.stage import NotYet, Waiting


def reply(session_id: str, seq: int) -> Reply:
    return Reply(message_id=new_id(), session_id=session_id, channel="web", text=f"第{seq}条", seq=seq)


@dataclass
class Transcript:
    """The repository's part the deliverer uses: replies stored by message id."""

    stored: dict[str, Reply] = field(default_factory=dict)

    def record_reply(self, reply: Reply) -> bool:
        return self.stored.setdefault(reply.message_id, reply) is reply


@dataclass
class FakeRuntime:
    replies: MemoryReplyStream = field(default_factory=MemoryReplyStream)
    repository: Transcript = field(default_factory=Transcript)
    settings: Settings = field(default_factory=Settings)

    @property
    def adapters(self) -> Any:
        return self


def test_a_reply_that_overtook_the_previous_one_is_requeued_until_that_one_went_out() -> None:
    runtime: Any = FakeRuntime()
    first, second = reply("s", 1), reply("s", 2)
    with pytest.raises(NotYet) as wait:
        deliver_reply(second, runtime, Waiting())
    assert 0 < wait.value.delay <= 0.5
    assert runtime.replies.read_after("s", None, 10) == []
    # Stored in the transcript already: a client reading it sees the reply, the stream keeps the order.
    assert second.message_id in runtime.repository.stored
    deliver_reply(first, runtime, Waiting())
    deliver_reply(second, runtime, Waiting(attempt=1, seconds=0.01))
    assert [r.seq for _, r in runtime.replies.read_after("s", None, 10)] == [1, 2]


def test_a_lost_earlier_reply_holds_the_next_one_only_for_a_bounded_time() -> None:
    runtime: Any = FakeRuntime()
    deliver_reply(reply("s", 1), runtime, Waiting())
    with pytest.raises(NotYet):
        deliver_reply(reply("s", 3), runtime, Waiting(attempt=5, seconds=REPLY_ORDER_WAIT_SECONDS - 0.1))
    deliver_reply(reply("s", 3), runtime, Waiting(attempt=6, seconds=REPLY_ORDER_WAIT_SECONDS))
    assert [r.seq for _, r in runtime.replies.read_after("s", None, 10)] == [1, 3]


def test_a_redelivered_reply_goes_out_once() -> None:
    runtime: Any = FakeRuntime()
    answer = reply("s", 1)
    deliver_reply(answer, runtime, Waiting())
    deliver_reply(answer, runtime, Waiting())
    assert len(runtime.replies.read_after("s", None, 10)) == 1
