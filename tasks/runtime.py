"""What a stage worker process holds: adapters and the skill registry, built once, lazily."""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from celery import Celery

from adapters.bootstrap import Adapters, build_adapters
from pipeline.settings import Settings
from skills.base import BaseSkill, SkillResult
from skills.builtin import builtin_skills
from skills.declarative import DeclarativeSkill
from skills.discovery import load_entry_point_skills, load_folder_skills
from skills.registry import SkillRegistry
from tasks.skillthreads import SkillThreads

logger = logging.getLogger(__name__)

_RUNTIME_ATTR = "_assistant_runtime"
_runtime_lock = threading.Lock()


@dataclass
class StageRuntime:
    """Per-process state of a worker: adapters, skills, and the declarative-skill version loaded."""

    settings: Settings
    adapters: Adapters
    registry: SkillRegistry
    skills_version: int = -1
    skill_threads: SkillThreads = field(default_factory=SkillThreads)
    _reload_lock: threading.Lock = field(default_factory=threading.Lock)

    def current_registry(self, version: int) -> SkillRegistry:
        """The registry, with the declarative skills reloaded if ``version`` says an admin changed them."""
        if version != self.skills_version:
            with self._reload_lock:
                if version != self.skills_version:
                    definitions = self.adapters.repository.list_skills()
                    post = self.adapters.post_json
                    self.registry.replace_declarative(DeclarativeSkill(d, post) for d in definitions)
                    self.skills_version = version
                    logger.info("loaded %d declarative skills (version %d)", len(definitions), version)
        return self.registry

    def run_skill(self, skill: BaseSkill, context: dict[str, Any]) -> str | SkillResult:
        """Run ``skill`` in its own thread so one that hangs costs its thread, not the worker."""
        return self.skill_threads.run(lambda: skill.execute(context), self.settings.skill_timeout_seconds, skill.name)


def build_registry(adapters: Adapters) -> SkillRegistry:
    """Built-ins first, then the skills folder, then installed packages' entry points."""
    registry = SkillRegistry()
    for skill in builtin_skills(adapters.weather, registry.describe):
        registry.add(skill)
    folder = adapters.settings.skills_dir
    if folder is not None and folder.is_dir():
        for skill in load_folder_skills(folder):
            registry.add(skill)
    for skill in load_entry_point_skills():
        registry.add(skill)
    return registry


def publish_catalog_on_start(sender: Any, **_: Any) -> None:
    """Build the runtime when a worker starts, so the gateway lists its skills before any message."""
    runtime_for(sender.app)


def runtime_for(app: Celery) -> StageRuntime:
    """This process's runtime, built on first use (after a prefork worker forked, never before)."""
    runtime: StageRuntime | None = getattr(app, _RUNTIME_ATTR, None)
    if runtime is not None:
        return runtime
    with _runtime_lock:
        runtime = getattr(app, _RUNTIME_ATTR, None)
        if runtime is None:
            settings: Settings = app.conf.assistant_settings
            adapters: Adapters | None = app.conf.assistant_adapters
            if adapters is None:
                # Every stage task retries on a database error, so the per-message round trip of a pre-ping
                # buys nothing here: after a database restart one attempt fails and its retry runs on new connections.
                adapters = build_adapters(settings, pre_ping=False)
            registry = build_registry(adapters)
            # The gateway lists skills without loading them: the workers publish what they have.
            adapters.coordination.set_catalog(json.dumps(registry.describe(), ensure_ascii=False))
            runtime = StageRuntime(settings, adapters, registry)
            setattr(app, _RUNTIME_ATTR, runtime)
    return runtime
