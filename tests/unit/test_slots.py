"""Slots read from the message (place and day), and how the dispatcher hands them to any skill."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.dialogue import DialogueState
from pipeline.envelope import Envelope, new_id
from pipeline.slots import DAYS, extract_day, extract_location, extract_slots, known_location, resolve_day
from skills.base import BaseSkill, SkillResult
from skills.dispatcher import dispatch
from skills.registry import SkillRegistry

# --- the day ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "day"),
    [
        ("明天上海会下雨吗", "tomorrow"),
        ("上海明早冷吗", "tomorrow"),
        ("今天要带伞吗", "today"),
        ("今晚北京多少度", "today"),
        ("后天杭州天气", "day_after_tomorrow"),
        ("大后天呢", "in_3_days"),
        ("这周末去苏州，天气怎么样", "weekend"),
        ("周末会下雨吗", "weekend"),
        ("下周末天气", "next_weekend"),
        ("周六天气", "saturday"),
        ("星期天北京天气", "sunday"),
        ("礼拜三会下雨吗", "wednesday"),
        ("下周一上海天气", "next_monday"),
        ("下个星期天呢", "next_sunday"),
        ("will it rain tomorrow in Beijing", "tomorrow"),
        ("Weather in London TODAY", "today"),
        ("is it cold tonight", "today"),
        ("rain this afternoon?", "today"),
        ("the day after tomorrow in Paris", "day_after_tomorrow"),
        ("London weather this weekend", "weekend"),
        ("weather next weekend", "next_weekend"),
        ("will it rain on Saturday", "saturday"),
        ("next Friday in Oslo", "next_friday"),
        ("ＴＯＭＯＲＲＯＷ", "tomorrow"),
    ],
)
def test_days_are_read(message: str, day: str) -> None:
    assert extract_day(message) == day
    assert day in DAYS


@pytest.mark.parametrize(
    "message",
    ["上海天气", "现在几点", "这一周天气怎么样", "星期几", "weather in London", "lazy sundays", "todays"],
)
def test_no_day(message: str) -> None:
    assert extract_day(message) is None


WEDNESDAY = date(2026, 11, 25)
SATURDAY = date(2026, 11, 28)
SUNDAY = date(2026, 11, 29)


@pytest.mark.parametrize(
    ("day", "today", "dates"),
    [
        ("today", WEDNESDAY, (WEDNESDAY,)),
        ("tomorrow", WEDNESDAY, (date(2026, 11, 26),)),
        ("day_after_tomorrow", WEDNESDAY, (date(2026, 11, 27),)),
        ("in_3_days", SUNDAY, (date(2026, 12, 2),)),
        ("weekend", WEDNESDAY, (SATURDAY, SUNDAY)),
        ("weekend", SATURDAY, (SATURDAY, SUNDAY)),
        ("weekend", SUNDAY, (SUNDAY,)),  # Saturday is over: what is left of it
        ("next_weekend", WEDNESDAY, (date(2026, 12, 5), date(2026, 12, 6))),
        ("next_weekend", SUNDAY, (date(2026, 12, 5), date(2026, 12, 6))),
        ("saturday", WEDNESDAY, (SATURDAY,)),
        ("wednesday", WEDNESDAY, (WEDNESDAY,)),  # a bare weekday includes today
        ("tuesday", WEDNESDAY, (date(2026, 12, 1),)),
        ("next_monday", WEDNESDAY, (date(2026, 11, 30),)),
        ("next_saturday", WEDNESDAY, (date(2026, 12, 5),)),
    ],
)
def test_days_resolve_to_dates(day: str, today: date, dates: tuple[date, ...]) -> None:
    assert resolve_day(day, today) == dates


def test_every_day_resolves_and_nothing_else_does() -> None:
    for day in DAYS:
        assert resolve_day(day, WEDNESDAY)
    with pytest.raises(ValueError, match="not a day"):
        resolve_day("someday", WEDNESDAY)


# --- the place --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "place"),
    [
        ("明天上海会下雨吗", "上海"),
        ("杭州热不热", "杭州"),
        ("上海气温", "上海"),
        ("下周六北京天气怎么样", "北京"),
        ("周末杭州会下雨吗", "杭州"),
        ("今天要带伞吗", ""),
        ("will it rain tomorrow in Beijing", "Beijing"),
        ("do I need an umbrella in New York tomorrow", "New York"),
        ("is it going to rain on Saturday in Paris", "Paris"),
        ("London weather the day after tomorrow", "London"),
        ("weather next weekend", ""),
    ],
)
def test_the_place_around_days_and_rain_words(message: str, place: str) -> None:
    assert extract_location(message) == place


@pytest.mark.parametrize(
    ("message", "place"),
    [
        ("上海气温", "上海"),
        ("杭州热不热", "杭州"),
        ("昆山市明天天气", "昆山市"),  # not in the list of well-known places, but an administrative name
        ("will it rain tomorrow in beijing", "Beijing"),  # a known place gets its usual spelling
        ("What time is it in Tokyo", "Tokyo"),
        ("weather next monday in Springfield", "Springfield"),  # capitalized after "in"
        ("上海 weather", "上海"),
    ],
)
def test_known_locations(message: str, place: str) -> None:
    assert known_location(message) == place


@pytest.mark.parametrize(
    "message",
    [
        "现在几点",
        "你都会些什么",
        "how do I use you",
        "明天会降温吗",
        "幸福里天气",
        "set an alarm for Tom",
        "in the app",
    ],
)
def test_leftovers_that_are_not_places(message: str) -> None:
    """The generous extraction takes any leftover for the place; the careful one, run for every skill, does not."""
    assert known_location(message) == ""


def test_a_skill_s_triggers_are_not_the_place() -> None:
    assert known_location("查一下深圳降温预警", ["降温预警"]) == "深圳"
    assert known_location("查一下深圳降温预警") == ""


@settings(database=None, max_examples=300, deadline=None)
@given(st.text(), st.lists(st.text(max_size=6), max_size=3))
def test_any_text_gives_slots_without_raising(text: str, ignore: list[str]) -> None:
    """The dispatcher runs this on every message before a skill: it must take anything."""
    slots = extract_slots(text, ignore)
    assert set(slots) <= {"location", "day"} and all(slots.values())
    assert slots.get("day", "today") in DAYS
    assert isinstance(extract_location(text, ignore), str)


def test_extract_slots() -> None:
    assert extract_slots("明天上海会下雨吗") == {"location": "上海", "day": "tomorrow"}
    assert extract_slots("杭州热不热") == {"location": "杭州"}
    assert extract_slots("现在几点") == {}


# --- in the dispatcher ------------------------------------------------------------------------------------------------


class SeedWeather(BaseSkill):
    """The seed's own plugin example, word for word."""

    def __init__(self) -> None:
        super().__init__(name="weather", description="获取实时天气信息", triggers=["天气", "气温"])

    def execute(self, context: dict[str, Any]) -> str:
        location = context.get("location", "北京")
        return f"{location}当前气温：25℃"


