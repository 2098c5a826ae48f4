"""The devices file: Home Assistant's fixture shape, its defaults, its errors, and the device commands."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from assistant.config import load_devices
from pipeline.devices import DevicesConfig, checked_request_context, device_commands
from pipeline.errors import ConfigurationError

ROOT = Path(__file__).resolve().parents[2]

HOME: dict[str, Any] = {
    "language": "en",
    "floors": [{"id": "first", "name": "First floor", "aliases": ["downstairs"]}],
    "areas": [
        {"id": "bedroom", "name": "卧室", "aliases": ["Bedroom"], "floor": "first"},
        {"id": "kitchen", "name": "Kitchen"},
    ],
    "devices": [{"id": "bedroom-speaker", "area": "bedroom"}, {"id": "hall-speaker"}],
    "entities": [
        {"id": "light.bedroom_lamp", "name": "卧室灯", "aliases": ["bedroom lamp"], "area": "bedroom", "state": "off"},
        {"id": "switch.kettle", "name": "Kettle", "area": "Kitchen", "state": True,
         "attributes": {"command_topic": "kettle/cmd", "state_topic": "kettle/state"}},
        {"id": "sensor.outside", "name": "Outside", "state": {"in": "forty-two", "out": 42}},
        {"id": "scene.party_mode"},
    ],
}  # fmt: skip


def test_the_fixture_shape_is_read() -> None:
    home = DevicesConfig.from_mapping(HOME)
    assert [a.id for a in home.areas] == ["bedroom", "kitchen"]
    assert home.areas[0].names == ("卧室", "Bedroom") and home.areas[0].floor == "first"
    assert home.floors[0].names == ("First floor", "downstairs")
    lamp = home.entity("light.bedroom_lamp")
    assert lamp is not None and lamp.domain == "light" and lamp.object_id == "bedroom_lamp"
    assert lamp.aliases == ("bedroom lamp",) and lamp.state == "off"


def test_defaults() -> None:
    home = DevicesConfig.from_mapping(HOME)
    lamp, kettle, outside, party = home.entities
    assert lamp.command_topic == "home/bedroom/bedroom_lamp/set"
    assert lamp.state_topic == "home/bedroom/bedroom_lamp/state"
    assert kettle.area == "kitchen"  # named by its name, kept by id
    assert kettle.state == "on"  # YAML's bare true is a switch's on
    assert outside.state == "42"  # {in, out}: the state is what comes out
    assert outside.command_topic == "home/outside/set"  # no area: no area level
    assert party.name == "party mode" and party.state is None and party.attributes == {}


def test_topics_from_attributes_and_lookups() -> None:
    home = DevicesConfig.from_mapping(HOME)
    kettle = home.entity("switch.kettle")
    assert kettle is not None and kettle.command_topic == "kettle/cmd"
    assert home.entity_for_state_topic("kettle/state") is kettle
    assert home.entity_for_state_topic("home/bedroom/bedroom_lamp/state") == home.entity("light.bedroom_lamp")
    assert home.entity_for_state_topic("home/kitchen/kettle/state") is None
    assert home.area_of_device("bedroom-speaker") == "bedroom"
    assert home.area_of_device("hall-speaker") is None and home.area_of_device("nobody") is None
    assert home.device_ids() == ("bedroom-speaker", "hall-speaker")
    area = home.area_named("ＢＥＤＲＯＯＭ")
    assert area is not None and area.id == "bedroom"


def test_empty_and_missing_files(tmp_path: Path) -> None:
    assert DevicesConfig.from_mapping(None) == DevicesConfig()
    assert load_devices(tmp_path / "devices.yaml") is None  # no file: no smart home
    (tmp_path / "devices.yaml").write_text("", encoding="utf-8")
    assert load_devices(tmp_path / "devices.yaml") == DevicesConfig()


def test_the_sample_household_loads() -> None:
    home = load_devices(ROOT / "config" / "devices.example.yaml")
    assert home is not None
    assert {e.domain for e in home.entities} >= {"light", "fan", "cover", "climate", "lock", "media_player",
                                                   "vacuum", "scene", "sensor"}  # fmt: skip
    assert {a.name for a in home.areas} == {"客厅", "卧室", "厨房"}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d.update(entities="x"), "entities: must be a list"),
        (lambda d: d["entities"].append({"id": "lamp"}), "entities[4].id"),
        (lambda d: d["entities"].append({"id": "light.a/b"}), "entities[4].id"),
        (lambda d: d["entities"].append({"id": "light.x", "area": "attic"}), "entities[4].area: unknown area 'attic'"),
        (lambda d: d["entities"].append({"id": "light.bedroom_lamp"}), "id 'light.bedroom_lamp' appears twice"),
        (lambda d: d["entities"].append({"id": "light.x", "aliases": "lamp"}), "entities[4].aliases"),
        (lambda d: d["entities"].append({"id": "light.x", "attributes": ["a"]}), "entities[4].attributes"),
        (lambda d: d["entities"].append({"id": "light.x", "attributes": {"command_topic": "a/#"}}),
         "entities[4].attributes.command_topic"),
        (lambda d: d["entities"].append({"id": "light.x", "state": ["on"]}), "entities[4].state"),
        (lambda d: d["areas"].append({"name": "Hall"}), "areas[2].id: missing"),
        (lambda d: d["areas"].append({"id": "hall", "floor": "attic"}), "areas[2].floor: unknown floor 'attic'"),
        (lambda d: d["areas"].append({"id": "a+b"}), "areas[2].id"),
        (lambda d: d["devices"].append({"id": "x", "area": "attic"}), "devices[2].area: unknown area 'attic'"),
        (lambda d: d["devices"].append({"id": "bedroom-speaker"}), "devices: id 'bedroom-speaker' appears twice"),
        (lambda d: d["floors"].append("first"), "floors[1]: must be a mapping"),
    ],
)  # fmt: skip
def test_errors_name_the_bad_field(change: Any, field: str) -> None:
    data = yaml.safe_load(yaml.safe_dump(HOME, allow_unicode=True))
    change(data)
    with pytest.raises(ConfigurationError) as raised:
        DevicesConfig.from_mapping(data)
    assert field in str(raised.value)


def test_a_file_that_is_not_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "devices.yaml"
    path.write_text("- just\n- a list\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match=r"devices\.yaml"):
        load_devices(path)
    path.write_text("areas: [\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match="not valid YAML"):
        load_devices(path)


def test_device_commands() -> None:
    home = DevicesConfig.from_mapping(HOME)
    actions = [
        {"type": "intent", "intent": "HassTurnOn", "slots": {"name": "卧室灯"}, "targets": ["light.bedroom_lamp"],
         "service": "light.turn_on", "data": {"brightness_pct": 50}},
        {"type": "intent", "intent": "HassGetState", "slots": {}, "targets": ["switch.kettle"], "service": None,
         "data": {}},
        {"type": "intent", "intent": "HassTurnOff", "slots": {}, "targets": ["switch.kettle", "light.gone"],
         "service": "switch.turn_off", "data": {}},
        {"type": "link", "url": "https://example.com"},
    ]  # fmt: skip
    commands = device_commands(actions, home, "m-1", 1000.0, 30.0)
    assert [c.topic for c in commands] == ["home/bedroom/bedroom_lamp/set", "kettle/cmd"]
    assert commands[0].payload == {
        "service": "light.turn_on",
        "entity_id": "light.bedroom_lamp",
        "data": {"brightness_pct": 50},
        "message_id": "m-1",
        "issued_at": 1000.0,
        "expires_at": 1030.0,
    }
    assert commands[1].payload["service"] == "switch.turn_off" and commands[1].payload["data"] == {}


def test_request_context() -> None:
    assert checked_request_context(None) == {}
    assert checked_request_context({"area": " 卧室 "}) == {"area": "卧室"}
    for bad in (["卧室"], {"area": 1}, {"bad key": "x"}, {"area": "x" * 101}, {f"k{i}": "x" for i in range(9)},
                {"area": "a\x00b"}):  # fmt: skip
        with pytest.raises(ValueError):
            checked_request_context(bad)
