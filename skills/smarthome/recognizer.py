"""Smart-home sentences understood with hassil: Home Assistant's templates plus ours, names from the devices file."""

from __future__ import annotations

import copy
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from hassil import Intents, TextSlotList, filter_intents, recognize_ranked
from home_assistant_intents import get_intents

from pipeline.devices import DevicesConfig
from skills.smarthome import templates
from skills.smarthome.numbers import digits_for_numerals

logger = logging.getLogger(__name__)

#: The intents this skill carries out or answers; Home Assistant's others (timers, weather, lists) are left to the
#: skills that own them.
HANDLED_INTENTS = frozenset(
    {
        "HassTurnOn", "HassTurnOff", "HassLightSet", "HassClimateSetTemperature", "HassClimateGetTemperature",
        "HassSetPosition", "HassMediaPause", "HassMediaUnpause", "HassMediaNext", "HassMediaPrevious",
        "HassSetVolume", "HassMediaPlayerMute", "HassMediaPlayerUnmute", "HassVacuumStart",
        "HassVacuumReturnToBase", "HassGetState", "HassFanSetSpeed",
    }
)  # fmt: skip
#: Our language codes and Home Assistant's.
HA_LANGUAGES = {"zh": "zh-CN", "en": "en"}
_OWN = {
    "zh": (templates.ZH, templates.ZH_RULES, templates.ZH_LISTS, templates.ZH_SKIP_WORDS),
    "en": (templates.EN, templates.EN_RULES, templates.EN_LISTS, templates.EN_SKIP_WORDS),
}
#: Recognitions remembered per (text, language, area): ``match`` and ``execute`` see the same message.
CACHE_SIZE = 512
#: Messages longer than this are not smart-home commands; hassil is not run on them.
MAX_TEXT = 120


@dataclass(frozen=True, slots=True)
class Recognition:
    """One reading of a message as a Home Assistant intent."""

    #: ``HassTurnOn``.
    intent: str
    #: Slot values as hassil gives them: names as written in the devices file, numbers as numbers.
    slots: dict[str, Any]
    #: The words said for each slot (``红色`` for ``color: red``), for the reply.
    said: dict[str, str] = field(default_factory=dict)
    #: True when the template says to ask which entity is meant when several fit and no area narrows them.
    ask_when_unclear: bool = False


class SmartHomeRecognizer:
    """Builds each language's matcher once, on first use, and remembers recent recognitions."""

    def __init__(self, devices: DevicesConfig, cache_size: int = CACHE_SIZE) -> None:
        self._devices = devices
        self._cache_size = cache_size
        self._intents: dict[str, Intents] = {}
        self._lock = threading.Lock()
        # hassil fills caches (slot-list tries, required clauses) on first use without locks, and one of them in two
        # steps another thread could see half done. Matching is pure Python under the GIL, so holding one lock
        # while matching costs a threaded worker no throughput.
        self._matching = threading.Lock()
        self._cache: OrderedDict[tuple[str, str, str | None], tuple[Recognition, ...]] = OrderedDict()
        self._slot_lists = _slot_lists(devices)

    def intents(self, language: str) -> Intents:
        built = self._intents.get(language)
        if built is None:
            with self._lock:
                built = self._intents.get(language)
                if built is None:
                    built = _build_intents(language, self._devices)
                    self._intents[language] = built
        return built

    def recognize(self, text: str, language: str, area: str | None = None) -> tuple[Recognition, ...]:
        """Every reading of ``text``, best first (empty: not a smart-home request). ``area`` is the name of the
        request's area, which bare commands ("开灯") act on."""
        if language not in HA_LANGUAGES or not text.strip() or len(text) > MAX_TEXT:
            return ()
        key = (text, language, area)
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                return cached
        found = self._recognize(text, language, area)
        with self._lock:
            self._cache[key] = found
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return found

    def _recognize(self, text: str, language: str, area: str | None) -> tuple[Recognition, ...]:
        context = {"area": {"value": area, "text": area}} if area else None
        intents = self.intents(language)
        if language == "zh":
            text = digits_for_numerals(text)  # "二十五度": the templates' number ranges read digits
        with self._matching:
            results = recognize_ranked(
                text,
                intents,
                slot_lists=self._slot_lists,
                intent_context=context,
                language=HA_LANGUAGES[language],
                best_slot_name="name",
            )
        readings: list[Recognition] = []
        for result in results:
            slots = {name: _number(entity.value) for name, entity in result.entities.items()}
            said = {name: entity.text.strip() or str(entity.value) for name, entity in result.entities.items()}
            metadata = result.intent_metadata or {}
            reading = Recognition(result.intent.name, slots, said, bool(metadata.get("ask_when_unclear")))
            if reading not in readings:
                readings.append(reading)
        return tuple(readings)


def _number(value: Any) -> Any:
    # hassil gives ranges as floats: 50.0 reads better, and compares equal, as 50.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _slot_lists(devices: DevicesConfig) -> dict[str, Any]:
    names: list[tuple[str, Any, dict[str, Any]]] = []
    for entity in devices.entities:
        context: dict[str, Any] = {"domain": entity.domain}
        if isinstance(entity.attributes.get("device_class"), str):
            context["device_class"] = entity.attributes["device_class"]
        names.extend((name, name, context) for name in entity.names)
    areas = [(name, name) for area in devices.areas for name in area.names]
    floors = [(name, name) for floor in devices.floors for name in floor.names]
    # Plain text, never templates: a name with brackets means the brackets.
    return {
        "name": TextSlotList.from_tuples(names, allow_template=False, name="name"),
        "area": TextSlotList.from_tuples(areas, allow_template=False, name="area"),
        "floor": TextSlotList.from_tuples(floors, allow_template=False, name="floor"),
    }


def _build_intents(language: str, devices: DevicesConfig) -> Intents:
    data = copy.deepcopy(get_intents(HA_LANGUAGES[language]))
    if data is None:
        raise RuntimeError(f"home-assistant-intents has no sentences for {language}")
    own, rules, lists, skip_words = _OWN[language]
    for intent, blocks in own.items():
        data["intents"].setdefault(intent, {"data": []})["data"].extend(copy.deepcopy(blocks))
    data["expansion_rules"] = {**data.get("expansion_rules", {}), **rules}
    data["lists"] = {**data.get("lists", {}), **copy.deepcopy(lists)}
    data["skip_words"] = [*data.get("skip_words", []), *skip_words]
    intents = Intents.from_dict(data)
    domains = {entity.domain for entity in devices.entities}
    return filter_intents(intents, intent_names=HANDLED_INTENTS, domains=domains)
