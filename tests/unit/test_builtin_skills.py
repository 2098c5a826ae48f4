"""The built-in time, weather and help skills, with a fixed clock and a fake weather provider."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from pipeline.skilldefs import SkillDefinition
from pipeline.weather import CurrentWeather, WeatherUnavailable
from skills.base import SkillResult
from skills.builtin import builtin_skills
from skills.builtin.clock import TimeSkill
from skills.builtin.help import HelpSkill, localized
from skills.builtin.weather import WeatherSkill, extract_location, format_weather
from skills.declarative import DeclarativeSkill
from skills.registry import SkillRegistry

WEDNESDAY = datetime(2026, 11, 25, 14, 5, 33)


class FakeWeather:
    """Knows a few places; records what it was asked."""

    def __init__(self, places: dict[str, CurrentWeather] | None = None, error: Exception | None = None) -> None:
        self.places = places or {}
        self.error = error
        self.asked: list[tuple[str, str]] = []

    def current(self, place: str, language: str) -> CurrentWeather | None:
        self.asked.append((place, language))
        if self.error is not None:
            raise self.error
        return self.places.get(place)


def context(message: str, language: str = "zh", **extra: Any) -> dict[str, Any]:
    return {"message": message, "language": language, "slots": {}, "answering": None, **extra}


# --- time ------------------------------------------------------------------------------------


def test_time_in_chinese() -> None:
    skill = TimeSkill(clock=lambda: WEDNESDAY)
    assert skill.execute(context("现在几点?")) == "现在是 14:05，2026年11月25日 星期三。"


def test_time_in_english() -> None:
    skill = TimeSkill(clock=lambda: WEDNESDAY)
    assert skill.execute(context("what time is it", "en")) == "It is 14:05 on Wednesday, 25 November 2026."


def test_time_converts_an_aware_clock_to_the_timezone() -> None:
    utc = datetime(2026, 1, 4, 23, 30, tzinfo=UTC)
    skill = TimeSkill(clock=lambda: utc, timezone=timezone(timedelta(hours=8)))
    assert skill.execute(context("date", "en")) == "It is 07:30 on Monday, 5 January 2026."


def test_time_default_clock_is_aware_local_time() -> None:
    assert TimeSkill().now().tzinfo is not None


def test_time_triggers() -> None:
    skill = TimeSkill()
    for text in ["几点了", "今天几号", "星期几", "What time is it?", "what's the date", "What day is it"]:
        assert skill.match(text) > 0, text
    assert skill.match("sometimes") == 0


# --- weather ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "place"),
    [
        ("上海天气怎么样", "上海"),
        ("今天北京的气温", "北京"),
        ("北京明天会下雨吗?", "北京"),
        ("请告诉我广州的天气", "广州"),
        ("查一下深圳现在的温度", "深圳"),
        ("weather in London", "London"),
        ("London weather", "London"),
        ("what's the temperature in New York?", "New York"),
        ("What is the weather like in Paris today?", "Paris"),
        ("weather in St. Louis", "St. Louis"),
        ("天气怎么样", ""),
        ("今天的气温", ""),
        ("what's the weather like?", ""),
        ("weather for today", ""),
    ],
)
def test_location_extraction(message: str, place: str) -> None:
    assert extract_location(message) == place


SHANGHAI = CurrentWeather(place="上海", temperature_c=8.3, weather_code=3)
LONDON = CurrentWeather(place="London", temperature_c=8.3, weather_code=3)


def test_weather_reply_in_chinese() -> None:
    provider = FakeWeather({"上海": SHANGHAI})
    assert WeatherSkill(provider).execute(context("上海天气怎么样")) == "上海当前气温 8.3℃，阴。"
    assert provider.asked == [("上海", "zh")]


def test_weather_reply_in_english() -> None:
    provider = FakeWeather({"London": LONDON})
    assert WeatherSkill(provider).execute(context("weather in London", "en")) == "London: 8.3°C, overcast."
    assert provider.asked == [("London", "en")]


def test_weather_formatting() -> None:
    assert format_weather(CurrentWeather("Oslo", -0.04, 71), zh=False) == "Oslo: 0°C, light snow."
    assert format_weather(CurrentWeather("Oslo", -3.0, 2), zh=True) == "Oslo当前气温 -3℃，多云。"
    assert format_weather(CurrentWeather("Oslo", 12.34, 1234), zh=False) == "Oslo: 12.3°C."


def test_weather_asks_for_the_city() -> None:
    provider = FakeWeather()
    zh = WeatherSkill(provider).execute(context("今天天气怎么样?"))
    assert zh == SkillResult.question("哪个城市？", slot="location")
    en = WeatherSkill(provider).execute(context("what's the weather like?", "en"))
    assert isinstance(en, SkillResult) and en.ask == "Which city?" and en.slot == "location"
    assert provider.asked == []


def test_weather_uses_the_slot_answer() -> None:
    provider = FakeWeather({"上海": SHANGHAI, "London": LONDON})
    skill = WeatherSkill(provider)
    answer = context("上海吧", answering="location", slots={"location": "上海吧"})
    assert skill.execute(answer) == "上海当前气温 8.3℃，阴。"
    answer = context("in London, please", "en", answering="location", slots={"location": "in London, please"})
    assert skill.execute(answer) == "London: 8.3°C, overcast."
    # A bare answer that looks like a filler word is still tried as a place.
    skill.execute(context("Today", "en", answering="location", slots={"location": "Today"}))
    assert provider.asked[-1] == ("Today", "en")


def test_weather_place_not_found() -> None:
    skill = WeatherSkill(FakeWeather())
    assert skill.execute(context("火星天气")) == "找不到这个地方：火星。"
    assert skill.execute(context("weather in Atlantis", "en")) == "I couldn't find a place called Atlantis."


@pytest.mark.parametrize("error", [WeatherUnavailable("timeout"), RuntimeError("provider bug")])
def test_weather_service_failure_is_polite(error: Exception) -> None:
    skill = WeatherSkill(FakeWeather(error=error))
    assert skill.execute(context("上海天气")) == "抱歉，天气服务暂时无法访问，请稍后再试。"
    assert skill.execute(context("London weather", "en")) == (
        "Sorry, the weather service is unavailable right now. Please try again later."
    )


def test_weather_describe() -> None:
    described = WeatherSkill(FakeWeather()).describe()
    assert described["name"] == "weather"
    assert described["description"] == "获取实时天气信息 / current weather"
    assert {"天气", "气温", "温度", "下雨", "weather", "temperature", "forecast"} <= set(described["triggers"])


# --- help and the set of built-ins -----------------------------------------------------------


def test_help_lists_every_skill_including_later_ones() -> None:
    registry = SkillRegistry()
    for skill in builtin_skills(FakeWeather(), registry.describe):
        registry.add(skill)
    assert registry.names() == ["time", "weather", "help"]
    help_skill = registry.get("help")
    assert isinstance(help_skill, HelpSkill)

    zh = str(help_skill.execute(context("你能做什么")))
    assert zh.splitlines()[0] == "我可以帮你做这些事："
    assert "- weather：获取实时天气信息（例如“天气”）" in zh
    assert "current weather" not in zh

    registry.replace_declarative(
        [DeclarativeSkill(SkillDefinition("hours", "Opening hours", ("opening hours",), response="9-5"))]
    )
    en = str(help_skill.execute(context("help", "en")))
    assert en.splitlines()[0] == "Here is what I can do:"
    assert '- weather: current weather (try "weather")' in en
    assert '- hours: Opening hours (try "opening hours")' in en
    assert "- time: current time and date" in en


def test_help_with_no_skills() -> None:
    assert HelpSkill(lambda: []).execute(context("help", "en")) == "No skills are available right now."


def test_builtins_route_messages() -> None:
    registry = SkillRegistry(builtin_skills(FakeWeather(), lambda: []))
    for text, name in [
        ("上海天气怎么样", "weather"),
        ("今天北京的气温", "weather"),
        ("现在几点", "time"),
        ("What time is it?", "time"),
        ("weather in London", "weather"),
        ("帮助", "help"),
        ("what can you do", "help"),
    ]:
        chosen = registry.match(text)
        assert chosen is not None and chosen.name == name, text


def test_localized_description() -> None:
    assert localized("获取实时天气信息 / current weather", zh=True) == "获取实时天气信息"
    assert localized("获取实时天气信息 / current weather", zh=False) == "current weather"
    assert localized("only one", zh=True) == "only one"
    assert localized("", zh=False) == ""
