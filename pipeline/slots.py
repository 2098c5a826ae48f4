"""Slots read from a message before a skill runs: the place it names (``location``) and the day (``day``)."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from datetime import date, timedelta
from types import MappingProxyType

from pipeline.language import is_cjk
from pipeline.places import EN_PLACES, ZH_PLACE_SUFFIXES, ZH_PLACES

LOCATION = "location"
DAY = "day"

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
#: What the ``day`` slot holds: a day relative to today, or a weekday (the next one, today included).
DAYS = frozenset(
    {"today", "tomorrow", "day_after_tomorrow", "in_3_days", "weekend", "next_weekend"}
    | set(WEEKDAYS)
    | {f"next_{name}" for name in WEEKDAYS}
)
_OFFSETS = MappingProxyType({"today": 0, "tomorrow": 1, "day_after_tomorrow": 2, "in_3_days": 3})


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# --- the day ----------------------------------------------------------------------------------------------------------

_ZH_WEEKDAY = MappingProxyType(dict(zip("一二三四五六日天", (*WEEKDAYS, "sunday"), strict=True)))
# Leftmost match wins, and at one position the first alternative: "大后天" before "后天", "下周末" before "周末".
# "周天" is not Sunday here: "这一周天气" would read as one.
_ZH_DAY = re.compile(
    r"(?P<in_3_days>大后天|大後天)|(?P<day_after_tomorrow>后天|後天)"
    r"|(?P<tomorrow>明天|明日|明早|明晚|明晨|明儿)|(?P<today>今天|今日|今晚|今早|今夜|今晨|今儿)"
    r"|(?P<next_weekend>下个?周末)|(?P<weekend>(?:这个?|本)?周末)"
    r"|下个?(?:周(?P<next_a>[一二三四五六日])|(?:星期|礼拜)(?P<next_b>[一二三四五六日天]))"
    r"|周(?P<this_a>[一二三四五六日])|(?:星期|礼拜)(?P<this_b>[一二三四五六日天])"
)
_EN_WEEKDAY = "|".join(WEEKDAYS)
_EN_DAY = re.compile(
    r"\b(?:(?P<day_after_tomorrow>(?:the\s+)?day\s+after\s+tomorrow)|(?P<tomorrow>tomorrow|tmrw)"
    r"|(?P<today>today|tonight|this\s+(?:morning|afternoon|evening))"
    r"|(?P<next_weekend>next\s+weekend)|(?P<weekend>weekend)"
    rf"|next\s+(?P<next_weekday>{_EN_WEEKDAY})|(?P<weekday>{_EN_WEEKDAY}))\b"
)


def extract_day(text: str) -> str | None:
    """The day a message asks about as one of ``DAYS`` ("明天" → ``tomorrow``), or None when it names none."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    for pattern in (_ZH_DAY, _EN_DAY):
        found = pattern.search(folded)
        if found is None:
            continue
        name, value = next((k, v) for k, v in found.groupdict().items() if v)
        if name in ("next_a", "next_b"):
            return f"next_{_ZH_WEEKDAY[value]}"
        if name in ("this_a", "this_b"):
            return _ZH_WEEKDAY[value]
        if name in ("next_weekday", "weekday"):
            return f"next_{value}" if name == "next_weekday" else value
        return name
    return None


def resolve_day(day: str, today: date) -> tuple[date, ...]:
    """The dates ``day`` (one of ``DAYS``) means when it is ``today``; a weekend is its days still to come.

    "next ..." is the week after this one (Monday to Sunday); a bare weekday is the next one, today included.
    """
    if day in _OFFSETS:
        return (today + timedelta(days=_OFFSETS[day]),)
    monday = today - timedelta(days=today.weekday())
    if day == "weekend":
        return tuple(d for d in (monday + timedelta(days=5), monday + timedelta(days=6)) if d >= today)
    if day == "next_weekend":
        return (monday + timedelta(days=12), monday + timedelta(days=13))
    if day.startswith("next_") and day[5:] in WEEKDAYS:
        return (monday + timedelta(days=7 + WEEKDAYS.index(day[5:])),)
    if day in WEEKDAYS:
        return (today + timedelta(days=(WEEKDAYS.index(day) - today.weekday()) % 7),)
    raise ValueError(f"not a day: {day!r}")


# --- the place --------------------------------------------------------------------------------------------------------

