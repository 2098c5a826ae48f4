"""Prometheus metrics of one process (its edges and stages), in a registry of its own (tests build many)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

#: Seconds buckets of a stage's handler and of one model call: from a cached skill's milliseconds to a slow model.
STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
#: Seconds buckets from a message's acceptance to its reply's delivery (queue waits included).
END_TO_END_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120)
#: Seconds buckets of loading a model (an ONNX file in milliseconds, whisper in seconds).
LOAD_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

#: ``assistant_messages_total`` outcomes.
ACCEPTED, DUPLICATE, REJECTED = "accepted", "duplicate", "rejected"
#: ``assistant_handoffs_total`` outcomes: a visitor asked for a person, an operator took the session or handed it back,
#: nobody took it in time, the visitor left a message after that.
HANDOFF_REQUESTED, HANDOFF_TAKEN, HANDOFF_RELEASED = "requested", "taken", "released"
HANDOFF_TIMED_OUT, HANDOFF_MESSAGE_LEFT = "timed_out", "message_left"
#: ``assistant_skill_calls_total`` outcomes.
SKILL_OK, SKILL_ERROR, SKILL_TIMEOUT = "ok", "error", "timeout"


class StageMetrics:
    """What one process counts: messages at its edges, its stage handlers, skills, models and dead letters.

    The composition root makes one per process (``Adapters.metrics``); the gateway's ``/metrics`` and a worker's
    ``METRICS_PORT`` show its registry. Under prefork workers every child writes its values to the multiprocess
    folder (prometheus-client's multiprocess mode), which the parent's server adds up.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.messages = Counter(
            "assistant_messages",
            "Messages an edge received, by channel and outcome (accepted, duplicate, rejected).",
            ["channel", "outcome"],
            registry=registry,
        )
        self.stage_seconds = Histogram(
            "assistant_stage_seconds",
            "Seconds a stage's handler took for one message (dispatch, inference, asr, tts, deliver).",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=registry,
        )
        self.end_to_end = Histogram(
            "assistant_end_to_end_seconds",
            "Seconds from an edge accepting a message to its reply being delivered, by channel.",
            ["channel"],
            buckets=END_TO_END_BUCKETS,
            registry=registry,
        )
        self.skill_calls = Counter(
            "assistant_skill_calls",
            "Skill runs, by skill and outcome (ok, error, timeout).",
            ["skill", "outcome"],
            registry=registry,
        )
        self.model_seconds = Histogram(
            "assistant_model_seconds",
            "Seconds of one inference call of a model (whisper, piper, the intent classifier, the generative one).",
            ["model"],
            buckets=STAGE_BUCKETS,
            registry=registry,
        )
        self.model_load_seconds = Histogram(
            "assistant_model_load_seconds",
            "Seconds a model took to load and warm up.",
            ["model"],
            buckets=LOAD_BUCKETS,
            registry=registry,
        )
        self.dead_letters = Counter(
            "assistant_dead_letters",
            "Messages given up on and dead-lettered, by stage.",
            ["stage"],
            registry=registry,
        )
        self.model_errors = Counter(
            "assistant_model_errors",
            "Replies the generative model failed to give (down, too slow, bad answer), by backend.",
            ["backend"],
            registry=registry,
        )

        self.handoffs = Counter(
            "assistant_handoffs",
            "Handoffs of web sessions to a person, by outcome (requested, taken, released, timed_out, message_left).",
            ["outcome"],
            registry=registry,
        )

    def count_message(self, channel: str, outcome: str) -> None:
        self.messages.labels(channel, outcome).inc()

    def count_handoff(self, outcome: str) -> None:
        self.handoffs.labels(outcome).inc()

    @contextmanager
    def model_call(self, model: str) -> Iterator[None]:
        """Time the block as one inference call of ``model`` (a call that raises counts too)."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.model_seconds.labels(model).observe(time.perf_counter() - started)

    @contextmanager
    def model_load(self, model: str) -> Iterator[None]:
        """Time the block as loading ``model``; only a load that succeeded is observed."""
        started = time.perf_counter()
        yield
        self.model_load_seconds.labels(model).observe(time.perf_counter() - started)


#: The ``model`` label of the intent classifier.
INTENT_MODEL = "intent"


class _TimedClassifier:
    """An intent classifier whose every ``classify`` is observed in ``assistant_model_seconds{model="intent"}``."""

    def __init__(self, classifier: Any, metrics: StageMetrics) -> None:
        self._classifier = classifier
        self._metrics = metrics
        self.labels: tuple[str, ...] = tuple(classifier.labels)

    def classify(self, text: str) -> Any:
        with self._metrics.model_call(INTENT_MODEL):
            return self._classifier.classify(text)


def timed_classifier_loader(load: Callable[[Path], Any], metrics: StageMetrics) -> Callable[[Path], Any]:
    """``load`` (an intent classifier's, from a folder), timed as the intent model's load, its result timed too."""

    def timed(folder: Path) -> _TimedClassifier:
        with metrics.model_load(INTENT_MODEL):
            classifier = load(folder)
        return _TimedClassifier(classifier, metrics)

    return timed
