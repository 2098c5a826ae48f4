"""The built-in weather skill: finds the place and the day in the message and asks a weather provider."""

from __future__ import annotations

import logging
import re
from datetime import date
from types import MappingProxyType
from typing import Any, Protocol

from pipeline.language import detect_language, normalize
from pipeline.logsafe import trace_without_messages
from pipeline.slots import DAY, DAYS, LOCATION, WEEKDAYS, extract_day, location_answer, resolve_day
from pipeline.slots import extract_location as slots_extract_location
from pipeline.weather import CurrentWeather, DailyForecast, DayForecast, WeatherUnavailable
from skills.base import BaseSkill, SkillResult

logger = logging.getLogger(__name__)

__all__ = [
    "CurrentWeather", "DailyForecast", "WeatherProvider", "WeatherSkill", "WeatherUnavailable", "extract_location"
]  # fmt: skip

# English ones match whole words only, so "rain" does not fire on "brain" or "train".
TRIGGERS = ("天气", "气温", "温度", "下雨", "带伞", "weather", "temperature", "forecast", "rain", "raining", "umbrella")

#: Everyday weather questions (rain, umbrellas, heat and cold, tomorrow, a city); the intent classifier learns from
#: them and the triggers.
EXAMPLES = (
    # Chinese
    "出门要不要带雨伞", "明天需要带伞吗", "外面在下雨吗", "今天会下雨不", "等会儿会不会下雨", "周末会下雪吗",
    "今天冷不冷", "外面热吗", "明天热不热", "今天要穿外套吗", "出门穿什么合适", "今天穿短袖行吗",
    "北京明天怎么样", "上海现在多少度", "广州今天几度", "深圳会不会刮台风", "成都这几天晴天吗",
    "明天是晴天还是阴天", "今天有太阳吗", "外面风大不大", "今晚会降温吗", "这周末适合出去玩吗",
    "空气湿度大吗", "南京冷吗", "后天会不会变天", "今天适合晒被子吗", "武汉最近热吗", "明天出门要带伞不",
    # English
    "do i need an umbrella", "should i bring an umbrella today", "is it raining outside", "will it rain later",
    "is it going to snow this weekend", "is it cold outside", "how hot is it today", "will it be hot tomorrow",
    "should i wear a jacket", "what should i wear today", "how cold is it in london", "is it sunny in paris",
    "what's it like outside", "will it be windy tomorrow", "is there a storm coming", "how many degrees is it",
    "is it nice out today", "any rain expected in shanghai", "is tokyo warm right now", "will it be cloudy tomorrow",
    "what's the outlook for the weekend", "how humid is it", "will it snow in new york tomorrow",
    "is it freezing out there", "do i need sunscreen today", "is it warm enough for shorts",
    "chance of showers this afternoon", "what's it like in berlin today",
)  # fmt: skip

#: Short descriptions of WMO weather interpretation codes, (Chinese, English).
WMO_CODES: MappingProxyType[int, tuple[str, str]] = MappingProxyType(
    {
        0: ("晴", "clear sky"),
        1: ("晴间少云", "mainly clear"),
        2: ("多云", "partly cloudy"),
        3: ("阴", "overcast"),
        45: ("雾", "fog"),
        48: ("冻雾", "freezing fog"),
        51: ("小毛毛雨", "light drizzle"),
        53: ("毛毛雨", "drizzle"),
        55: ("大毛毛雨", "heavy drizzle"),
        56: ("冻毛毛雨", "freezing drizzle"),
        57: ("强冻毛毛雨", "heavy freezing drizzle"),
        61: ("小雨", "light rain"),
        63: ("中雨", "rain"),
        65: ("大雨", "heavy rain"),
        66: ("冻雨", "freezing rain"),
        67: ("强冻雨", "heavy freezing rain"),
        71: ("小雪", "light snow"),
        73: ("中雪", "snow"),
        75: ("大雪", "heavy snow"),
        77: ("米雪", "snow grains"),
        80: ("小阵雨", "light showers"),
        81: ("阵雨", "showers"),
        82: ("强阵雨", "violent showers"),
        85: ("小阵雪", "light snow showers"),
        86: ("阵雪", "snow showers"),
        95: ("雷阵雨", "thunderstorm"),
        96: ("雷阵雨伴冰雹", "thunderstorm with hail"),
        99: ("强雷阵雨伴冰雹", "thunderstorm with heavy hail"),
    }
)


