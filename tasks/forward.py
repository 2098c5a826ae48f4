"""How a stage hands a message to the next queue: by task name, never by calling the next stage."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from celery import Celery, Task

from pipeline.envelope import Envelope, Reply
from pipeline.stages import TASK_NAMES, Stage, deliver_task, reply_queue


class Forwarder:
    """Sends envelopes to stage queues and replies to their channel's reply queue."""

    def __init__(self, app: Celery) -> None:
        self._app = app

    def to_stage(self, stage: Stage, envelope: Envelope) -> None:
        self._app.send_task(
            TASK_NAMES[stage], args=[envelope.to_json()], queue=str(stage), **_shown_as(envelope.message_id)
        )

    def reply(self, reply: Reply) -> None:
        self._app.send_task(
            deliver_task(reply.channel),
            args=[reply.to_json()],
            queue=reply_queue(reply.channel),
            **_shown_as(reply.message_id),
        )


def _shown_as(message_id: str) -> dict[str, str]:
    """How Flower and worker logs show a task's arguments: the message id, not what the user wrote.

    It also spares Celery a ``saferepr`` of the whole envelope on every send.
    """
    return {"argsrepr": f"(message {message_id})", "kwargsrepr": "{}"}


def too_many_deliveries(task: Task, runtime: Any, message_id: str | None, body: str) -> bool:
    """Count a redelivery; past the limit, move the message to the dead-letter table and say so.

    A message that keeps killing its worker is redelivered forever otherwise. First deliveries
    are not counted: the broker marks restored messages ``redelivered``, so the common path
    costs no round trip.
    """
    delivery_info = task.request.delivery_info or {}
    if not delivery_info.get("redelivered"):
        return False
    settings = runtime.settings
    key = f"{task.name}:{message_id or task.request.id}"
    deliveries = 1 + runtime.adapters.coordination.count_delivery(key, ttl=24 * 3600)
    if deliveries <= settings.max_deliveries:
        return False
    queue = delivery_info.get("routing_key", "")
    runtime.adapters.repository.dead_letter(
        task.name, queue, message_id, body, f"delivered {deliveries} times", deliveries
    )
    return True


def timed(stage: str, started: float) -> Callable[[Envelope], Envelope]:
    """Append the stage's elapsed milliseconds to an envelope."""
    return lambda envelope: envelope.with_timing(stage, (time.perf_counter() - started) * 1000)
