"""The skills every assistant has: time, weather and help."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from skills.base import BaseSkill
from skills.builtin.clock import TimeSkill
from skills.builtin.help import HelpSkill
from skills.builtin.weather import WeatherProvider, WeatherSkill

__all__ = ["HelpSkill", "TimeSkill", "WeatherProvider", "WeatherSkill", "builtin_skills"]


def builtin_skills(weather: WeatherProvider, registry_view: Callable[[], list[dict[str, Any]]]) -> list[BaseSkill]:
    """Time, weather and help; ``registry_view`` lists all skills' ``describe()`` dicts when help runs."""
    return [TimeSkill(), WeatherSkill(weather), HelpSkill(registry_view)]
