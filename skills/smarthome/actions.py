"""From a recognized intent to entities, Home Assistant services and their data."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pipeline.devices import DevicesConfig, Entity
from pipeline.language import normalize
from skills.smarthome.recognizer import Recognition

#: The domains each intent acts on (None: any).
INTENT_DOMAINS: dict[str, frozenset[str] | None] = {
    "HassTurnOn": frozenset({"light", "switch", "fan", "cover", "climate", "lock", "valve", "media_player", "vacuum",
                             "scene", "script"}),
    "HassTurnOff": frozenset({"light", "switch", "fan", "cover", "climate", "lock", "valve", "media_player", "vacuum",
                              "script"}),
    "HassLightSet": frozenset({"light"}),
    "HassClimateSetTemperature": frozenset({"climate"}),
    "HassClimateGetTemperature": frozenset({"climate", "sensor"}),
    "HassSetPosition": frozenset({"cover", "valve"}),
    "HassMediaPause": frozenset({"media_player"}),
    "HassMediaUnpause": frozenset({"media_player"}),
    "HassMediaNext": frozenset({"media_player"}),
    "HassMediaPrevious": frozenset({"media_player"}),
    "HassSetVolume": frozenset({"media_player"}),
    "HassMediaPlayerMute": frozenset({"media_player"}),
    "HassMediaPlayerUnmute": frozenset({"media_player"}),
    "HassVacuumStart": frozenset({"vacuum"}),
    "HassVacuumReturnToBase": frozenset({"vacuum"}),
    "HassFanSetSpeed": frozenset({"fan"}),
    "HassGetState": None,
}  # fmt: skip

#: Services that differ from ``<domain>.turn_on`` / ``<domain>.turn_off``.
_ON = {"cover": "cover.open_cover", "lock": "lock.lock", "valve": "valve.open_valve", "vacuum": "vacuum.start"}
_OFF = {"cover": "cover.close_cover", "lock": "lock.unlock", "valve": "valve.close_valve",
        "vacuum": "vacuum.return_to_base"}  # fmt: skip
_FIXED = {
    "HassMediaPause": "media_player.media_pause",
    "HassMediaUnpause": "media_player.media_play",
    "HassMediaNext": "media_player.media_next_track",
    "HassMediaPrevious": "media_player.media_previous_track",
    "HassSetVolume": "media_player.volume_set",
    "HassMediaPlayerMute": "media_player.volume_mute",
    "HassMediaPlayerUnmute": "media_player.volume_mute",
    "HassVacuumStart": "vacuum.start",
    "HassVacuumReturnToBase": "vacuum.return_to_base",
    "HassClimateSetTemperature": "climate.set_temperature",
    "HassLightSet": "light.turn_on",
    "HassFanSetSpeed": "fan.set_percentage",
}
#: The slot of a place caught by a wildcard (``打开书房的灯``), which may name no area of the home.
UNKNOWN_PLACE = "sh_place"
#: Intents that ask rather than act.
QUESTIONS = frozenset({"HassGetState", "HassClimateGetTemperature"})


@dataclass(frozen=True, slots=True)
class Targets:
    """The entities a reading points at."""

    #: What the request acts on or asks about.
    entities: tuple[Entity, ...] = ()
    #: Several fit and nothing tells them apart: ask which.
    unclear: bool = False


def resolve(reading: Recognition, devices: DevicesConfig, area: str | None) -> Targets:
    """The entities ``reading`` means; ``area`` is the id of the request's area (its device's, or the one it
    named), which narrows an unclear request as Home Assistant's satellites do."""
    slots = reading.slots
    allowed = INTENT_DOMAINS.get(reading.intent)
    found = [e for e in devices.entities if allowed is None or e.domain in allowed]
    name = slots.get("name")
    if isinstance(name, str):
        folded = normalize(name)
        found = [e for e in found if folded in {normalize(n) for n in e.names}]
    area_name = slots.get("area")
    if isinstance(area_name, str):
        named = devices.area_named(area_name)
        found = [e for e in found if named is not None and e.area == named.id]
    place = slots.get(UNKNOWN_PLACE)
    if isinstance(place, str):
        # Caught by a wildcard: a place the devices file may not have ("书房"); none such, nothing to act on.
        named = devices.area_named(place.removeprefix("the ").strip())
        found = [e for e in found if named is not None and e.area == named.id]
        area_name = place
    floor_name = slots.get("floor")
    if isinstance(floor_name, str):
        folded = normalize(floor_name)
        floors = {f.id for f in devices.floors if folded in {normalize(n) for n in f.names}}
        on_floor = {a.id for a in devices.areas if a.floor in floors}
        found = [e for e in found if e.area in on_floor]
    domains = _as_set(slots.get("domain"))
    if domains:
        found = [e for e in found if e.domain in domains]
    device_classes = _as_set(slots.get("device_class"))
    if device_classes:
        found = [e for e in found if e.attributes.get("device_class") in device_classes]
    if reading.intent == "HassClimateGetTemperature":
        found = _thermometers(found)
    placed = isinstance(area_name, str) or isinstance(floor_name, str)
    if len(found) > 1 and not placed and (isinstance(name, str) or reading.ask_when_unclear):
        # Several fit a bare name or a bare command: the request's own area decides, then the user.
        here = [e for e in found if area is not None and e.area == area]
        if here:
            return Targets(tuple(here))
        return Targets(tuple(found), unclear=True)
    return Targets(tuple(found))


