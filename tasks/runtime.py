"""What a stage worker process holds: settings, adapters, skills and the forwarder, built once, lazily."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from adapters.bundle import Adapters
from adapters.metrics import SKILL_ERROR, SKILL_OK, SKILL_TIMEOUT
from pipeline.errors import SkillTimeout
from pipeline.generation import Generator
from pipeline.intents import IntentGuess
from pipeline.settings import Settings
from skills.base import BaseSkill, SkillResult
from skills.registry import SkillRegistry
from tasks.forward import Forwarder
from tasks.intent_model import IntentModel
from tasks.skillthreads import SkillThreads

logger = logging.getLogger(__name__)


@dataclass
class StageRuntime:
    """Per-process state of a worker: adapters, skills, and the declarative-skill version loaded."""

    settings: Settings
    adapters: Adapters
    registry: SkillRegistry
    forward: Forwarder
    #: Builds the declarative skills from their stored definitions (the composition root knows how).
    declarative_skills: Callable[[], Iterable[BaseSkill]]
    skills_version: int = -1
    skill_threads: SkillThreads = field(default_factory=SkillThreads)
    #: The intent classifier dispatch consults when no trigger matches; None with ``INTENT_MODEL=off``.
    intents: IntentModel | None = None
    _reload_lock: threading.Lock = field(default_factory=threading.Lock)
    #: Builds the generative model backend (None when none is configured); called on first use, once per process.
    build_generator: Callable[[], Generator | None] = lambda: None
    _generator: Generator | None = None
    _generator_lock: threading.Lock = field(default_factory=threading.Lock)

    def generator(self) -> Generator | None:
        """The model backend, built on first use; a build that fails raises, and the next message tries again."""
        if self._generator is None:
            with self._generator_lock:
                if self._generator is None:
                    self._generator = self.build_generator()
        return self._generator

    def current_registry(self, version: int) -> SkillRegistry:
        """The registry, with the declarative skills reloaded if ``version`` says an admin changed them."""
        if version != self.skills_version:
            with self._reload_lock:
                if version != self.skills_version:
                    skills = list(self.declarative_skills())
                    self.registry.replace_declarative(skills)
                    self.skills_version = version
                    logger.info("loaded %d declarative skills (version %d)", len(skills), version)
                    if self.intents is not None:
                        # Retrains in the background when the skills' samples changed; returns at once.
                        self.intents.refresh(self.registry)
        return self.registry

    @property
    def classify(self) -> Callable[[str], IntentGuess | None] | None:
        """The intent classifier's ``classify``, or None when it is off."""
        return None if self.intents is None else self.intents.classify

    def start_intents(self) -> None:
        """Load or train the intent model now, in the background, for the skills as the database has them."""
        if self.intents is None:
            return
        try:
            self.current_registry(self.adapters.coordination.skills_version())
        except Exception as exc:
            # The first message loads the declarative skills again; the built-in ones are known now.
            logger.warning("could not load the declarative skills yet: %s", type(exc).__name__)
        self.intents.refresh(self.registry)

    def run_skill(
        self, skill: BaseSkill, context: dict[str, Any], keep_alive: Callable[[], None] | None = None
    ) -> str | SkillResult:
        """Run ``skill`` in its own thread so one that hangs costs its thread, not the worker.

        ``keep_alive`` is called every few seconds while the skill runs (the turn's lock is renewed with it).
        Each run is counted in ``assistant_skill_calls_total{skill, outcome}``.
        """
        calls = self.adapters.metrics.skill_calls
        try:
            result = self.skill_threads.run(
                lambda: skill.execute(context), self.settings.skill_timeout_seconds, skill.name, keep_alive
            )
        except SkillTimeout:
            calls.labels(skill.name, SKILL_TIMEOUT).inc()
            raise
        except Exception:
            calls.labels(skill.name, SKILL_ERROR).inc()
            raise
        calls.labels(skill.name, SKILL_OK).inc()
        return result
