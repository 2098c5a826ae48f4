"""The weather skill answers the day asked about: today's weather now, other days from the daily forecast."""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Any

import pytest

from pipeline.dialogue import DialogueState
from pipeline.envelope import Envelope, new_id
from pipeline.weather import CurrentWeather, DailyForecast, DayForecast, WeatherUnavailable
from skills.base import SkillResult
from skills.builtin import WeatherSkill
from skills.dispatcher import dispatch
from skills.registry import SkillRegistry

WEDNESDAY = date(2026, 11, 25)


def days_from(start: date, count: int = 16) -> tuple[DayForecast, ...]:
    """Day 0 overcast, day 1 light rain (80%), then a clear and a rainy day in turn (no chance figure after day 9)."""
    fixed = [DayForecast(start, 13.0, 8.0, 3, 40), DayForecast(start + timedelta(days=1), 14.0, 9.0, 61, 80)]
    later = [
        DayForecast(
            start + timedelta(days=i), 10.0 + i, 2.0 + i / 2, (0, 63)[i % 2], (10, 70)[i % 2] if i < 10 else None
        )
        for i in range(2, 16)
    ]
    return (*fixed, *later)[:count]


class Provider:
    """Knows Shanghai (上海 in Chinese, Shanghai in English); records every call."""

    def __init__(self, start: date = WEDNESDAY, error: Exception | None = None) -> None:
        self.start = start
        self.error = error
        self.calls: list[tuple[Any, ...]] = []

    def _name(self, place: str) -> str | None:
        return {"上海": "上海", "Shanghai": "Shanghai"}.get(place)

    def current(self, place: str, language: str) -> CurrentWeather | None:
        self.calls.append(("current", place, language))
        if self.error is not None:
            raise self.error
        name = self._name(place)
        return CurrentWeather(name, 12.0, 61) if name else None

    def daily(self, place: str, language: str, days: int) -> DailyForecast | None:
        self.calls.append(("daily", place, language, days))
        if self.error is not None:
            raise self.error
        name = self._name(place)
        return DailyForecast(name, days_from(self.start, days)) if name else None


def ask(provider: Provider, message: str, language: str = "zh", **extra: Any) -> str | SkillResult:
    return WeatherSkill(provider).execute({"message": message, "language": language, "slots": {}, **extra})


def test_tomorrow_with_the_chance_of_rain() -> None:
    provider = Provider()
    assert ask(provider, "明天上海会下雨吗") == "上海明天：小雨，最高 14℃，最低 9℃，降水概率 80%。"
    assert provider.calls == [("daily", "上海", "zh", 2)]
    assert ask(provider, "will it rain tomorrow in Shanghai", "en") == (
        "Shanghai tomorrow: light rain, high 14°C, low 9°C, 80% chance of rain."
    )


def test_no_chance_of_rain_unless_asked() -> None:
    assert ask(Provider(), "上海明天天气怎么样") == "上海明天：小雨，最高 14℃，最低 9℃。"
    assert ask(Provider(), "Shanghai weather tomorrow", "en") == "Shanghai tomorrow: light rain, high 14°C, low 9°C."
    assert ask(Provider(), "明天上海要带伞吗") == "上海明天：小雨，最高 14℃，最低 9℃，降水概率 80%。"
    assert ask(Provider(), "do I need an umbrella in Shanghai tomorrow", "en").endswith("80% chance of rain.")


def test_no_day_is_the_weather_now() -> None:
    provider = Provider()
    assert ask(provider, "上海天气怎么样") == "上海当前气温 12℃，小雨。"
    assert provider.calls == [("current", "上海", "zh")]


def test_today_adds_the_day_s_forecast() -> None:
    provider = Provider()
    assert ask(provider, "上海今天天气") == "上海当前气温 12℃，小雨。今天阴，最高 13℃，最低 8℃。"
    assert provider.calls == [("current", "上海", "zh"), ("daily", "上海", "zh", 1)]
    assert ask(Provider(), "Shanghai weather tonight", "en") == (
        "Shanghai: 12°C, light rain. Today: overcast, high 13°C, low 8°C."
    )


def test_a_rain_question_without_a_day_is_about_today() -> None:
    assert ask(Provider(), "上海会下雨吗") == "上海当前气温 12℃，小雨。今天阴，最高 13℃，最低 8℃，降水概率 40%。"


def test_later_days() -> None:
    assert ask(Provider(), "后天上海天气") == "上海后天：晴，最高 12℃，最低 3℃。"
    assert ask(Provider(), "大后天上海会下雨吗") == "上海大后天：中雨，最高 13℃，最低 3.5℃，降水概率 70%。"
    assert ask(Provider(), "Shanghai weather the day after tomorrow", "en") == (
        "Shanghai the day after tomorrow: clear sky, high 12°C, low 3°C."
    )
    # Friday 27th is two days on; next Monday (30th) is five, from the Wednesday the forecast starts on.
    assert ask(Provider(), "周五上海天气") == "上海周五：晴，最高 12℃，最低 3℃。"
    assert ask(Provider(), "下周一上海天气") == "上海下周一：中雨，最高 15℃，最低 4.5℃。"
    assert ask(Provider(), "Shanghai weather on Friday", "en") == "Shanghai on Friday: clear sky, high 12°C, low 3°C."