_PREFIXES = ("", "这", "这个", "本", "下", "下个")
_ZH_DAY_WORDS = frozenset(
    [f"{p}{w}{d}" for p in _PREFIXES for w in ("星期", "礼拜") for d in "一二三四五六日天"]
    + [f"{p}周{d}" for p in _PREFIXES for d in "一二三四五六日末"]
)
# Chinese words around the place name: removed wherever they appear, longest first so that "天气预报" goes before
# "天气" and leaves no "预报" behind.
_ZH_PHRASES = _ZH_DAY_WORDS | _words("""
    天气 气温 温度 下雨 天气预报 天气情况 预报 下雪 刮风 冷不冷 热不热 冷吗 热吗 几度 多少度 多少
    雨伞 带伞 打伞 降水 降雨 概率 凉快 暖和
    今天 今日 今晚 今早 今夜 今晨 现在 目前 当前 实时 此刻 明天 明日 明早 明晚 明晨 后天 大后天 昨天
    早上 上午 中午 下午 晚上 夜里 白天 这周 本周 下周 这几天 最近 未来几天
    怎么样 怎样 如何 怎么 什么样 咋样 情况
    请问 查询 查一下 查查 一下 告诉我 我想知道 想知道 帮我 给我 看看 看一下
    会不会 是不是 有没有 要不要 外面 那边 这边 那里 这里
""")
_ZH_PHRASE_PATTERN = re.compile("|".join(re.escape(p) for p in sorted(_ZH_PHRASES, key=lambda p: (-len(p), p))))
# Single characters that are fillers only at the edges of what is left ("北京的", "在上海"),
# never removed from the middle, where they may belong to a place name.
_ZH_LEADING = frozenset("请查问在去到")
_ZH_TRAILING = frozenset("的吗呢啊呀吧么嘛了会是有要")
_ZH_ENGLISH_WORDS = re.compile(r"(?i)\b(weather|temperature|forecast|rain|umbrella)\b")

# English words that are never the place: stripped from both ends of the candidate.
_EN_FILLERS = _words(f"""
    weather temperature forecast rain raining rainy umbrella snow snowing
    a about after an and any are at be bring but can chance check could current currently day degrees do does
    find for get give going gonna hey hi hot cold warm sunny windy how how's hows i in is it it's its know let
    let's lets like look me need next now of on out outside please right should show take tell the there this to
    up want today tonight tomorrow morning afternoon evening night week weekend what what's whats will would you
    weather's conditions s {" ".join(WEEKDAYS)}
""")
_EN_PREPOSITIONS = ("in", "for", "at")
_EN_TOKEN = re.compile(r"\w[\w'’.\-]*")


def extract_location(text: str, ignore: Iterable[str] = ()) -> str:
    """The place a question is about, or "" when it names none: what is left once the words around it are gone.

    Generous: it takes the message for a place question, so "幸福里天气" gives "幸福里". ``ignore`` adds words that
    are not the place (a skill's triggers). ``known_location`` is the careful variant.
    """
    text = unicodedata.normalize("NFKC", text).strip()
    if not text:
        return ""
    if any(is_cjk(ch) for ch in text):
        return _extract_zh(text, ignore)
    return _extract_en(text, ignore)


def location_answer(text: str, ignore: Iterable[str] = ()) -> str:
    """The place in an answer to "which city?": "上海吧" → "上海"; a bare answer stays as it is ("Today")."""
    return extract_location(text, ignore) or re.sub(r"^[\W_]+|[\W_]+$", "", text)


def known_location(text: str, ignore: Iterable[str] = ()) -> str:
    """The place a message names, or "" unless what is left reads as one.

    Careful, for any skill's message: the leftover counts when it is a well-known place, a Chinese name with an
    administrative ending ("杭州", "昆山市"), or capitalized after "in" or "at" ("in Springfield").
    """
    found = extract_location(text, ignore)
    if not found:
        return ""
    if any(is_cjk(ch) for ch in found):
        if not all(is_cjk(ch) for ch in found) or not 2 <= len(found) <= 8:
            return ""
        return found if found in ZH_PLACES or found.endswith(ZH_PLACE_SUFFIXES) else ""
    spelled = EN_PLACES.get(found.casefold())
    if spelled is not None:
        return spelled
    named = all(word[:1].isupper() for word in found.split())
    introduced = re.search(rf"(?i)\b(?:in|at)\s+{re.escape(found)}", unicodedata.normalize("NFKC", text))
    return found if named and introduced else ""


def extract_slots(text: str, ignore: Iterable[str] = ()) -> dict[str, str]:
    """The generic slots of a message: ``location`` (``known_location``) and ``day`` (``extract_day``), if found."""
    ignore = tuple(ignore)
    slots = {LOCATION: known_location(text, ignore), DAY: extract_day(text) or ""}
    return {name: value for name, value in slots.items() if value}


def _extract_zh(text: str, ignore: Iterable[str]) -> str:
    # A skill's own words first, then the common ones in one pass: at each position the longest phrase goes.
    for phrase in sorted({w for w in ignore if any(is_cjk(ch) for ch in w)}, key=lambda w: (-len(w), w)):
        text = text.replace(phrase, " ")
    text = _ZH_PHRASE_PATTERN.sub(" ", text)
    # English words can sit in a Chinese sentence too ("上海 weather").
    text = _ZH_ENGLISH_WORDS.sub(" ", text)
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


def _extract_en(text: str, ignore: Iterable[str]) -> str:
    fillers = _EN_FILLERS | {word for phrase in ignore for word in _fold_en(phrase).split()}
    tokens = _EN_TOKEN.findall(text)
    folded = [_fold_en(t) for t in tokens]
    # "weather in London today": the place follows the first preposition that has one after it.
    for index, word in enumerate(folded):
        if word in _EN_PREPOSITIONS:
            found = _strip_fillers(tokens[index + 1 :], fillers)
            if found:
                return found
    return _strip_fillers(tokens, fillers)


def _strip_fillers(tokens: list[str], fillers: frozenset[str]) -> str:
    start, end = 0, len(tokens)
    while start < end and _fold_en(tokens[start]) in fillers:
        start += 1
    while end > start and _fold_en(tokens[end - 1]) in fillers:
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