class Recorder(BaseSkill):
    """Asks for a city, then for a slot named like a context key ("channel"), and records every context it gets."""

    def __init__(self) -> None:
        super().__init__(name="trip", triggers=["旅行", "trip"])
        self.contexts: list[dict[str, Any]] = []

    def execute(self, context: dict[str, Any]) -> str | SkillResult:
        self.contexts.append(context)
        if "location" not in context["slots"]:
            return SkillResult.question("去哪里？", slot="location", slots={"day": "saturday", "party": "2"})
        if context["answering"] == "location":
            return SkillResult.question("怎么通知您？", slot="channel", slots=context["slots"])
        return "好的。"


class Chat:
    def __init__(self, *skills: BaseSkill) -> None:
        self.registry = SkillRegistry(skills)
        self.state = DialogueState()
        self.session_id = new_id()

    def say(self, text: str) -> str:
        envelope = Envelope(message_id=new_id(), session_id=self.session_id, channel="web", user_id="u",
                            roles=("user",), text=text)  # fmt: skip
        outcome = dispatch(envelope, self.state, self.registry, lambda skill, context: skill.execute(context))
        self.state = outcome.state
        assert outcome.reply is not None
        return outcome.reply.text


def test_the_seed_example_reads_the_place_from_the_message() -> None:
    chat = Chat(SeedWeather())
    assert chat.say("上海气温") == "上海当前气温：25℃"
    assert chat.say("杭州的天气怎么样？") == "杭州当前气温：25℃"
    assert chat.say("气温怎么样") == "北京当前气温：25℃"  # none named: the example's default


def test_extracted_slots_are_in_slots_and_at_the_top_level() -> None:
    trip = Recorder()
    chat = Chat(trip)
    chat.say("明天去杭州旅行")
    [context] = trip.contexts
    assert context["slots"] == {"location": "杭州", "day": "tomorrow"}
    assert (context["location"], context["day"]) == ("杭州", "tomorrow")
    assert context["message"] == "明天去杭州旅行"


def test_the_answer_wins_and_reserved_keys_are_never_replaced() -> None:
    trip = Recorder()
    chat = Chat(trip)
    assert chat.say("旅行") == "去哪里？"
    assert "location" not in trip.contexts[0] and trip.contexts[0]["slots"] == {}
    # The answer fills the slot, cleaned like a place; the carried day stays, and the message's own day beats it.
    assert chat.say("上海吧，周日") == "怎么通知您？"
    answered = trip.contexts[1]
    assert answered["slots"] == {"location": "上海", "day": "sunday", "party": "2"}
    assert (answered["location"], answered["day"], answered["party"]) == ("上海", "sunday", "2")
    assert answered["answering"] == "location"
    # A slot named like a reserved key stays in slots only.
    assert chat.say("发邮件") == "好的。"
    last = trip.contexts[2]
    assert last["slots"]["channel"] == "发邮件" and last["channel"] == "web"
    assert (last["location"], last["answering"], last["session_id"]) == ("上海", "channel", chat.session_id)


class Hotel(BaseSkill):
    """Asks for the city when the message names none; carries nothing itself."""

    def __init__(self) -> None:
        super().__init__(name="hotel", triggers=["酒店"])

    def execute(self, context: dict[str, Any]) -> str | SkillResult:
        if "location" not in context:
            return SkillResult.question("哪个城市？", slot="location")
        return f"{context['location']}，{context.get('day', 'today')}"


def test_what_the_asking_message_named_is_kept_for_the_answer() -> None:
    chat = Chat(Hotel())
    assert chat.say("明天订酒店") == "哪个城市？"
    assert chat.state.pending is not None and chat.state.pending.slots == {"day": "tomorrow"}
    assert chat.say("上海吧") == "上海，tomorrow"
    assert chat.say("杭州的酒店") == "杭州，today"  # a new request starts afresh
