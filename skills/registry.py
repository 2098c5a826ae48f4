"""The ordered set of skills a dispatch worker chooses from."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from typing import Any

from skills.base import BaseSkill

logger = logging.getLogger(__name__)


def is_declarative(skill: BaseSkill) -> bool:
    """True for skills that came from the database (they carry ``declarative = True``)."""
    return getattr(skill, "declarative", False) is True


class SkillRegistry:
    """Skills in the order they were added; the earlier one wins a tie.

    Readers never lock: every change builds a new tuple and swaps it in one assignment, so a
    message being matched sees either the old set or the new one, never half of each.
    """

    def __init__(self, skills: Iterable[BaseSkill] = ()) -> None:
        self._lock = threading.Lock()  # serializes writers only
        self._skills: tuple[BaseSkill, ...] = ()
        for skill in skills:
            self.add(skill)

    def add(self, skill: BaseSkill) -> None:
        """Add ``skill``; one of the same name is replaced in place (keeping its position)."""
        if not isinstance(skill, BaseSkill):
            raise TypeError(f"not a skill: {skill!r}")
        with self._lock:
            current = self._skills
            if any(s.name == skill.name for s in current):
                self._skills = tuple(skill if s.name == skill.name else s for s in current)
            else:
                self._skills = (*current, skill)

    def remove(self, name: str) -> bool:
        """Remove the skill called ``name``; False when there was none."""
        with self._lock:
            current = self._skills
            kept = tuple(s for s in current if s.name != name)
            self._skills = kept
            return len(kept) != len(current)

    def replace_declarative(self, skills: Iterable[BaseSkill]) -> None:
        """Swap every database-defined skill for ``skills`` at once, keeping the others.

        A declarative skill may not shadow a built-in or plugin skill of the same name; it is
        skipped with a warning. Among the new ones a later duplicate name replaces an earlier one.
        """
        incoming: dict[str, BaseSkill] = {}
        for skill in skills:
            if not is_declarative(skill):
                raise ValueError(f"{skill!r} is not declarative (it has no declarative = True attribute)")
            incoming[skill.name] = skill
        with self._lock:
            kept = tuple(s for s in self._skills if not is_declarative(s))
            taken = {s.name for s in kept}
            for name in taken & incoming.keys():
                logger.warning("declarative skill %r ignored: a built-in or plugin skill has that name", name)
            self._skills = kept + tuple(s for name, s in incoming.items() if name not in taken)

    def serving(self, roles: Iterable[str]) -> SkillRegistry:
        """A registry of only the skills a sender with token ``roles`` may use (a snapshot: later changes to this
        one do not show in it)."""
        roles = tuple(roles)
        view = SkillRegistry()
        view._skills = tuple(s for s in self._skills if s.serves(roles))
        return view

    def get(self, name: str) -> BaseSkill | None:
        return next((s for s in self._skills if s.name == name), None)

    def names(self) -> list[str]:
        return [s.name for s in self._skills]

    def describe(self) -> list[dict[str, Any]]:
        """Every skill's ``describe()``, in order (what ``help`` and ``GET /api/skills`` show)."""
        return [s.describe() for s in self._skills]

    def match(self, text: str) -> BaseSkill | None:
        """The skill whose trigger fits ``text`` best (longest trigger); None if none fits.

        Ties go to a registered skill over a loaded one, then to the earlier one.
        """
        best: BaseSkill | None = None
        best_score = 0
        for skill in self._skills:
            try:
                score = skill.match(text)
            except Exception:
                # One plugin with a broken match() must not stop the others from being chosen.
                logger.exception("skill %r failed to match", skill.name)
                continue
            # On a tie a registered (declarative) skill beats a built-in one: an admin added it on purpose.
            wins_tie = score == best_score and best is not None and is_declarative(skill) and not is_declarative(best)
            if score > best_score or (score > 0 and wins_tie):
                best, best_score = skill, score
        return best

    def __len__(self) -> int:
        return len(self._skills)

    def __iter__(self) -> Iterator[BaseSkill]:
        return iter(self._skills)

    def __contains__(self, name: object) -> bool:
        return any(s.name == name for s in self._skills)
