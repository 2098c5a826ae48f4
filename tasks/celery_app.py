"""The one Celery app: queues, routes and the reliability settings every stage shares."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from celery import Celery
from celery.signals import worker_ready
from kombu import Queue

from pipeline.settings import Settings
from pipeline.stages import TASK_NAMES, Stage, all_queues, deliver_task, reply_queue
from tasks.broker import transport_for
from tasks.runtime import publish_catalog_on_start

TASK_MODULES = ["tasks.dispatch", "tasks.inference", "tasks.deliver"]

#: Seconds a task may run; kept well below the broker's visibility timeout so a slow task is
#: never redelivered to a second worker while the first still works on it.
TASK_TIME_LIMIT = 120
#: Seconds before the Redis broker hands a message whose worker died (killed, out of memory) to another.
#: Above a dispatch that waits behind one slow message of its session (two turn locks, then its own skill)
#: and above the longest retry countdown (30 s). A message that waits longer, behind several slow ones, may
#: be handed to a second worker too: whichever copy gets the turn handles it, the other finds it done.
VISIBILITY_TIMEOUT = 300


#: Delivery settings every stage shares (and the benchmark's bare echo task, to compare like with like).
RELIABILITY: Mapping[str, Any] = MappingProxyType(
    {
        "broker_connection_retry_on_startup": True,
        "task_ignore_result": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        # At-least-once: ack after the task ran; a worker that dies leaves its message to another.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
    }
)


def create_celery_app(settings: Settings, adapters: Any = None) -> Celery:
    """The Celery app for ``settings``; ``adapters`` are shared in-process (embedded mode) when given."""
    app = Celery("assistant", set_as_current=True)
    queues = all_queues(settings.enabled_channels)
    routes: dict[str, dict[str, str]] = {name: {"queue": str(stage)} for stage, name in TASK_NAMES.items()}
    routes |= {deliver_task(c): {"queue": reply_queue(c)} for c in settings.enabled_channels}
    transport_options: dict[str, Any] = {
        "visibility_timeout": VISIBILITY_TIMEOUT,
        # Look for messages of dead workers every 10 s rather than every 10th time (100 s): a cheap query.
        "unacked_restore_interval": 10,
        "unacked_restore_throttle": 1,
    }
    if settings.embedded:
        # The in-memory transport polls; its interval is the latency of every in-process hop.
        transport_options["polling_interval"] = settings.embedded_polling_interval
    broker_url = settings.broker_url or "memory://localhost/"
    app.conf.update(
        broker_url=broker_url,
        broker_transport=transport_for(broker_url),
        broker_transport_options=transport_options,
        **RELIABILITY,
        task_time_limit=TASK_TIME_LIMIT,
        task_soft_time_limit=TASK_TIME_LIMIT - 10,
        task_queues=[Queue(name) for name in queues],
        task_default_queue=str(Stage.DISPATCH),
        task_routes=routes,
        include=TASK_MODULES,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        # Settings and, in embedded mode, the shared adapters ride on the app, not in module globals.
        assistant_settings=settings,
        assistant_adapters=adapters,
    )
    # dispatch_uid: many apps (tests) share one signal, the receiver is connected once.
    worker_ready.connect(publish_catalog_on_start, dispatch_uid="assistant.publish_catalog", weak=False)
    # Worker threads have no "current app" of their own; shared tasks resolve to the default one.
    app.set_default()
    return app
