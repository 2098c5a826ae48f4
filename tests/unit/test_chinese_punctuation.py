"""Chinese replies use full-width punctuation (，。？！：；), as Chinese readers expect."""

from __future__ import annotations

import ast
import re
from datetime import datetime
from pathlib import Path

import pytest

from pipeline.language import is_cjk
from pipeline.settings import Settings
from pipeline.skilldefs import SkillDefinition
from pipeline.weather import CurrentWeather, WeatherUnavailable
from skills.base import SkillResult
from skills.builtin import HelpSkill, TimeSkill, WeatherSkill, builtin_skills
from skills.declarative import DeclarativeSkill
from skills.dispatcher import MESSAGES

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [*sorted((ROOT / "skills").rglob("*.py")), ROOT / "pipeline" / "settings.py"]
HALF_WIDTH = ",?!:;"


def chinese_context(char: str) -> bool:
    """A CJK ideograph, or punctuation that only appears in CJK text (。，“” and the full-width forms)."""
    return is_cjk(char) or "\u3000" <= char <= "\u303f" or "\uff00" <= char <= "\uffef" or char in "“”‘’"


def half_width_next_to_chinese(text: str) -> list[str]:
    """Every half-width , ? ! : ; with a Chinese character on either side, with a little context."""
    found = []
    for index, char in enumerate(text):
        if char not in HALF_WIDTH:
            continue
        neighbours = text[max(index - 1, 0) : index] + text[index + 1 : index + 2]
        if any(chinese_context(n) for n in neighbours):
            found.append(text[max(index - 6, 0) : index + 7])
    return found


def test_the_scan_finds_half_width_punctuation() -> None:
    assert half_width_next_to_chinese("哪个城市?") == ["哪个城市?"]
    assert half_width_next_to_chinese("抱歉,出了点问题") == ["抱歉,出了点问题"]
    assert half_width_next_to_chinese("现在是 14:05，星期三。") == []
    assert half_width_next_to_chinese("current time: 14:05") == []


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_string_in_the_skills_mixes_chinese_with_half_width_punctuation(path: Path) -> None:
    """Reply templates, docstring examples and defaults alike; f-strings are checked piece by piece."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    bad = [
        f"line {node.lineno}: {snippet!r}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
        for snippet in half_width_next_to_chinese(node.value)
    ]
    assert not bad, "\n".join(bad)


class Weather:
    """A weather provider with one known place, one unknown and one outage."""

    def current(self, place: str, language: str) -> CurrentWeather | None:
        if place == "火星":
            return None
        if place == "北京":
            raise WeatherUnavailable("down")
        return CurrentWeather(place=place, temperature_c=12.0, weather_code=61)


def zh_replies() -> list[str]:
    """Every Chinese reply the built-in parts give, rendered (so placeholders between punctuation count too)."""
    weather = WeatherSkill(Weather())
    replies = [
        TimeSkill(clock=lambda: datetime(2026, 11, 25, 14, 5)).execute({"message": "现在几点", "language": "zh"}),
        *(weather.execute({"message": m, "language": "zh", "slots": {}}) for m in ("上海天气", "火星天气", "北京天气")),
        weather.execute({"message": "天气", "language": "zh", "slots": {}}),
        HelpSkill(lambda: [s.describe() for s in builtin_skills(Weather(), list)]).execute({"language": "zh"}),
        DeclarativeSkill(SkillDefinition("hook", "", ("钩子",), webhook="https://x.example/")).execute(
            {"message": "钩子", "language": "zh"}
        ),
        MESSAGES["zh"]["apology"],
        MESSAGES["zh"]["cancelled"],
        MESSAGES["zh"]["resume"].format(question="哪个城市？"),
        Settings().fallback_reply_zh,
    ]
    return [r.text if isinstance(r, SkillResult) else r for r in replies]


def test_rendered_chinese_replies_use_full_width_punctuation() -> None:
    replies = zh_replies()
    assert len(replies) == 11 and all(any(is_cjk(c) for c in r) for r in replies), replies
    for reply in replies:
        # A colon is fine between digits (14:05); nothing else half-width belongs in a Chinese sentence.
        stray = re.sub(r"(?<=\d):(?=\d)", "", reply)
        assert not any(c in HALF_WIDTH + "()" for c in stray), reply
