"""Prometheus metrics of the HTTP edge, in a registry of the app's own (tests build many apps)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.process_collector import ProcessCollector


class GatewayMetrics:
    """Counters and histograms that ``/metrics`` exposes."""

    def __init__(self, process: CollectorRegistry) -> None:
        """``process``: the registry of this process's metrics (``StageMetrics``), shown alongside: the messages
        the edges counted and, when the stages run here too (embedded mode), theirs."""
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.registry.register(process)
        self.reply_wait = Histogram(
            "assistant_reply_wait_seconds",
            "Time from accepting a message to its reply reaching the waiting request.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.reply_timeouts = Counter(
            "assistant_reply_wait_timeouts_total",
            "Requests whose reply did not come within their wait.",
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
