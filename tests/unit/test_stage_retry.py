"""A stage whose retry the broker will not take hands its message back to the broker instead of dropping it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery
from celery.exceptions import Reject

from tasks.stage import StageTask

#: Nothing listens on port 1: every publish fails at once (refused), as when Redis is down.
DEAD_BROKER = "redis://127.0.0.1:1/0"


@pytest.fixture
def stage() -> Iterator[Any]:
    app = Celery("stage-retry", broker=DEAD_BROKER, set_as_current=False)
    app.conf.update(task_publish_retry=False, broker_connection_timeout=1, broker_connection_max_retries=0)

    @app.task(bind=True, base=StageTask, name="test.stage", shared=False)
    def handle(self: Any, body: str) -> None:
        raise ConnectionError("the stage's own call failed")

    handle.push_request(id="task-1", args=("{}",), kwargs={}, retries=0, called_directly=False, is_eager=False)
    try:
        yield handle
    finally:
        handle.pop_request()
        app.close()


def test_a_retry_the_broker_refuses_requeues_the_message(stage: Any) -> None:
    with pytest.raises(Reject) as rejected:
        stage.retry(exc=ConnectionError("down"), countdown=1)
    # Celery's own retry would reject with requeue=False: the broker deletes a message it is told to drop.
    assert rejected.value.requeue is True


def test_a_dead_letter_keeps_neither_a_transcript_nor_the_names_said_in_actions() -> None:
    from tasks.stage import redacted

    body = json.dumps({"v": 1, "message_id": "m", "text": "打开前门的锁", "heard": {"text": "unlock the front door",
                       "language": "en"}, "actions": [{"type": "intent", "intent": "HassTurnOff",
                       "slots": {"name": "前门锁"}, "targets": ["lock.front_door"]}]}, ensure_ascii=False)  # fmt: skip
    kept = redacted(body)
    for said in ("打开前门的锁", "unlock the front door", "前门锁"):
        assert said not in kept
    assert "lock.front_door" in kept and "HassTurnOff" in kept
