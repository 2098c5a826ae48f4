"""What the intent classifier learns from: every skill's triggers and examples."""

from __future__ import annotations

from collections.abc import Iterable

from skills.base import BaseSkill


def training_samples(skills: Iterable[BaseSkill]) -> list[tuple[str, str]]:
    """``(text, skill name)`` for each trigger and example of each skill, in order, without repeats."""
    samples: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for skill in skills:
        for text in [*skill.triggers, *getattr(skill, "examples", ())]:
            pair = (text, skill.name)
            if pair not in seen:
                seen.add(pair)
                samples.append(pair)
    return samples
