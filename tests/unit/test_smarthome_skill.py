"""The smart-home skill with the real hassil and Home Assistant's real sentence templates, through the real
dispatcher: commands in Chinese and English, the request's area, numbers, state questions, a follow-up question."""

from __future__ import annotations

from typing import Any

import pytest

from adapters.home_state import MemoryHomeState
from pipeline.devices import DevicesConfig
from pipeline.dialogue import DialogueState
from pipeline.envelope import Envelope, Reply, new_id
from pipeline.weather import CurrentWeather, DailyForecast
from skills.builtin import HelpSkill, TimeSkill, WeatherSkill
from skills.dispatcher import dispatch
from skills.registry import SkillRegistry
from skills.smarthome import SmartHomeSkill
from skills.smarthome.numbers import digits_for_numerals

HOME: dict[str, Any] = {
    "areas": [
        {"id": "living_room", "name": "客厅", "aliases": ["living room"]},
        {"id": "bedroom", "name": "卧室", "aliases": ["bedroom"]},
    ],
    "devices": [{"id": "bedroom-speaker", "area": "bedroom"}],
    "entities": [
        {"id": "light.ceiling", "name": "客厅灯", "aliases": ["living room light"], "area": "living_room",
         "state": "off"},
        {"id": "light.bedroom_lamp", "name": "卧室灯", "aliases": ["bedroom lamp"], "area": "bedroom", "state": "off"},
        {"id": "climate.bedroom_ac", "name": "空调", "aliases": ["thermostat"], "area": "bedroom", "state": "cool",
         "attributes": {"current_temperature": 26}},
        {"id": "cover.curtains", "name": "客厅窗帘", "aliases": ["living room curtains"], "area": "living_room",
         "state": "closed", "attributes": {"device_class": "curtain"}},
        {"id": "lock.front_door", "name": "大门", "aliases": ["front door"], "area": "living_room",
         "state": "locked"},
        {"id": "media_player.tv", "name": "电视", "aliases": ["TV"], "area": "living_room", "state": "playing"},
        {"id": "vacuum.robot", "name": "扫地机器人", "aliases": ["robot vacuum"], "area": "living_room",
         "state": "docked"},
        {"id": "scene.movie", "name": "观影模式", "aliases": ["movie mode"]},
        {"id": "sensor.kitchen_temperature", "name": "厨房温度", "state": "23.5",
         "attributes": {"device_class": "temperature", "unit_of_measurement": "°C"}},
    ],
}  # fmt: skip


class NoWeather:
    def current(self, place: str, language: str) -> CurrentWeather | None:
        return None

    def daily(self, place: str, language: str, days: int) -> DailyForecast | None:
        return None


class Session:
    """One conversation through the real dispatcher, with the request's area as the edge would set it."""

    def __init__(self, registry: SkillRegistry, area: str | None = None) -> None:
        self.registry = registry
        self.state = DialogueState()
        self.session_id = new_id()
        self.area = area
        self.seq = 0

    def say(self, text: str) -> Reply | None:
        self.seq += 1
        context = {"area": self.area} if self.area else {}
        envelope = Envelope(message_id=new_id(), session_id=self.session_id, channel="web", user_id="alice",
                            roles=("user",), text=text, seq=self.seq, context=context)  # fmt: skip
        outcome = dispatch(envelope, self.state, self.registry, lambda skill, ctx: skill.execute(ctx))
        self.state = outcome.state
        return outcome.reply


@pytest.fixture(scope="module")
def devices() -> DevicesConfig:
    return DevicesConfig.from_mapping(HOME)


@pytest.fixture
def home_state() -> MemoryHomeState:
    return MemoryHomeState()


@pytest.fixture
def registry(devices: DevicesConfig, home_state: MemoryHomeState) -> SkillRegistry:
    registry = SkillRegistry()
    registry.add(TimeSkill())
    registry.add(WeatherSkill(NoWeather()))
    registry.add(HelpSkill(registry.describe))
    registry.add(SmartHomeSkill(devices, home_state))
    return registry


def answer(registry: SkillRegistry, text: str, area: str | None = None) -> Reply:
    reply = Session(registry, area).say(text)
    assert reply is not None and reply.skill == "smarthome", (text, reply)
    return reply


