"""The adapters a process holds, as one value the composition root builds and hands down."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from adapters.blobs import BlobStore
from adapters.db import Repository
from adapters.handoffs import HandoffStore, MemoryHandoffs
from adapters.home_state import HomeState, MemoryHomeState
from adapters.marks import Marks, MemoryMarks
from adapters.metrics import StageMetrics
from adapters.mqtt_publisher import MqttPublisher
from adapters.open_meteo import OpenMeteo
from adapters.revocation import Revocations
from adapters.sites import SiteRepository
from adapters.speech import Recognizer, Synthesizer
from adapters.state import Coordination, ReplyStream
from adapters.telegram import TelegramBot
from adapters.tickets import MemoryStreamTickets, StreamTickets
from adapters.voice_events import VoiceEvents
from pipeline.devices import DevicesConfig
from pipeline.settings import Settings

logger = logging.getLogger(__name__)

E = TypeVar("E")


class _Once(Generic[E]):
    """A value built on first use, once, however many threads ask at the same time."""

    def __init__(self, build: Callable[[], E]) -> None:
        self._build = build
        self._value: E | None = None
        self._lock = threading.Lock()

    def get(self) -> E:
        value = self._value
        if value is None:
            with self._lock:
                if self._value is None:
                    self._value = self._build()
                value = self._value
        return value

    @property
    def built(self) -> bool:
        return self._value is not None


class SpeechEngines:
    """The speech recognizer and synthesizer of this process, each built once, on first use, from the factories
    the composition root gives: a worker that never sees audio never loads a model.

    ``recognizer`` is called with the number of threads that may transcribe at once (``share_recognizer``): one
    model serves them all, with that many workers inside it.
    """

    def __init__(
        self,
        recognizer: Callable[[int], Recognizer],
        synthesizer: Callable[[], Synthesizer],
        metrics: StageMetrics | None = None,
    ) -> None:
        """``metrics``: where ``warm_up`` records each engine's load time (``assistant_model_load_seconds``)."""
        self._metrics = metrics
        self._recognizer_workers = 1
        self._recognizer: _Once[Recognizer] = _Once(lambda: recognizer(self._recognizer_workers))
        self._synthesizer: _Once[Synthesizer] = _Once(synthesizer)

    def share_recognizer(self, threads: int) -> None:
        """Let ``threads`` threads of this process transcribe at the same time; before the recognizer is built."""
        if self._recognizer.built:
            logger.warning("the speech recognizer is loaded already; it keeps its %d workers", self._recognizer_workers)
            return
        self._recognizer_workers = max(1, threads)

    def recognizer(self) -> Recognizer:
        return self._recognizer.get()

    def synthesizer(self) -> Synthesizer:
        return self._synthesizer.get()

    def warm_up(self, recognizer: bool = True, synthesizer: bool = True) -> None:
        """Build the engines asked for and run each once (a worker does this before its first message)."""
        if recognizer:
            with self._load_timed("whisper"):
                self.recognizer().warm_up()
        if synthesizer:
            with self._load_timed("piper"):
                self.synthesizer().warm_up()

    def _load_timed(self, model: str) -> AbstractContextManager[None]:
        return nullcontext() if self._metrics is None else self._metrics.model_load(model)


@dataclass
class Adapters:
    """The outside world as the stages and edges see it."""

    settings: Settings
    coordination: Coordination
    replies: ReplyStream
    repository: Repository
    weather: OpenMeteo
    #: POSTs JSON to a URL with the configured timeout; used by webhook skills.
    post_json: Callable[[str, dict[str, Any]], Any]
    #: Revoked tokens (Redis, or a SQLite file in the data folder when embedded).
    revocations: Revocations
    #: Audio by key, with an expiry (Redis, or a folder in the data folder when embedded).
    blobs: BlobStore
    #: Per-message transcript and speech events for the WebSocket edge (Redis streams, or memory when embedded).
    voice_events: VoiceEvents
    #: The speech models, loaded on first use.
    speech: SpeechEngines
    #: The websites that carry the chat widget (the ``sites`` table, on the repository's engine).
    sites: SiteRepository
    #: What the stages of this process count (model errors); the embedded gateway's ``/metrics`` shows it too.
    metrics: StageMetrics = field(default_factory=StageMetrics)
    #: Remembered states of the smart home's entities (Redis, or memory when embedded).
    home_state: HomeState = field(default_factory=MemoryHomeState)
    #: The smart home's devices file; None when there is none (no smart-home skill).
    devices: DevicesConfig | None = None
    #: Keys that expire, for "seen once" checks (Telegram update ids, sent replies, per-chat pacing).
    marks: Marks = field(default_factory=MemoryMarks)
    #: The Telegram Bot API client, when Telegram is enabled.
    telegram: TelegramBot | None = None
    #: Web sessions handed to a person, and who has them (Redis, or memory when embedded).
    handoffs: HandoffStore = field(default_factory=MemoryHandoffs)
    #: Publishes MQTT replies and device commands, connecting on first use; None without ``MQTT_URL``.
    mqtt: MqttPublisher | None = None
    #: Single-use stream tickets (Redis, or memory when embedded).
    tickets: StreamTickets = field(default_factory=MemoryStreamTickets)
    _closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        for closer in reversed(self._closers):
            try:
                closer()
            except Exception:
                logger.exception("closing an adapter failed")