def _thermometers(found: list[Entity]) -> list[Entity]:
    # A thermostat reports the room's temperature; without one, a temperature sensor does.
    climate = [e for e in found if e.domain == "climate"]
    if climate:
        return climate
    return [e for e in found if e.domain == "sensor" and e.attributes.get("device_class") == "temperature"]


def _as_set(value: Any) -> set[str]:
    if isinstance(value, str):
        return {value}
    if isinstance(value, list | tuple | set | frozenset):
        return {str(v) for v in value}
    return set()


def service_for(intent: str, domain: str) -> str | None:
    """The Home Assistant service ``intent`` calls on an entity of ``domain``; None for questions and for
    entities the intent cannot act on."""
    if intent in QUESTIONS:
        return None
    allowed = INTENT_DOMAINS.get(intent)
    if allowed is not None and domain not in allowed:
        return None
    if intent == "HassTurnOn":
        return _ON.get(domain, f"{domain}.turn_on")
    if intent == "HassTurnOff":
        return _OFF.get(domain, f"{domain}.turn_off")
    if intent == "HassSetPosition":
        return "valve.set_valve_position" if domain == "valve" else "cover.set_cover_position"
    return _FIXED.get(intent)


def service_data(reading: Recognition) -> dict[str, Any]:
    """The data of the service call, in Home Assistant's field names."""
    slots = reading.slots
    data: dict[str, Any] = {}
    if reading.intent == "HassLightSet":
        if "brightness" in slots:
            data["brightness_pct"] = slots["brightness"]
        if "color" in slots:
            data["color_name"] = slots["color"]
        if isinstance(slots.get("temperature"), int | float):
            data["color_temp_kelvin"] = slots["temperature"]
    elif reading.intent == "HassClimateSetTemperature" and "temperature" in slots:
        data["temperature"] = slots["temperature"]
    elif reading.intent == "HassSetPosition" and "position" in slots:
        data["position"] = slots["position"]
    elif reading.intent == "HassSetVolume" and "volume_level" in slots:
        data["volume_level"] = round(float(slots["volume_level"]) / 100, 2)
    elif reading.intent in {"HassMediaPlayerMute", "HassMediaPlayerUnmute"}:
        data["is_volume_muted"] = reading.intent == "HassMediaPlayerMute"
    elif reading.intent == "HassFanSetSpeed" and "percentage" in slots:
        data["percentage"] = slots["percentage"]
    return data


def intent_actions(reading: Recognition, entities: Iterable[Entity]) -> list[dict[str, Any]]:
    """The reply's actions: one per service (a request over several domains calls several), or one without a
    service for a question."""
    entities = list(entities)
    slots = {k: v for k, v in reading.slots.items() if k != UNKNOWN_PLACE}
    base = {"type": "intent", "intent": reading.intent, "slots": slots}
    if reading.intent in QUESTIONS:
        return [{**base, "targets": [e.id for e in entities], "service": None, "data": {}}]
    by_service: dict[str, list[str]] = {}
    for entity in entities:
        service = service_for(reading.intent, entity.domain)
        if service is not None:
            by_service.setdefault(service, []).append(entity.id)
    data = service_data(reading)
    return [{**base, "targets": ids, "service": service, "data": dict(data)} for service, ids in by_service.items()]
