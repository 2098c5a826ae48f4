"""Finding plugin skills: ``*.py`` files in a folder, and installed packages' entry points."""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import inspect
import logging
import re
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import cast

from skills.base import BaseSkill

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "assistant.skills"


def load_folder_skills(folder: Path) -> list[BaseSkill]:
    """One instance of every ``BaseSkill`` subclass defined in ``folder/*.py``; broken files are logged and skipped.

    Files starting with ``_`` are skipped (helpers), and so are classes whose names start with ``_``
    (private bases). Files load in name order, classes in the order they are defined.
    """
    folder = Path(folder)
    if not folder.is_dir():
        logger.warning("skills folder %s does not exist; no folder skills loaded", folder)
        return []
    skills: list[BaseSkill] = []
    for path in sorted(folder.glob("*.py")):
        if path.name.startswith("_"):
            continue
        module = _import_file(path)
        if module is None:
            continue
        for cls in _skill_classes(module):
            try:
                # Plugin classes take no arguments; BaseSkill's own signature is not theirs.
                skills.append(cast(Callable[[], BaseSkill], cls)())
            except Exception:
                logger.exception("skill class %s in %s could not be created; skipped", cls.__name__, path)
    return skills


def load_entry_point_skills(group: str = ENTRY_POINT_GROUP) -> list[BaseSkill]:
    """Skills installed packages declare under ``[project.entry-points."assistant.skills"]``."""
    skills: list[BaseSkill] = []
    for entry_point in importlib.metadata.entry_points(group=group):
        try:
            loaded = entry_point.load()
            if isinstance(loaded, BaseSkill):
                skill = loaded
            elif inspect.isclass(loaded) and issubclass(loaded, BaseSkill):
                skill = cast(Callable[[], BaseSkill], loaded)()
            else:
                logger.error("entry point %s = %s is neither a BaseSkill subclass nor an instance; skipped",
                             entry_point.name, entry_point.value)  # fmt: skip
                continue
        except Exception:
            logger.exception("entry point %s = %s failed to load; skipped", entry_point.name, entry_point.value)
            continue
        skills.append(skill)
    return skills


def _import_file(path: Path) -> ModuleType | None:
    # The path's hash keeps two folders' "weather.py" apart; the stem keeps tracebacks readable.
    digest = hashlib.sha1(str(path.resolve()).encode(), usedforsecurity=False).hexdigest()[:12]
    stem = re.sub(r"\W", "_", path.stem)
    name = f"assistant_folder_skill_{stem}_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        logger.error("skill file %s cannot be imported; skipped", path)
        return None
    module = importlib.util.module_from_spec(spec)
    # Registered before running so dataclasses, pickling and typing can find the module by name.
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit):
        sys.modules.pop(name, None)
        logger.exception("skill file %s failed to import; skipped", path)
        return None
    return module


def _skill_classes(module: ModuleType) -> list[type[BaseSkill]]:
    return [
        value
        for value in vars(module).values()
        if inspect.isclass(value)
        and issubclass(value, BaseSkill)
        and value is not BaseSkill
        and value.__module__ == module.__name__
        and not value.__name__.startswith("_")
        and not inspect.isabstract(value)
    ]
