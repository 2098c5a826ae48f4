"""Serves a worker's (or the MQTT edge's) Prometheus metrics on ``METRICS_PORT``; multiprocess mode under prefork."""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.settings import Settings
from pipeline.stages import all_queues

if TYPE_CHECKING:
    from adapters.metrics import StageMetrics
    from adapters.queue_depth import QueueDepthCollector

logger = logging.getLogger(__name__)

#: prometheus-client reads it when it is first imported: every process of a prefork worker then writes its values
#: to files in that folder, which the parent's server adds up.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare_multiprocess(pool: str) -> Path | None:
    """Under the prefork pool, before prometheus-client is imported: the folder the worker's processes share.

    ``PROMETHEUS_MULTIPROC_DIR`` when the environment names one (emptied: files of an earlier run would be counted
    again), else a temporary folder of this worker, removed when it exits. None for the threads pool, whose one
    process keeps plain in-memory values.
    """
    if pool != "prefork":
        return None
    if "prometheus_client" in sys.modules:
        logger.warning("prometheus_client was imported before %s was set; prefork children's metrics are lost",
                       MULTIPROC_ENV)  # fmt: skip
    named = os.environ.get(MULTIPROC_ENV, "").strip()
    if named:
        folder = Path(named)
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.db"):
            old.unlink(missing_ok=True)
        return folder
    folder = Path(tempfile.mkdtemp(prefix="assistant-metrics-"))
    os.environ[MULTIPROC_ENV] = str(folder)
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def multiprocess_dir() -> str | None:
    """The multiprocess folder of this process's worker, None when its metrics are plain in-memory values."""
    return os.environ.get(MULTIPROC_ENV) or None


def serving_registry(process: Any, extra: Iterable[Any] = ()) -> Any:
    """What a worker's ``/metrics`` shows: this process's registry (or, in multiprocess mode, every process's
    files added up), its process figures, and ``extra`` collectors (queue depths)."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector
    from prometheus_client.process_collector import ProcessCollector

    registry = CollectorRegistry()
    folder = multiprocess_dir()
    if folder is not None:
        MultiProcessCollector(registry, path=folder)
    else:
        registry.register(process)
        ProcessCollector(registry=registry)
    for collector in extra:
        registry.register(collector)
    return registry


def serve(port: int, registry: Any, host: str = "0.0.0.0") -> Any:
    """Start the metrics HTTP server in a daemon thread; returns the server (``shutdown()`` stops it)."""
    from prometheus_client import start_http_server

    server, _thread = start_http_server(port, addr=host, registry=registry)
    logger.info("metrics served on %s:%d/metrics", host, port)
    return server


def mark_child_dead(pid: int) -> None:
    """A prefork child exits: its live gauges stop counting (counters and histograms stay in the sum)."""
    if multiprocess_dir() is None:
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)


def queue_depths(settings: Settings) -> QueueDepthCollector | None:
    """``assistant_queue_depth`` of every queue of ``settings``: from Redis, or from this process's in-memory
    broker when embedded; None for another broker (RabbitMQ shows its queues in its own exporter)."""
    from adapters.queue_depth import QueueDepthCollector, RedisQueueDepths, memory_queue_depths

    queues = all_queues(settings.enabled_channels)
    if settings.embedded:
        return QueueDepthCollector(queues, memory_queue_depths)
    if settings.broker_url and settings.broker_url.startswith(("redis://", "rediss://")):
        return QueueDepthCollector(queues, RedisQueueDepths(settings.broker_url))
    return None


def serve_worker_metrics(settings: Settings, process: StageMetrics) -> Any:
    """A distributed worker's ``METRICS_PORT`` server (None when the port is not set)."""
    port = settings.metrics.port
    if port is None:
        return None
    depths = queue_depths(settings)
    return serve(port, serving_registry(process.registry, [depths] if depths is not None else []))
