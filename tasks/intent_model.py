"""A dispatch worker's intent classifier: loaded or trained in the background, swapped in whole when ready."""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pipeline.intents import IntentGuess
from pipeline.logsafe import trace_without_messages
from pipeline.model_config import IntentConfig
from skills.base import BaseSkill
from skills.intents import training_samples

logger = logging.getLogger(__name__)


class LoadedClassifier(Protocol):
    """A model ready to classify, and the labels it was trained on."""

    labels: tuple[str, ...]

    def classify(self, text: str) -> IntentGuess | None: ...


#: Loads the model in a folder (``OnnxIntentClassifier.load``); raises when there is none or it is unusable.
Load = Callable[[Path], LoadedClassifier]
#: Trains on ``(text, skill)`` pairs and writes the model into a folder (``train_intent_model``).
Train = Callable[[Sequence[tuple[str, str]], Path], Any]


@dataclass(frozen=True, slots=True)
class _Model:
    """A classifier in use and the training samples it stands for."""

    #: The loaded model.
    classifier: LoadedClassifier
    #: Digest of the samples it was trained on (or, for a model found on disk, of the samples it was taken for).
    fingerprint: str
    #: The skill names it knows (its labels without the none label).
    skills: frozenset[str]


class IntentModel:
    """One per worker process. ``refresh(skills)`` makes the model follow the skills without blocking: a model on
    disk whose labels fit is loaded, otherwise one is trained in a thread into a private folder; each is swapped in
    by one assignment when ready. Until the first is, ``classify`` returns None and dispatch uses triggers alone.
    A training that fails is logged and the model in use stays.
    """

    def __init__(self, config: IntentConfig, load: Load, train: Train, none_label: str = "__none__") -> None:
        self._config = config
        self._load = load
        self._train = train
        self._none_label = none_label
        #: Read without a lock by every dispatch thread; replaced whole.
        self._model: _Model | None = None
        self._lock = threading.Lock()
        # The samples the newest refresh asked for, and whether the thread that serves them runs.
        self._wanted: tuple[str, list[tuple[str, str]]] | None = None
        self._serving: str | None = None
        self._running = False
        # A model on disk is tried once per process, before the first training.
        self._disk_tried = False
        self._failed: str | None = None
        self._idle = threading.Event()
        self._idle.set()

    def classify(self, text: str) -> IntentGuess | None:
        model = self._model
        return None if model is None else model.classifier.classify(text)

    @property
    def skills(self) -> frozenset[str]:
        """The skills the model in use knows; empty before one is ready."""
        model = self._model
        return frozenset() if model is None else model.skills

    def refresh(self, skills: Iterable[BaseSkill]) -> None:
        """Follow ``skills``: returns at once; loading or training, when needed, runs in a background thread."""
        samples = training_samples(skills)
        fingerprint = _fingerprint(samples)
        with self._lock:
            model = self._model
            if model is not None and model.fingerprint == fingerprint:
                self._wanted = None
                return
            if fingerprint in (self._serving, self._wanted[0] if self._wanted else None):
                return
            self._wanted = (fingerprint, samples)
            if self._running:
                return  # the running thread picks the new samples up when it is done
            self._running = True
            self._idle.clear()
        threading.Thread(target=self._serve, name="intent-training", daemon=True).start()

    def wait_idle(self, timeout: float) -> bool:
        """True once no loading or training is under way (benchmarks and tests)."""
        return self._idle.wait(timeout)

    def _serve(self) -> None:
        while True:
            with self._lock:
                wanted = self._wanted
                self._wanted = None
                self._serving = None if wanted is None else wanted[0]
                if wanted is None:
                    self._running = False
                    self._idle.set()
                    return
            try:
                self._follow(*wanted)
            except Exception as exc:  # nothing may end the thread with work left behind
                logger.error("intent model: %s", trace_without_messages(exc))

    def _follow(self, fingerprint: str, samples: list[tuple[str, str]]) -> None:
        names = frozenset(skill for _, skill in samples)
        if not names:
            self._model = None
            logger.info("intent model: no skill has triggers or examples; triggers alone")
            return
        if not self._disk_tried:
            self._disk_tried = True
            if self._from_disk(fingerprint, names):
                return
        if fingerprint == self._failed:
            return  # the same samples failed before; a change of skills tries again
        started = time.perf_counter()
        try:
            with tempfile.TemporaryDirectory(prefix="intents-") as folder:
                self._train(samples, Path(folder))
                classifier = self._load(Path(folder))  # read whole into memory: the folder can go
        except Exception as exc:
            self._failed = fingerprint
            # No exception text: it may quote a sample, which is an admin's or a user's words.
            logger.error("intent model: training on %d samples failed, the model in use stays: %s", len(samples),
                         trace_without_messages(exc))  # fmt: skip
            return
        self._failed = None
        self._model = _Model(classifier, fingerprint, self._known(classifier))
        logger.info("intent model: trained on %d samples of %d skills in %.2f s and swapped in",
                    len(samples), len(names), time.perf_counter() - started)  # fmt: skip

    def _from_disk(self, fingerprint: str, names: frozenset[str]) -> bool:
        """Use the model in the model folder if it knows exactly these skills (``assistant train-intents``)."""
        folder = self._config.model_dir
        if not folder.is_dir():
            return False
        try:
            classifier = self._load(folder)
        except FileNotFoundError:
            return False
        except Exception as exc:
            logger.warning("intent model in %s is unusable, training one: %s", folder, type(exc).__name__)
            return False
        known = self._known(classifier)
        if known != names:
            logger.info("intent model in %s knows other skills than those loaded; training one", folder)
            return False
        self._model = _Model(classifier, fingerprint, known)
        logger.info("intent model loaded from %s (%d skills)", folder, len(known))
        return True

    def _known(self, classifier: LoadedClassifier) -> frozenset[str]:
        return frozenset(classifier.labels) - {self._none_label}


def _fingerprint(samples: Sequence[tuple[str, str]]) -> str:
    return hashlib.sha256(json.dumps(sorted(samples), ensure_ascii=False).encode()).hexdigest()