# Questions about rain get the day's chance of it.
_RAIN = re.compile(r"雨|伞|降水|\b(?:rain\w*|umbrellas?|showers?|drizzl\w*|precipitation)\b")
#: The slot that carries "the question was about rain" across a follow-up question.
ABOUT = "about"
# How many forecast days each kind of day needs, counting today.
_SPAN = MappingProxyType({"today": 1, "tomorrow": 2, "day_after_tomorrow": 3, "in_3_days": 4, "weekend": 7})
_WEEKDAYS_ZH = ("周一", "周二", "周三", "周四", "周五", "周六", "周日")
_WEEKDAYS_EN = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_LABELS = MappingProxyType(
    {
        "today": ("今天", "today"),
        "tomorrow": ("明天", "tomorrow"),
        "day_after_tomorrow": ("后天", "the day after tomorrow"),
        "in_3_days": ("大后天", "in three days"),
        "weekend": ("周末", "this weekend"),
        "next_weekend": ("下周末", "next weekend"),
        **{day: (_WEEKDAYS_ZH[i], f"on {_WEEKDAYS_EN[i]}") for i, day in enumerate(WEEKDAYS)},
        **{f"next_{day}": (f"下{_WEEKDAYS_ZH[i]}", f"next {_WEEKDAYS_EN[i]}") for i, day in enumerate(WEEKDAYS)},
    }
)
_NOT_FOUND = ("找不到这个地方：{place}。", "I couldn't find a place called {place}.")
_NO_FORECAST = ("{place}暂时没有{label}的预报。", "There is no forecast for {place} {label} yet.")
_UNAVAILABLE = (
    "抱歉，天气服务暂时无法访问，请稍后再试。",
    "Sorry, the weather service is unavailable right now. Please try again later.",
)


class WeatherProvider(Protocol):
    """Where the weather comes from (``adapters.open_meteo.OpenMeteo`` in production)."""

    def current(self, place: str, language: str) -> CurrentWeather | None:
        """The weather at ``place`` now, None when no such place exists; raises ``WeatherUnavailable``."""
        ...

    def daily(self, place: str, language: str, days: int) -> DailyForecast | None:
        """``days`` days of forecast (1 to 16) from the place's today, None for no such place; raises
        ``WeatherUnavailable``."""
        ...


