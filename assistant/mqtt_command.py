"""``assistant mqtt``: the MQTT edge as a process of its own, until SIGTERM or Ctrl-C."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from types import FrameType

from adapters.sentry import init_sentry
from assistant.bootstrap import build_adapters, build_mqtt_edge, freeze_startup_heap
from assistant.metrics_server import serve, serving_registry
from pipeline.settings import Settings

logger = logging.getLogger(__name__)


def run_mqtt_edge(settings: Settings) -> int:
    if not settings.mqtt.url:
        print("assistant mqtt: set MQTT_URL (mqtt://user:password@host:1883)", file=sys.stderr)
        return 2
    if settings.embedded:
        # An edge of its own would submit to an in-memory broker no worker reads.
        print("assistant mqtt runs beside gateway and workers (BROKER_URL, REDIS_URL); "
              "assistant run starts the MQTT edge itself when MQTT_URL is set", file=sys.stderr)  # fmt: skip
        return 2
    init_sentry(settings, "mqtt")
    stopping = threading.Event()

    def stop(signum: int, _frame: FrameType | None) -> None:
        logger.info("signal %s: disconnecting", signum)
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    adapters = build_adapters(settings, pool_size=2)
    edge = build_mqtt_edge(settings, adapters)
    edge.start()
    if settings.metrics.port is not None:
        serve(settings.metrics.port, serving_registry(adapters.metrics.registry))
    freeze_startup_heap()
    try:
        stopping.wait()
    finally:
        # A clean disconnect: the broker keeps the session and queues requests until the edge is back.
        edge.stop()
        adapters.close()
    return 0