def test_the_weekend_covers_saturday_and_sunday() -> None:
    provider = Provider()
    assert ask(provider, "周末上海会下雨吗") == (
        "上海周末：周六中雨，最高 13℃，最低 3.5℃，降水概率 70%；周日晴，最高 14℃，最低 4℃，降水概率 10%。"
    )
    assert provider.calls == [("daily", "上海", "zh", 7)]
    assert ask(Provider(), "Shanghai weather this weekend", "en") == (
        "Shanghai this weekend: Saturday rain, high 13°C, low 3.5°C; Sunday clear sky, high 14°C, low 4°C."
    )


def test_on_sunday_the_weekend_is_what_is_left_of_it() -> None:
    sunday = date(2026, 11, 29)
    assert ask(Provider(start=sunday), "上海周末天气") == "上海周末：周日阴，最高 13℃，最低 8℃。"


def test_the_day_is_the_place_s_own_today() -> None:
    """Dates count from the forecast's first day (the place's today), not from this machine's clock."""
    saturday = date(2026, 11, 28)
    assert (
        ask(Provider(start=saturday), "上海周末天气")
        == "上海周末：周六阴，最高 13℃，最低 8℃；周日小雨，最高 14℃，最低 9℃。"
    )


def test_a_day_past_the_forecast() -> None:
    # The forecast ends early (a short model run): next Sunday is past it.
    class Short(Provider):
        def daily(self, place: str, language: str, days: int) -> DailyForecast | None:
            found = super().daily(place, language, days)
            return DailyForecast(found.place, found.days[:3]) if found else None

    assert ask(Short(), "下周日上海天气") == "上海暂时没有下周日的预报。"
    assert ask(Short(), "Shanghai weather next Sunday", "en") == "There is no forecast for Shanghai next Sunday yet."


def test_a_missing_chance_of_rain_is_left_out() -> None:
    # From a Monday, next Sunday is day 13, past the days with a chance figure.
    provider = Provider(start=date(2026, 11, 23))
    assert ask(provider, "下周日上海会下雨吗") == "上海下周日：中雨，最高 23℃，最低 8.5℃。"
    assert provider.calls == [("daily", "上海", "zh", 14)]


def test_unknown_place_and_outage() -> None:
    assert ask(Provider(), "明天火星天气") == "找不到这个地方：火星。"
    assert ask(Provider(), "weather in Atlantis tomorrow", "en") == "I couldn't find a place called Atlantis."
    for error in (WeatherUnavailable("timeout"), RuntimeError("bug")):
        assert ask(Provider(error=error), "明天上海会下雨吗") == "抱歉，天气服务暂时无法访问，请稍后再试。"


def test_the_follow_up_question_keeps_the_day_and_the_rain() -> None:
    """ "明天会下雨吗" → "哪个城市？" → "上海": tomorrow's forecast with the chance of rain, through the dispatcher."""
    provider = Provider()
    registry = SkillRegistry([WeatherSkill(provider)])
    state, session = DialogueState(), new_id()
    replies = []
    for text in ("明天会下雨吗", "上海"):
        envelope = Envelope(message_id=new_id(), session_id=session, channel="web", user_id="u", roles=("user",),
                            text=text)  # fmt: skip
        outcome = dispatch(envelope, state, registry, lambda skill, context: skill.execute(context))
        state = outcome.state
        assert outcome.reply is not None
        replies.append(outcome.reply.text)
    assert replies == ["哪个城市？", "上海明天：小雨，最高 14℃，最低 9℃，降水概率 80%。"]
    assert ask(Provider(), "今天天气怎么样?") == SkillResult.question("哪个城市？", slot="location")
    assert ask(Provider(), "后天呢") == SkillResult.question(
        "哪个城市？", slot="location", slots={"day": "day_after_tomorrow"}
    )


def test_rain_and_umbrella_are_whole_word_triggers() -> None:
    skill = WeatherSkill(Provider())
    for text in ("will it rain tomorrow in Shanghai", "Is it raining?", "do I need an umbrella", "今天要带伞吗"):
        assert skill.match(text) > 0, text
    for text in ("brain teaser", "train times", "Rainbow Six"):
        assert skill.match(text) == 0, text


@pytest.mark.parametrize("message", ["明天上海会下雨吗", "周末上海天气", "上海今天天气"])
def test_chinese_answers_use_full_width_punctuation(message: str) -> None:
    answer = ask(Provider(), message)
    assert isinstance(answer, str)
    assert not re.search(r"[,:;?!]|(?<!\d)\.|\.(?!\d)", answer), answer  # a decimal point is no full stop
