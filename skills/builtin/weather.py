"""The built-in weather skill: finds the place in the message and asks a weather provider."""

from __future__ import annotations

import logging
import re
import unicodedata
from types import MappingProxyType
from typing import Any, Protocol

from pipeline.language import detect_language, is_cjk
from pipeline.logsafe import trace_without_messages
from pipeline.weather import CurrentWeather, WeatherUnavailable
from skills.base import BaseSkill, SkillResult

logger = logging.getLogger(__name__)

__all__ = ["CurrentWeather", "WeatherProvider", "WeatherSkill", "WeatherUnavailable", "extract_location"]

TRIGGERS = ("天气", "气温", "温度", "下雨", "weather", "temperature", "forecast")

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


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Chinese words around the place name: removed wherever they appear, longest first so that
# "天气预报" goes before "天气" and leaves no "预报" behind.
_ZH_PHRASES = tuple(
    sorted(
        frozenset(t for t in TRIGGERS if any(is_cjk(c) for c in t))
        | _words("""
        天气预报 天气情况 预报 下雪 刮风 冷不冷 热不热 几度 多少度 多少
        今天 今日 现在 目前 当前 实时 此刻 明天 后天 昨天 今晚 这几天 最近
        怎么样 怎样 如何 怎么 什么样 咋样 情况
        请问 查询 查一下 查查 一下 告诉我 我想知道 想知道 帮我 给我 看看 看一下
        会不会 是不是 有没有 要不要 外面 那边 这边 那里 这里
    """),
        key=lambda phrase: (-len(phrase), phrase),
    )
)
# Single characters that are fillers only at the edges of what is left ("北京的", "在上海"),
# never removed from the middle, where they may belong to a place name.
_ZH_LEADING = frozenset("请查问在去到")
_ZH_TRAILING = frozenset("的吗呢啊呀吧么嘛了会是有要")

# English words that are never the place: stripped from both ends of the candidate.
_EN_FILLERS = frozenset(t for t in TRIGGERS if not any(is_cjk(c) for c in t)) | _words("""
    a about an and any are at be but can check could current currently degrees do does find for get give
    going gonna hey hi hot cold warm sunny windy how how's hows i in is it it's its know let let's lets like
    look me now of out outside please rain raining snow snowing right show tell the there this to up want
    today tonight tomorrow morning afternoon evening night week weekend what what's whats will would you
    weather's conditions s
""")
_EN_PREPOSITIONS = ("in", "for", "at")
_EN_TOKEN = re.compile(r"\w[\w'’.\-]*")

_UNAVAILABLE = (
    "抱歉，天气服务暂时无法访问，请稍后再试。",
    "Sorry, the weather service is unavailable right now. Please try again later.",
)


class WeatherProvider(Protocol):
    """Where the weather comes from (``adapters.open_meteo.OpenMeteo`` in production)."""

    def current(self, place: str, language: str) -> CurrentWeather | None:
        """The weather at ``place`` now, None when no such place exists; raises ``WeatherUnavailable``."""
        ...


class WeatherSkill(BaseSkill):
    """Current temperature and conditions for a place named in the message or asked for."""

    def __init__(self, provider: WeatherProvider) -> None:
        super().__init__(
            name="weather", description="获取实时天气信息 / current weather", triggers=TRIGGERS, examples=EXAMPLES
        )
        self._provider = provider

    def execute(self, context: dict[str, Any]) -> str | SkillResult:
        message = str(context.get("message") or "")
        zh = (context.get("language") or detect_language(message)) == "zh"
        location = self._location(context, message)
        if not location:
            return SkillResult.question("哪个城市？" if zh else "Which city?", slot="location")
        try:
            weather = self._provider.current(location, "zh" if zh else "en")
        except WeatherUnavailable as exc:
            # Not the place: it comes from the user's message.
            logger.warning("weather service unavailable: %s", exc)
            return _UNAVAILABLE[0] if zh else _UNAVAILABLE[1]
        except Exception as exc:
            # A provider bug must not cost the user an answer. No exception message: it may quote the place.
            logger.error("weather provider failed: %s", trace_without_messages(exc))
            return _UNAVAILABLE[0] if zh else _UNAVAILABLE[1]
        if weather is None:
            return f"找不到这个地方：{location}。" if zh else f"I couldn't find a place called {location}."
        return format_weather(weather, zh)

    def _location(self, context: dict[str, Any], message: str) -> str:
        slots = context.get("slots") or {}
        answered = str(slots.get("location") or "").strip()
        if context.get("answering") == "location" and answered:
            # A bare answer such as "上海" or "London" is already the place; keep it if cleaning leaves nothing.
            return extract_location(answered) or _strip_punctuation(answered)
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


def extract_location(text: str) -> str:
    """The place a weather question is about, or "" when it names none."""
    text = unicodedata.normalize("NFKC", text).strip()
    if not text:
        return ""
    if any(is_cjk(ch) for ch in text):
        return _extract_zh(text)
    return _extract_en(text)


def _extract_zh(text: str) -> str:
    for phrase in _ZH_PHRASES:
        text = text.replace(phrase, " ")
    # English trigger words can sit in a Chinese sentence too ("上海 weather").
    text = re.sub(r"(?i)\b(weather|temperature|forecast)\b", " ", text)
    pieces = []
    for piece in re.split(r"[\s\W_]+", text):
        while piece and piece[0] in _ZH_LEADING:
            piece = piece[1:]
        while piece and piece[-1] in _ZH_TRAILING:
            piece = piece[:-1]
        if piece:
            pieces.append(piece)
    # Chinese place names hold no spaces; Latin ones ("New York") keep theirs.
    joiner = "" if all(any(is_cjk(ch) for ch in p) for p in pieces) else " "
    return joiner.join(pieces)


def _extract_en(text: str) -> str:
    tokens = _EN_TOKEN.findall(text)
    folded = [_fold_en(t) for t in tokens]
    # "weather in London today": the place follows the first preposition that has one after it.
    for index, word in enumerate(folded):
        if word in _EN_PREPOSITIONS:
            found = _strip_fillers(tokens[index + 1 :])
            if found:
                return found
    return _strip_fillers(tokens)


def _strip_fillers(tokens: list[str]) -> str:
    start, end = 0, len(tokens)
    while start < end and _fold_en(tokens[start]) in _EN_FILLERS:
        start += 1
    while end > start and _fold_en(tokens[end - 1]) in _EN_FILLERS:
        end -= 1
    words = tokens[start:end]
    if not words:
        return ""
    # Inner dots stay ("St. Louis"); the sentence's own punctuation and a possessive go.
    words[-1] = words[-1].rstrip(".'’-")
    if _fold_en(words[-1]).endswith("'s"):
        words[-1] = words[-1][:-2]  # "London's weather"
    return " ".join(w for w in words if w)


def _fold_en(token: str) -> str:
    return token.casefold().replace("’", "'").rstrip(".'-")


def _strip_punctuation(text: str) -> str:
    return re.sub(r"^[\W_]+|[\W_]+$", "", text)


def _format_temperature(value: float) -> str:
    rounded = round(value, 1)
    if rounded == 0:
        return "0"  # not "-0"
    return f"{rounded:.1f}".removesuffix(".0")
