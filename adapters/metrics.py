"""Prometheus metrics the stages count in this process; the gateway's ``/metrics`` shows them when it shares it."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class StageMetrics:
    """Counters of the stage workers of one process, in a registry of their own (tests build many processes' worth).

    The composition root makes one per process. In embedded mode the gateway shares it, so ``/metrics`` shows what
    the in-process stages counted; a distributed worker keeps its own (to be exposed by the worker itself).
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.model_errors = Counter(
            "assistant_model_errors",
            "Replies the generative model failed to give (down, too slow, bad answer), by backend.",
            ["backend"],
            registry=self.registry,
        )
