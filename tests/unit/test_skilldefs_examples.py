"""``examples`` in a skill definition sent over REST: validated, kept in order, carried into the skill."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.skilldefs import EXAMPLE_CHARS_MAX, EXAMPLES_MAX, SkillDefinition, SkillDefinitionError
from skills.declarative import DeclarativeSkill


def body(**extra: Any) -> dict[str, Any]:
    return {"name": "lamp", "description": "开灯 / lights", "triggers": ["开灯"], "response": "好的。", **extra}


def test_examples_are_optional() -> None:
    definition = SkillDefinition.from_request(body())
    assert definition.examples == ()
    assert definition.to_dict()["examples"] == []
    assert SkillDefinition.from_request(body(examples=None)).examples == ()


def test_examples_are_stripped_in_order_without_repeats() -> None:
    definition = SkillDefinition.from_request(body(examples=[" 屋里太暗了 ", "turn the lights on", "屋里太暗了"]))
    assert definition.examples == ("屋里太暗了", "turn the lights on")
    assert definition.to_dict()["examples"] == ["屋里太暗了", "turn the lights on"]


@pytest.mark.parametrize(
    "examples",
    [
        "屋里太暗了",  # a string, not a list
        {"a": "b"},
        [""],
        ["   "],
        ["ok", 3],
        [None],
        ["x" * (EXAMPLE_CHARS_MAX + 1)],
        ["句子"] * (EXAMPLES_MAX + 1),
        ["bad\x00nul"],
    ],
)
def test_bad_examples_name_the_field(examples: Any) -> None:
    with pytest.raises(SkillDefinitionError) as raised:
        SkillDefinition.from_request(body(examples=examples))
    assert "examples" in str(raised.value) or "NUL" in str(raised.value)


def test_the_limits_themselves_are_allowed() -> None:
    many = [f"第{i}句" for i in range(EXAMPLES_MAX)]
    assert len(SkillDefinition.from_request(body(examples=many)).examples) == EXAMPLES_MAX
    longest = "好" * EXAMPLE_CHARS_MAX
    assert SkillDefinition.from_request(body(examples=[longest])).examples == (longest,)


def test_a_declarative_skill_carries_its_examples() -> None:
    skill = DeclarativeSkill(SkillDefinition.from_request(body(examples=["屋里太暗了", "it's too dark in here"])))
    assert skill.examples == ["屋里太暗了", "it's too dark in here"]
    assert skill.describe()["examples"] == ["屋里太暗了", "it's too dark in here"]


@pytest.mark.parametrize("name", ["__none__", "__anything"])
def test_names_starting_with_two_underscores_are_reserved(name: str) -> None:
    with pytest.raises(SkillDefinitionError, match="reserved"):
        SkillDefinition.from_request(body(name=name))
