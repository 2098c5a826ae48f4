"""A plugin written like the seed's own example reads the place from the message (``context.get("location",
"北京")``), and so does one that asked for it, through the real HTTP API of the embedded pipeline. The module runs
its own embedded pipeline (the in-memory broker is one per process: no other pipeline may run beside it)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from weather_http_support import Api, embedded_api

# The seed's plugin example, word for word: it takes the built-in weather skill's place (same name).
SEED_EXAMPLE = """
from skills.base import BaseSkill


class WeatherSkill(BaseSkill):
    def __init__(self):
        super().__init__(name="weather", description="获取实时天气信息", triggers=["天气", "气温"])

    def execute(self, context):
        location = context.get("location", "北京")
        return f"{location}当前气温：25℃"
"""

# A plugin that asks for the city when the message names none, and reads the answer the same way.
HOTEL = """
from skills.base import BaseSkill, SkillResult


class HotelSkill(BaseSkill):
    def __init__(self):
        super().__init__(name="hotel", description="订酒店", triggers=["酒店"])

    def execute(self, context):
        if "location" not in context:
            return SkillResult.question("哪个城市？", slot="location")
        day = context.get("day", "today")
        return f"正在查找{context['location']}的酒店（{day}，{context['slots']['location']}）。"
"""


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, open_meteo: Any, serve: Any) -> Iterator[Api]:
    root = tmp_path_factory.mktemp("seed-skill")
    skills_dir = root / "skills"
    skills_dir.mkdir()
    (skills_dir / "weather.py").write_text(SEED_EXAMPLE, encoding="utf-8")
    (skills_dir / "hotel.py").write_text(HOTEL, encoding="utf-8")
    yield from embedded_api(root, open_meteo, serve, skills_dir)


@pytest.mark.parametrize(
    ("message", "answer"),
    [
        ("上海气温", "上海当前气温：25℃"),
        ("杭州明天的天气怎么样？", "杭州当前气温：25℃"),
        ("气温多少", "北京当前气温：25℃"),  # no place named: the example's default
    ],
)
def test_the_seed_example_answers_for_the_place_named(api: Api, message: str, answer: str) -> None:
    reply = api.say(message)
    assert (reply["skill"], reply["text"]) == ("weather", answer)


def test_a_place_given_in_a_follow_up_is_read_the_same_way(api: Api) -> None:
    assert api.say("明天订酒店")["text"] == "哪个城市？"
    assert api.say("上海吧")["text"] == "正在查找上海的酒店（tomorrow，上海）。"
    assert api.say("后天杭州的酒店")["text"] == "正在查找杭州的酒店（day_after_tomorrow，杭州）。"
