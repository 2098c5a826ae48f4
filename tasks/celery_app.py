"""The one Celery app: queues, routes and the reliability settings every stage shares."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from celery import Celery
from kombu import Queue

from pipeline.device_delivery import DEVICE_COMMANDS_TASK
from pipeline.handoff import HANDOFF_TIMEOUT_TASK
from pipeline.settings import Settings
from pipeline.stages import (
    STAGE_QUEUES,
    TASK_NAMES,
    Channel,
    Stage,
    all_queues,
    deliver_task,
    delivered_channels,
    reply_queue,
)
from tasks.broker import broker_ssl, transport_for, transport_options
from tasks.runtime import StageRuntime

TASK_MODULES = [
    "tasks.asr",
    "tasks.dispatch",
    "tasks.handoff",
    "tasks.inference",
    "tasks.tts",
    "tasks.deliver",
    "tasks.deliver_telegram",
    "tasks.deliver_mqtt",
]

#: Seconds a task may run under the prefork pool, which enforces it. The threads pool (the default) cannot
#: stop a thread, so there every stage bounds itself: skills by ``SKILL_TIMEOUT_SECONDS``, HTTP calls by
#: ``HTTP_TIMEOUT_SECONDS``, Redis calls by socket timeouts, database calls by connect and statement timeouts.
TASK_TIME_LIMIT = 120
#: Seconds the inference stage may run past ``MODEL_TIMEOUT_SECONDS``: reading the transcript, sending the reply.
#: Its limit is the larger of this sum and ``TASK_TIME_LIMIT``, so a slow model is answered for, not killed.
INFERENCE_TIME_MARGIN = 30

#: Publishing gives up after about two seconds of a broker that does not answer: the edge answers 503 and a
#: stage retries later, rather than hanging.
PUBLISH_RETRY_POLICY: Mapping[str, Any] = MappingProxyType(
    {"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 1.0}
)

#: Delivery settings every stage shares (and the benchmark's bare echo task, to compare like with like).
RELIABILITY: Mapping[str, Any] = MappingProxyType(
    {
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": 5,
        "task_ignore_result": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        # At-least-once: ack after the task ran; a worker that dies leaves its message to another.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_publish_retry_policy": dict(PUBLISH_RETRY_POLICY),
    }
)


class StageCelery(Celery):
    """The Celery app, carrying what its stage tasks use: the runtime, built on first use in each process.

    Built lazily so a prefork worker builds it after forking, and the gateway, which only submits, never does.
    """

    def __init__(self, settings: Settings, runtime_factory: Callable[[StageCelery], StageRuntime]) -> None:
        super().__init__("assistant", set_as_current=True)
        self.settings = settings
        self._runtime_factory = runtime_factory
        self._runtime: StageRuntime | None = None
        self._runtime_lock = threading.Lock()

    @property
    def runtime(self) -> StageRuntime:
        runtime = self._runtime
        if runtime is None:
            with self._runtime_lock:
                if self._runtime is None:
                    self._runtime = self._runtime_factory(self)
                runtime = self._runtime
        return runtime

    @property
    def runtime_built(self) -> StageRuntime | None:
        """The runtime if this process built it already (to close it), without building it."""
        return self._runtime


def inference_time_limit(settings: Settings) -> int:
    """Seconds the inference task may run: always past the model's own timeout."""
    return max(TASK_TIME_LIMIT, math.ceil(settings.model.timeout_seconds) + INFERENCE_TIME_MARGIN)


def create_celery_app(settings: Settings, runtime_factory: Callable[[StageCelery], StageRuntime]) -> StageCelery:
    """The Celery app for ``settings``; its stages get their runtime from ``runtime_factory``."""
    app = StageCelery(settings, runtime_factory)
    routes: dict[str, dict[str, str]] = {TASK_NAMES[stage]: {"queue": str(stage)} for stage in STAGE_QUEUES}
    routes |= {deliver_task(c): {"queue": reply_queue(c)} for c in delivered_channels(settings.enabled_channels)}
    # The web channel's handoff time-outs run beside the messages they end, in the dispatch workers.
    routes[HANDOFF_TIMEOUT_TASK] = {"queue": str(Stage.DISPATCH)}
    if deliver_task(Channel.MQTT) in routes:  # device commands of replies to other channels
        routes[DEVICE_COMMANDS_TASK] = {"queue": reply_queue(Channel.MQTT)}
    broker_url = settings.broker_url or "memory://localhost/"
    inference_limit = inference_time_limit(settings)
    app.conf.update(
        broker_url=broker_url,
        broker_transport=transport_for(broker_url),
        broker_use_ssl=broker_ssl(broker_url),
        broker_transport_options=transport_options(settings.embedded_polling_interval if settings.embedded else None),
        **RELIABILITY,
        task_time_limit=TASK_TIME_LIMIT,
        task_soft_time_limit=TASK_TIME_LIMIT - 10,
        task_annotations={
            TASK_NAMES[Stage.INFERENCE]: {"time_limit": inference_limit, "soft_time_limit": inference_limit - 10}
        },
        task_queues=[Queue(name) for name in all_queues(settings.enabled_channels)],
        task_default_queue=str(Stage.DISPATCH),
        task_routes=routes,
        include=TASK_MODULES,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
    )
    # Worker threads have no "current app" of their own; shared tasks resolve to the default one.
    app.set_default()
    return app