def only_action(reply: Reply) -> dict[str, Any]:
    assert len(reply.actions) == 1, reply.actions
    return reply.actions[0]


def test_a_chinese_command(registry: SkillRegistry) -> None:
    reply = answer(registry, "打开卧室灯")
    assert reply.text == "卧室灯已打开。"
    assert only_action(reply) == {
        "type": "intent",
        "intent": "HassTurnOn",
        "slots": {"name": "卧室灯"},
        "targets": ["light.bedroom_lamp"],
        "service": "light.turn_on",
        "data": {},
    }


def test_an_english_command(registry: SkillRegistry) -> None:
    reply = answer(registry, "turn off the bedroom lamp")
    assert reply.text == "Turned off the bedroom lamp."
    action = only_action(reply)
    assert action["intent"] == "HassTurnOff" and action["slots"]["name"] == "bedroom lamp"
    assert action["targets"] == ["light.bedroom_lamp"] and action["service"] == "light.turn_off"


@pytest.mark.parametrize("area", ["卧室", "bedroom", "BEDROOM"])
def test_the_request_s_area_picks_the_lights(registry: SkillRegistry, area: str) -> None:
    for text in ("开灯", "turn on the lights"):
        action = only_action(answer(registry, text, area=area))
        assert action["targets"] == ["light.bedroom_lamp"], text
        assert action["slots"]["area"] == "卧室"  # the area's name as the devices file writes it


def test_all_the_lights(registry: SkillRegistry) -> None:
    for text in ("关掉所有的灯", "turn off all the lights"):
        action = only_action(answer(registry, text))
        assert action["intent"] == "HassTurnOff" and action["service"] == "light.turn_off"
        assert sorted(action["targets"]) == ["light.bedroom_lamp", "light.ceiling"], text


def test_politeness_and_punctuation(registry: SkillRegistry) -> None:
    for text in ("能不能帮我打开卧室灯？", "请打开卧室灯，谢谢！", "Hey, could you turn on the bedroom lamp please?"):
        assert only_action(answer(registry, text))["targets"] == ["light.bedroom_lamp"], text


def test_an_area_and_a_domain(registry: SkillRegistry) -> None:
    action = only_action(answer(registry, "把客厅的灯打开"))
    assert action["slots"] == {"area": "客厅", "domain": "light"} and action["targets"] == ["light.ceiling"]


def test_numbers_are_numbers(registry: SkillRegistry) -> None:
    brightness = only_action(answer(registry, "把卧室灯亮度调到50%"))
    assert brightness["intent"] == "HassLightSet" and brightness["slots"]["brightness"] == 50
    assert isinstance(brightness["slots"]["brightness"], int) and brightness["data"] == {"brightness_pct": 50}
    colour = answer(registry, "make the bedroom lamp red")
    assert only_action(colour)["slots"]["color"] == "red" and only_action(colour)["data"] == {"color_name": "red"}
    assert colour.text == "Turned the bedroom lamp red."
    assert answer(registry, "把卧室灯调成蓝色").text == "已把卧室灯调成蓝色。"
    half = only_action(answer(registry, "把空调调到22.5度"))
    assert half["service"] == "climate.set_temperature" and half["data"] == {"temperature": 22.5}
    whole = only_action(answer(registry, "set the thermostat to 21 degrees"))
    assert whole["slots"]["temperature"] == 21 and isinstance(whole["slots"]["temperature"], int)
    position = only_action(answer(registry, "set living room curtains to 30%"))
    assert position["service"] == "cover.set_cover_position" and position["data"] == {"position": 30}
    words = only_action(answer(registry, "把空调调到二十二点五度"))
    assert words["slots"]["temperature"] == 22.5 and words["data"] == {"temperature": 22.5}
    assert only_action(answer(registry, "把卧室灯的亮度调到百分之三十"))["data"] == {"brightness_pct": 30}
    volume = only_action(answer(registry, "把电视的音量调到40"))
    assert volume["service"] == "media_player.volume_set" and volume["data"] == {"volume_level": 0.4}


