"""The message a thread works on: set for a block, restored after it, apart per thread."""

from __future__ import annotations

import threading

from pipeline.message_context import MessageContext, current_message, stage_of_queue, working_on


def test_a_block_sees_its_message_and_the_previous_one_comes_back() -> None:
    outer = MessageContext("m1", "s1", "web", "dispatch", "assistant.dispatch")
    inner = MessageContext("m2", "s1", "web", "deliver", "assistant.deliver.web")
    assert current_message() is None
    with working_on(outer):
        assert current_message() == outer
        with working_on(inner):
            assert current_message() == inner
        assert current_message() == outer
    assert current_message() is None


def test_each_thread_has_its_own() -> None:
    seen: list[MessageContext | None] = []
    with working_on(MessageContext("m1", "s1", "web", "dispatch")):
        thread = threading.Thread(target=lambda: seen.append(current_message()))
        thread.start()
        thread.join()
    assert seen == [None]


def test_reply_queues_are_the_deliver_stage() -> None:
    assert [stage_of_queue(q) for q in ("dispatch", "asr", "reply.web", "reply.mqtt")] == [
        "dispatch", "asr", "deliver", "deliver"]  # fmt: skip
