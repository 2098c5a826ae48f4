"""The deliverer's once-only rule: a message goes out once per key; an attempt that finds another publishing it
waits; a failed publish leaves the key free for the retry."""

from __future__ import annotations

import pytest

from adapters.marks import MemoryMarks
from tasks.deliver_mqtt import publish_once
from tasks.stage import NotYet


class Broker:
    """Counts publishes; fails while ``down``."""

    def __init__(self) -> None:
        self.published = 0
        self.down = False

    def publish(self) -> None:
        if self.down:
            raise ConnectionError("broker down")
        self.published += 1


def test_a_message_goes_out_once_however_often_it_is_delivered() -> None:
    marks, broker = MemoryMarks(), Broker()
    assert publish_once(marks, "mqtt:reply:m1", 60, broker.publish) is True
    assert publish_once(marks, "mqtt:reply:m1", 60, broker.publish) is False
    assert publish_once(marks, "mqtt:reply:m2", 60, broker.publish) is True
    assert broker.published == 2


def test_an_attempt_that_finds_another_publishing_waits() -> None:
    marks, broker = MemoryMarks(), Broker()
    seen: list[bool] = []

    def slow_publish() -> None:
        # While this attempt publishes, a second attempt of the same message comes.
        with pytest.raises(NotYet):
            publish_once(marks, "mqtt:reply:m1", 60, broker.publish)
        broker.publish()
        seen.append(True)

    assert publish_once(marks, "mqtt:reply:m1", 60, slow_publish) is True
    assert seen == [True] and broker.published == 1
    # Once the first is done, the second finds it sent.
    assert publish_once(marks, "mqtt:reply:m1", 60, broker.publish) is False


def test_a_failed_publish_leaves_it_to_the_retry() -> None:
    marks, broker = MemoryMarks(), Broker()
    broker.down = True
    with pytest.raises(ConnectionError):
        publish_once(marks, "mqtt:command:m1:0:light.lamp", 60, broker.publish)
    broker.down = False
    assert publish_once(marks, "mqtt:command:m1:0:light.lamp", 60, broker.publish) is True
    assert broker.published == 1
