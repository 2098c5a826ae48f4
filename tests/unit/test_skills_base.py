"""Trigger matching, the skill registry and declarative skills."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from pipeline.skilldefs import SkillDefinition
from skills.base import BaseSkill, SkillResult
from skills.declarative import DeclarativeSkill, reply_text
from skills.registry import SkillRegistry


class Echo(BaseSkill):
    def __init__(self, name: str, triggers: list[str], description: str = "") -> None:
        super().__init__(name=name, description=description, triggers=triggers)

    def execute(self, context: dict[str, Any]) -> str:
        return self.name


def context(message: str, language: str = "zh", **extra: Any) -> dict[str, Any]:
    return {
        "message": message,
        "language": language,
        "session_id": "s1",
        "user_id": "u1",
        "roles": [],
        "channel": "web",
        "message_id": "m1",
        "slots": {},
        "answering": None,
        "history": [],
        **extra,
    }


# --- BaseSkill.match -------------------------------------------------------------------------


def test_chinese_trigger_matches_as_substring() -> None:
    skill = Echo("weather", ["天气"])
    assert skill.match("上海天气怎么样") == 2
    assert skill.match("今天天气") == 2
    assert skill.match("上海气温") == 0


def test_english_trigger_matches_whole_words_only() -> None:
    skill = Echo("time", ["time"])
    assert skill.match("what time is it?") == 4
    assert skill.match("Time!") == 4
    assert skill.match("sometimes I wonder") == 0
    assert skill.match("timeout") == 0
    assert skill.match("time2") == 0


def test_matching_folds_case_and_width() -> None:
    skill = Echo("weather", ["Weather"])
    assert skill.match("WEATHER in London") == 7
    assert skill.match("ＷＥＡＴＨＥＲ？") == 7
    assert Echo("x", ["ＴＶ"]).match("turn on the tv") == 2


def test_multi_word_trigger_tolerates_extra_spaces() -> None:
    skill = Echo("time", ["what day"])
    assert skill.match("What  day is it") == 8
    assert skill.match("whatday") == 0


def test_latin_trigger_next_to_chinese_matches() -> None:
    assert Echo("w", ["weather"]).match("查weather怎么样") == 7


def test_longest_trigger_found_is_the_score() -> None:
    skill = Echo("time", ["几号", "今天几号"])
    assert skill.match("今天几号?") == 4
    assert skill.match("明天几号") == 2


def test_blank_and_bare_string_triggers() -> None:
    skill = Echo("x", ["", "  ", "\u3000"])
    assert skill.triggers == []
    assert skill.match("anything at all") == 0
    # A bare string is one trigger, not one per character.
    single = BaseSkill("y", triggers="天气")
    assert single.triggers == ["天气"]
    assert single.match("天") == 0


def test_describe_and_missing_execute() -> None:
    skill = BaseSkill("plain", "does nothing", ["x"])
    assert skill.describe() == {
        "name": "plain", "description": "does nothing", "triggers": ["x"], "examples": [],
        "roles": ["user", "admin", "device"], "visitors": False,
    }  # fmt: skip
    with pytest.raises(NotImplementedError):
        skill.execute(context("x"))
    with pytest.raises(ValueError):
        BaseSkill("")


def test_skill_result_question() -> None:
    result = SkillResult.question("哪个城市？", slot="location", slots={"a": "b"})
    assert result.ask == result.text == "哪个城市？"
    assert result.slot == "location"
    assert result.slots == {"a": "b"}


# --- SkillRegistry ---------------------------------------------------------------------------


def test_registry_longest_trigger_wins() -> None:
    registry = SkillRegistry([Echo("weather", ["天气"]), Echo("forecast", ["天气预报"])])
    chosen = registry.match("明天的天气预报")
    assert chosen is not None and chosen.name == "forecast"
    chosen = registry.match("上海天气")
    assert chosen is not None and chosen.name == "weather"


def test_registry_tie_goes_to_the_earlier_skill() -> None:
    first, second = Echo("first", ["天气"]), Echo("second", ["气温", "天气"])
    assert SkillRegistry([first, second]).match("天气") is first
    assert SkillRegistry([second, first]).match("天气") is second


def test_registry_no_match_is_none() -> None:
    registry = SkillRegistry([Echo("time", ["time"])])
    assert registry.match("sometimes") is None
    assert registry.match("") is None
    assert SkillRegistry().match("time") is None


def test_registry_add_replaces_in_place_remove_get() -> None:
    a, b, c = Echo("a", ["x"]), Echo("b", ["y"]), Echo("c", ["z"])
    registry = SkillRegistry([a, b, c])
    newer_b = Echo("b", ["x"])
    registry.add(newer_b)
    assert registry.names() == ["a", "b", "c"]
    assert registry.get("b") is newer_b
    assert registry.match("x") is a  # replaced skill kept b's position, after a
    assert registry.remove("a") is True
    assert registry.remove("a") is False
    assert registry.get("a") is None
    assert len(registry) == 2
    assert [s.name for s in registry] == ["b", "c"]
    assert "c" in registry
    assert registry.describe() == [newer_b.describe(), c.describe()]
    with pytest.raises(TypeError):
        registry.add("not a skill")  # type: ignore[arg-type]


def test_registry_skips_a_skill_whose_match_raises() -> None:
    class Broken(BaseSkill):
        def match(self, text: str) -> int:
            raise RuntimeError("bug")

    good = Echo("good", ["天气"])
    assert SkillRegistry([Broken("broken", triggers=["天气"]), good]).match("天气") is good


def definition(name: str, triggers: tuple[str, ...], **kwargs: Any) -> SkillDefinition:
    return SkillDefinition(name=name, description=f"{name} skill", triggers=triggers, **kwargs)


def test_replace_declarative_swaps_only_database_skills() -> None:
    builtin = Echo("time", ["time"])
    registry = SkillRegistry([builtin])
    registry.replace_declarative([DeclarativeSkill(definition("hours", ("营业时间",), response="9-5"))])
    registry.add(Echo("plugin", ["plug"]))
    assert registry.names() == ["time", "hours", "plugin"]

    registry.replace_declarative(
        [
            DeclarativeSkill(definition("faq", ("常见问题",), response="见官网")),
            # Declarative skills may not shadow a built-in: skipped.
            DeclarativeSkill(definition("time", ("time",), response="hijacked")),
        ]
    )
    assert registry.names() == ["time", "plugin", "faq"]
    assert registry.get("time") is builtin

    registry.replace_declarative([])
    assert registry.names() == ["time", "plugin"]
    with pytest.raises(ValueError):
        registry.replace_declarative([Echo("plain", ["p"])])


def test_registry_readers_see_whole_sets_while_a_writer_swaps() -> None:
    registry = SkillRegistry([Echo("time", ["time"])])
    sets = [
        [DeclarativeSkill(definition(f"d{i}", (f"word{i}",), response="r")) for i in range(3)],
        [DeclarativeSkill(definition(f"e{i}", (f"word{i}",), response="r")) for i in range(3)],
    ]
    stop = threading.Event()
    seen: list[list[str]] = []

    def reader() -> None:
        while not stop.is_set():
            seen.append(registry.names())

    thread = threading.Thread(target=reader)
    thread.start()
    for n in range(300):
        registry.replace_declarative(sets[n % 2])
    stop.set()
    thread.join()
    allowed = {("time",), ("time", "d0", "d1", "d2"), ("time", "e0", "e1", "e2")}
    assert seen and all(tuple(names) in allowed for names in seen)


# --- DeclarativeSkill ------------------------------------------------------------------------


def test_declarative_response_skill() -> None:
    skill = DeclarativeSkill(definition("hours", ("营业时间", "opening hours"), response="每天 9:00-18:00"))
    assert skill.declarative is True
    assert skill.match("你们的营业时间是?") == 4
    assert skill.execute(context("营业时间")) == "每天 9:00-18:00"
    assert skill.describe()["name"] == "hours"


def test_declarative_webhook_sends_context_and_uses_text() -> None:
    calls: list[tuple[str, dict[str, Any]]] = []

    def post_json(url: str, body: dict[str, Any]) -> Any:
        calls.append((url, body))
        return {"text": "订单已发货"}

    skill = DeclarativeSkill(definition("order", ("订单",), webhook="http://hook.example/o"), post_json)
    assert skill.execute(context("我的订单", slots={"k": "v"})) == "订单已发货"
    url, body = calls[0]
    assert url == "http://hook.example/o"
    assert body == {
        "message": "我的订单",
        "language": "zh",
        "session_id": "s1",
        "user_id": "u1",
        "channel": "web",
        "slots": {"k": "v"},
        "message_id": "m1",
        "skill": "order",
    }


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ({"text": "a"}, "a"),
        ({"reply": "b"}, "b"),
        ({"text": "", "reply": "c"}, "c"),
        ("plain", "plain"),
        ({"text": 5}, None),
        ({}, None),
        ("  ", None),
        (None, None),
        ([1, 2], None),
    ],
)
def test_reply_text(answer: Any, expected: str | None) -> None:
    assert reply_text(answer) == expected


def test_declarative_webhook_failures_are_polite() -> None:
    def failing(url: str, body: dict[str, Any]) -> Any:
        raise ConnectionError("refused")

    def useless(url: str, body: dict[str, Any]) -> Any:
        return {"status": "ok"}

    hook = definition("order", ("order",), webhook="http://hook.example/o")
    assert DeclarativeSkill(hook, failing).execute(context("订单")) == "抱歉，这个功能暂时不可用。"
    assert (
        DeclarativeSkill(hook, useless).execute(context("order", "en")) == "Sorry, that skill is unavailable right now."
    )
    assert DeclarativeSkill(hook).execute(context("order", "en")) == "Sorry, that skill is unavailable right now."


def test_registered_skill_wins_a_tie_with_a_builtin() -> None:
    registry = SkillRegistry([Echo("weather", ["天气"])])
    registry.replace_declarative([DeclarativeSkill(definition("shop_weather", ("天气",), response="晴"))])
    matched = registry.match("天气")
    assert matched is not None and matched.name == "shop_weather"
    # A longer trigger still wins over a registered skill's shorter one.
    registry.add(Echo("forecast", ["天气预报"]))
    matched = registry.match("天气预报")
    assert matched is not None and matched.name == "forecast"
