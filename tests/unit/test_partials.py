"""Partial text of replies being generated: announced by the in-process reply stream, fanned out by the reply hub to
the event streams that take it, never stored, never in the way of replies."""

from __future__ import annotations

import threading
import time

from adapters.state import MemoryReplyStream, Partial
from ingress.replyhub import STREAM_BUFFER, ReplyHub
from pipeline.envelope import Reply


def reply(session_id: str, message_id: str, text: str, seq: int) -> Reply:
    return Reply(message_id=message_id, session_id=session_id, channel="web", text=text, seq=seq)


def test_the_stream_announces_partials_to_subscribers_and_keeps_none() -> None:
    stream = MemoryReplyStream()
    seen: list[Partial] = []
    replies_seen: list[str] = []
    subscription = stream.subscribe(lambda cursor, r: replies_seen.append(r.text), lambda: None, seen.append)
    without = stream.subscribe(lambda cursor, r: None, lambda: None)  # replies only: partials never reach it
    stream.publish_partial(Partial("s1", "m1", 0, "你好"))
    stream.publish_partial(Partial("s1", "m1", 1, "，世界"))
    assert seen == [Partial("s1", "m1", 0, "你好"), Partial("s1", "m1", 1, "，世界")]
    assert stream.read_after("s1", None, 10) == [] and stream.reply_for("m1") is None
    subscription.close()
    without.close()
    stream.publish_partial(Partial("s1", "m1", 2, "！"))
    assert len(seen) == 2


def test_a_partial_listener_gets_partials_and_replies_in_the_order_they_came() -> None:
    stream = MemoryReplyStream()
    hub = ReplyHub(stream)
    with (
        hub.listen("s1", None, partials=True) as streaming,
        hub.listen("s1", None) as long_poll,
        hub.listen("s2", None, partials=True) as other_session,
    ):
        stream.publish_partial(Partial("s1", "m1", 0, "It is "))
        stream.publish_partial(Partial("s1", "m1", 1, "sunny."))
        stream.append(reply("s1", "m1", "It is sunny.", 1), ttl=60)
        got: list[object] = []
        while len(got) < 3:
            events = streaming.events(1.0)
            assert events, got
            got += events
        assert got[:2] == [Partial("s1", "m1", 0, "It is "), Partial("s1", "m1", 1, "sunny.")]
        cursor, final = got[2]  # type: ignore[misc]
        assert final.text == "It is sunny." and cursor
        # Long-poll and other sessions see the reply or nothing: never a partial.
        assert [r.text for _, r in long_poll.next(1.0)] == ["It is sunny."]
        assert other_session.events(0.05) == []
    hub.close()


def test_a_reader_that_does_not_read_costs_partials_never_replies_nor_the_announcer() -> None:
    stream = MemoryReplyStream()
    hub = ReplyHub(stream)
    with hub.listen("s1", None, partials=True) as slow:
        started = time.perf_counter()
        for index in range(STREAM_BUFFER * 3):
            stream.publish_partial(Partial("s1", "m1", index, "x"))
        stream.append(reply("s1", "m1", "x" * STREAM_BUFFER * 3, 1), ttl=60)
        assert time.perf_counter() - started < 1.0  # the announcing thread never waited for the reader
        events: list[object] = []
        while batch := slow.events(0.2):
            events += batch
        # The reply did not fit: it is read back from the stream (first, as the gap is noticed), and the queued
        # partials follow; the event stream drops those of a message it has the reply of.
        replies = [e for e in events if isinstance(e, tuple)]
        assert [r.text for _, r in replies] == ["x" * STREAM_BUFFER * 3]
        partials = [e for e in events if isinstance(e, Partial)]
        assert len(partials) == STREAM_BUFFER  # the first that fitted; the overflow was dropped
        assert [e.index for e in partials] == list(range(len(partials)))
    hub.close()


def test_partials_from_many_threads_reach_each_listener_without_blocking() -> None:
    stream = MemoryReplyStream()
    hub = ReplyHub(stream)
    with hub.listen("s1", None, partials=True) as listener:

        def announce(message: str) -> None:
            for index in range(20):
                stream.publish_partial(Partial("s1", message, index, f"{message}:{index} "))

        threads = [threading.Thread(target=announce, args=(f"m{n}",)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(5)
        got: list[Partial] = []
        while len(got) < 80:
            batch = listener.events(1.0)
            assert batch, len(got)
            got += [e for e in batch if isinstance(e, Partial)]
        for n in range(4):
            # Each message's pieces keep their order, whatever the interleaving between messages.
            assert [p.index for p in got if p.message_id == f"m{n}"] == list(range(20))
    hub.close()