class WeatherSkill(BaseSkill):
    """Current temperature and conditions for a place named in the message or asked for."""

    #: Harmless: a website's visitors may ask too.
    visitors = True

    def __init__(self, provider: WeatherProvider) -> None:
        super().__init__(
            name="weather", description="获取实时天气信息 / current weather", triggers=TRIGGERS, examples=EXAMPLES
        )
        self._provider = provider

    def execute(self, context: dict[str, Any]) -> str | SkillResult:
        message = str(context.get("message") or "")
        zh = (context.get("language") or detect_language(message)) == "zh"
        slots = context.get("slots") or {}
        # The message's own day first; then one carried over a follow-up question (or read by the dispatcher).
        day = extract_day(message) or (slots.get(DAY) if slots.get(DAY) in DAYS else None)
        rain = _RAIN.search(normalize(message)) is not None or slots.get(ABOUT) == "rain"
        location = self._location(context, message)
        if not location:
            # Today is what an answer without a day gives anyway.
            carried = {DAY: day} if day and day != "today" else {}
            if rain:
                carried[ABOUT] = "rain"
            return SkillResult.question("哪个城市？" if zh else "Which city?", slot=LOCATION, slots=carried)
        try:
            if day is None and not rain:
                weather = self._provider.current(location, "zh" if zh else "en")
                return format_weather(weather, zh) if weather else _say(_NOT_FOUND, zh, place=location)
            # A rain question without a day is about the rest of today.
            return self._forecast(location, day or "today", rain, zh)
        except WeatherUnavailable as exc:
            # Not the place: it comes from the user's message.
            logger.warning("weather service unavailable: %s", exc)
            return _UNAVAILABLE[0] if zh else _UNAVAILABLE[1]
        except Exception as exc:
            # A provider bug must not cost the user an answer. No exception message: it may quote the place.
            logger.error("weather provider failed: %s", trace_without_messages(exc))
            return _UNAVAILABLE[0] if zh else _UNAVAILABLE[1]

    def _forecast(self, location: str, day: str, rain: bool, zh: bool) -> str:
        language = "zh" if zh else "en"
        now = None
        if day == "today":
            # Today's answer leads with the weather now, then the rest of the day.
            now = self._provider.current(location, language)
            if now is None:
                return _say(_NOT_FOUND, zh, place=location)
        forecast = self._provider.daily(location, language, _SPAN.get(day, 14 if day.startswith("next_") else 7))
        if forecast is None or not forecast.days:
            return _say(_NOT_FOUND, zh, place=location)
        wanted = resolve_day(day, forecast.days[0].date)
        picked = [d for d in forecast.days if d.date in wanted]
        label = _LABELS[day][0 if zh else 1]
        if not picked:
            return _say(_NO_FORECAST, zh, place=forecast.place, label=label)
        if now is not None:
            today = _format_day(picked[0], rain, zh)
            return f"{format_weather(now, zh)}今天{today}。" if zh else f"{format_weather(now, zh)} Today: {today}."
        if day.endswith("weekend"):
            # Each day under its own name, even when only Sunday is left.
            days = [f"{_weekday(d.date, zh)}{'' if zh else ' '}{_format_day(d, rain, zh)}" for d in picked]
            body = "；".join(days) if zh else "; ".join(days)
        else:
            body = _format_day(picked[0], rain, zh)
        return f"{forecast.place}{label}：{body}。" if zh else f"{forecast.place} {label}: {body}."

    def _location(self, context: dict[str, Any], message: str) -> str:
        slots = context.get("slots") or {}
        answered = str(slots.get(LOCATION) or "").strip()
        if context.get("answering") == LOCATION and answered:
            # A bare answer such as "上海" or "London" is already the place; keep it if cleaning leaves nothing.
            return location_answer(answered, TRIGGERS)
        return extract_location(message) or extract_location(answered)


def format_weather(weather: CurrentWeather, zh: bool) -> str:
    """One sentence: "上海当前气温 8.3℃，多云。" or "London: 8.3°C, overcast."."""
    temperature = _format_temperature(weather.temperature_c)
    names = WMO_CODES.get(weather.weather_code)
    if zh:
        condition = f"，{names[0]}" if names else ""
        return f"{weather.place}当前气温 {temperature}℃{condition}。"
    condition = f", {names[1]}" if names else ""
    return f"{weather.place}: {temperature}°C{condition}."


def _format_day(day: DayForecast, rain: bool, zh: bool) -> str:
    """One day without its name: "小雨，最高 14℃，最低 9℃，降水概率 80%" or "light rain, high 14°C, low 9°C"."""
    names = WMO_CODES.get(day.weather_code)
    high, low = _format_temperature(day.temperature_max_c), _format_temperature(day.temperature_min_c)
    if zh:
        parts = [names[0]] if names else []
        parts += [f"最高 {high}℃", f"最低 {low}℃"]
        if rain and day.precipitation_probability is not None:
            parts.append(f"降水概率 {day.precipitation_probability}%")
        return "，".join(parts)
    parts = [names[1]] if names else []
    parts += [f"high {high}°C", f"low {low}°C"]
    if rain and day.precipitation_probability is not None:
        parts.append(f"{day.precipitation_probability}% chance of rain")
    return ", ".join(parts)


def _weekday(when: date, zh: bool) -> str:
    return _WEEKDAYS_ZH[when.weekday()] if zh else _WEEKDAYS_EN[when.weekday()]


def _say(messages: tuple[str, str], zh: bool, **values: str) -> str:
    return (messages[0] if zh else messages[1]).format(**values)


def extract_location(text: str) -> str:
    """The place a weather question is about, or "" when it names none (``pipeline.slots.extract_location``)."""
    return slots_extract_location(text, TRIGGERS)


def _format_temperature(value: float) -> str:
    rounded = round(value, 1)
    if rounded == 0:
        return "0"  # not "-0"
    return f"{rounded:.1f}".removesuffix(".0")