def test_locks_covers_media_vacuum_and_scenes(registry: SkillRegistry) -> None:
    cases = {
        "锁上大门": "lock.lock", "unlock the front door": "lock.unlock", "打开客厅窗帘": "cover.open_cover",
        "close the living room curtains": "cover.close_cover", "暂停电视": "media_player.media_pause",
        "next track on the TV": "media_player.media_next_track", "开始扫地": "vacuum.start",
        "扫地机器人回去充电": "vacuum.return_to_base", "activate movie mode": "scene.turn_on",
    }  # fmt: skip
    for text, service in cases.items():
        assert only_action(answer(registry, text))["service"] == service, text


def test_state_questions_come_from_remembered_state(registry: SkillRegistry, home_state: MemoryHomeState) -> None:
    reply = answer(registry, "客厅的灯开着吗")
    assert reply.text == "不，客厅灯关着。"  # the devices file's state, nothing remembered yet
    action = only_action(reply)
    assert action["intent"] == "HassGetState" and action["service"] is None and action["targets"] == ["light.ceiling"]
    home_state.set("light.ceiling", "on")
    assert answer(registry, "客厅的灯开着吗").text == "是的，客厅灯开着。"
    assert answer(registry, "is the living room light on?").text == "Yes, the living room light is on."
    home_state.set("lock.front_door", "unlocked")
    assert answer(registry, "is the front door locked").text == "No, the front door is unlocked."


def test_temperature_questions(registry: SkillRegistry, home_state: MemoryHomeState) -> None:
    reply = answer(registry, "what is the temperature in the bedroom?")
    assert reply.text == "It is 26°C in the bedroom."
    assert only_action(reply)["intent"] == "HassClimateGetTemperature"
    home_state.set("climate.bedroom_ac", "heat", {"current_temperature": 19.5})
    assert answer(registry, "卧室温度是多少").text == "卧室现在19.5°C。"


def test_an_unclear_request_asks_and_the_answer_resolves_it(registry: SkillRegistry) -> None:
    session = Session(registry)
    question = session.say("开灯")
    assert question is not None and question.expects_reply and not question.actions
    assert question.text == "您指的是哪一个：客厅灯还是卧室灯？"
    reply = session.say("卧室的")
    assert reply is not None and reply.text == "卧室灯已打开。"
    assert only_action(reply)["targets"] == ["light.bedroom_lamp"]
    english = Session(registry)
    asked = english.say("turn on the lights")
    assert asked is not None and asked.text == "Which one do you mean: the living room light or the bedroom lamp?"
    both = english.say("both")
    assert both is not None and sorted(only_action(both)["targets"]) == ["light.bedroom_lamp", "light.ceiling"]


def test_nothing_to_act_on_is_said_plainly(registry: SkillRegistry) -> None:
    assert answer(registry, "打开卧室的窗帘").text == "卧室没有能这样操作的设备。"
    assert answer(registry, "open the bedroom curtains").text == "There is nothing in the bedroom I can do that with."
    unknown = answer(registry, "打开书房的灯")
    assert unknown.text == "家里没有叫“书房”的地方。" and unknown.actions == ()
    assert answer(registry, "turn off the lights in the study").text == "There is no area called “study” in the home."


def test_other_messages_are_left_alone(registry: SkillRegistry) -> None:
    skill = registry.get("smarthome")
    assert skill is not None
    for text in ("现在几点", "今天天气怎么样", "上海天气", "what time is it", "what's the weather like in London",
                 "tell me a joke", "你好", "help", "打开微信", "what is the meaning of life", ""):  # fmt: skip
        assert skill.match(text) == 0, text
    assert registry.match("现在几点") is registry.get("time")
    assert registry.match("上海天气") is registry.get("weather")
    assert registry.match("卧室温度是多少") is skill  # the home's rooms are the home's


@pytest.mark.parametrize(
    ("said", "read"),
    [
        ("把空调调到二十五度", "把空调调到25度"), ("亮度调到百分之一百", "亮度调到百分之100"),
        ("温度调到十九点五度", "温度调到19.5度"), ("音量开到五十吧", "音量开到50吧"),
        ("开一下灯", "开一下灯"), ("打开一楼的灯", "打开一楼的灯"), ("十分钟后提醒我", "十分钟后提醒我"),
    ],
)  # fmt: skip
def test_chinese_amounts_become_digits(said: str, read: str) -> None:
    assert digits_for_numerals(said) == read
