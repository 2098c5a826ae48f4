"""``assistant_queue_depth{queue}``: messages waiting in each Celery queue, read from the broker at scrape time."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

#: Seconds a scrape waits for the broker: a slow or absent broker must not hold Prometheus' scrape for long.
SCRAPE_TIMEOUT_SECONDS = 1.0
#: Kombu's Redis transport keeps a queue's messages of priority ``p > 0`` in ``<queue>\x06\x16<p>``.
KOMBU_PRIORITY_SEPARATOR = "\x06\x16"
KOMBU_PRIORITY_STEPS = (0, 3, 6, 9)

#: Reads the depth of each named queue; raises when the broker does not answer.
DepthReader = Callable[[Sequence[str]], Mapping[str, int]]


class QueueDepthCollector(Collector):
    """A gauge computed on each collect; a broker that does not answer leaves the gauge out (and logs why)."""

    def __init__(self, queues: Iterable[str], read: DepthReader) -> None:
        self._queues = tuple(queues)
        self._read = read

    def collect(self) -> Iterable[GaugeMetricFamily]:
        gauge = GaugeMetricFamily("assistant_queue_depth", "Messages waiting in a stage's queue.", labels=["queue"])
        try:
            depths = self._read(self._queues)
        except Exception as exc:
            logger.warning("queue depths not read: %s", type(exc).__name__)
            return []
        for queue in self._queues:
            gauge.add_metric([queue], float(depths.get(queue, 0)))
        return [gauge]

    def describe(self) -> Iterable[GaugeMetricFamily]:
        # Without it, registering would call ``collect`` (and the broker) once.
        return [GaugeMetricFamily("assistant_queue_depth", "Messages waiting in a stage's queue.", labels=["queue"])]


def priority_lists(queue: str) -> list[str]:
    """The Redis lists kombu keeps ``queue``'s messages in: the queue's own and its priority sub-lists."""
    return [queue if step == 0 else f"{queue}{KOMBU_PRIORITY_SEPARATOR}{step}" for step in KOMBU_PRIORITY_STEPS]


class RedisQueueDepths:
    """LLEN of each queue's lists, in one round trip, on a client of its own with short timeouts."""

    def __init__(self, broker_url: str) -> None:
        import redis

        self._client: Any = redis.Redis.from_url(
            broker_url,
            socket_timeout=SCRAPE_TIMEOUT_SECONDS,
            socket_connect_timeout=SCRAPE_TIMEOUT_SECONDS,
            max_connections=2,
            client_name="assistant-metrics",
        )

    def __call__(self, queues: Sequence[str]) -> dict[str, int]:
        lists = {queue: priority_lists(queue) for queue in queues}
        pipe = self._client.pipeline(transaction=False)
        for names in lists.values():
            for name in names:
                pipe.llen(name)
        lengths = iter(pipe.execute())
        return {queue: sum(next(lengths) for _ in names) for queue, names in lists.items()}

    def close(self) -> None:
        self._client.close()


def memory_queue_depths(queues: Sequence[str]) -> dict[str, int]:
    """The in-memory transport's queue sizes (embedded mode: one broker per process)."""
    from kombu.transport.memory import Channel

    known: Mapping[str, Any] = Channel.queues
    return {queue: known[queue].qsize() if queue in known else 0 for queue in queues}
