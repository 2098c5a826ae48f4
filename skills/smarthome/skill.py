"""The smart-home skill: commands and state questions about the devices file's entities, in Chinese and English."""

from __future__ import annotations

import json
import logging
from typing import Any

from pipeline.devices import Area, DevicesConfig, Entity
from pipeline.home_state import HomeState
from pipeline.language import detect_language, normalize
from skills.base import BaseSkill, SkillResult
from skills.smarthome import replies
from skills.smarthome.actions import QUESTIONS, UNKNOWN_PLACE, Targets, intent_actions, resolve
from skills.smarthome.recognizer import Recognition, SmartHomeRecognizer

logger = logging.getLogger(__name__)

#: The slot the answer to "which one?" fills, and the slot keeping the request meanwhile.
CHOICE_SLOT = "smarthome_choice"
REQUEST_SLOT = "smarthome_request"
#: The score of a recognized smart-home request: above any trigger word, so "卧室温度是多少" is the home's, not
#: the weather's.
MATCH_SCORE = 100
#: Answers that mean "all of them".
ALL_WORDS = frozenset({"都", "全部", "所有", "都要", "都开", "都关", "两个都", "all", "both", "all of them", "every"})
#: Sentences that reach most of hassil's lazily built tables (names, numbers) in both languages, whatever the home.
WARM_UP = (
    ("打开灯", "zh"), ("灯的亮度调到50%", "zh"), ("温度调到26.5度", "zh"), ("音量调到30", "zh"), ("卧室灯开着吗", "zh"),
    ("turn on the lights", "en"), ("set the lights brightness to 50%", "en"), ("make it 24.5 degrees", "en"),
    ("set the volume to 30", "en"), ("is the lamp on", "en"),
)  # fmt: skip
#: States that count as "off" when a question asks whether something is on (any other counts as on).
_OFF_STATES = frozenset({"off", "closed", "unavailable", "unknown", "standby", "docked", "idle", "unlocked"})


class SmartHomeSkill(BaseSkill):
    """Understands requests with Home Assistant's sentence templates (hassil) and answers with intent actions."""

    #: The household's own (people and devices): it switches devices and tells the home's state, so never a
    #: website's visitors.
    roles = ("user", "admin", "device")
    visitors = False

    def __init__(self, devices: DevicesConfig, home_state: HomeState) -> None:
        super().__init__(
            name="smarthome",
            description="控制家里的灯、空调、窗帘、门锁等设备 / control the lights, climate, covers, locks and more",
        )
        self.devices = devices
        self.home_state = home_state
        self.recognizer = SmartHomeRecognizer(devices)

    def warm_up(self) -> None:
        """Compile both languages' templates and fill hassil's caches, so the first request does not wait ~0.2 s.
        Never raises: a failure here is logged, and the first request tries again."""
        try:
            for text, language in WARM_UP:
                self.recognizer.recognize(text, language)
        except Exception:
            logger.exception("warming the smart-home matcher failed")

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "examples": ["打开卧室灯", "客厅的灯开着吗？", "turn off all the lights"]}

    def match(self, text: str) -> int:
        """A high score when hassil recognizes ``text`` as a smart-home request, else 0."""
        return MATCH_SCORE if self.recognizer.recognize(text.strip(), detect_language(text)) else 0

    def execute(self, context: dict[str, Any]) -> str | SkillResult:
        text = str(context.get("message") or "").strip()
        language = context.get("language") or detect_language(text)
        language = language if language in replies.TEXTS else "en"
        area = self._area(context.get("area"))
        slots = context.get("slots") or {}
        if context.get("answering") == CHOICE_SLOT and isinstance(slots.get(REQUEST_SLOT), str):
            return self._answer_choice(str(slots.get(CHOICE_SLOT) or text), slots[REQUEST_SLOT], language)
        readings, chosen = self.understand(text, language, area)
        if not readings:
            return SkillResult(text=replies.TEXTS[language]["not_found"])
        if chosen is None:
            return self._not_found(readings, language)
        reading, targets = chosen
        if targets.unclear:
            return self._ask_which(reading, targets.entities, language)
        return self._carry_out(reading, targets.entities, language)

    def understand(
        self, text: str, language: str, area: Area | None
    ) -> tuple[tuple[Recognition, ...], tuple[Recognition, Targets] | None]:
        """Every reading of ``text`` said in ``area``, and the first that points at entities with those."""
        readings = self.recognizer.recognize(text, language, area.name if area else None)
        for reading in readings:
            targets = resolve(reading, self.devices, area.id if area else None)
            if targets.entities:
                return readings, (reading, targets)
        return readings, None

    def _area(self, value: Any) -> Area | None:
        if not isinstance(value, str) or not value.strip():
            return None
        return self.devices.area_named(value)

    # Commands and questions

    def _carry_out(self, reading: Recognition, entities: tuple[Entity, ...], language: str) -> SkillResult:
        actions = intent_actions(reading, entities)
        if reading.intent in QUESTIONS:
            return SkillResult(text=self._state_answer(reading, entities, language), actions=tuple(actions))
        if not actions:
            names = replies.join([replies.display_name(e, language) for e in entities], language)
            return SkillResult(text=replies.TEXTS[language]["cannot"].format(names=names))
        sentences = []
        for action in actions:
            chosen = [e for e in entities if e.id in action["targets"]]
            said = reading.slots.get("name")
            names = replies.join([replies.display_name(e, language, said) for e in chosen], language)
            sentences.append(replies.done(action["service"], names, action["data"], reading.said, language))
        return SkillResult(text=("" if language == "zh" else " ").join(sentences), actions=tuple(actions))

    def _current(self, entity: Entity) -> tuple[str | None, dict[str, Any]]:
        """The remembered state, else the devices file's."""
        remembered = self.home_state.get(entity.id)
        if remembered is not None:
            return remembered.state, {**entity.attributes, **remembered.attributes}
        return entity.state, dict(entity.attributes)

    def _state_answer(self, reading: Recognition, entities: tuple[Entity, ...], language: str) -> str:
        texts = replies.TEXTS[language]
        parts: list[str] = []
        unknown: list[str] = []
        matches: list[bool] = []
        asked = reading.slots.get("state")
        for entity in entities:
            state, attributes = self._current(entity)
            name = replies.display_name(entity, language, reading.slots.get("name"))
            if reading.intent == "HassClimateGetTemperature":
                value = attributes.get("current_temperature") if entity.domain == "climate" else state
                if value is None:
                    unknown.append(name)
                    continue
                unit = str(attributes.get("unit_of_measurement") or "°C")
                place = self._place(entity, language) or name
                parts.append(texts["temperature"].format(place=place, value=f"{replies.number(_num(value))}{unit}"))
                continue
            if state is None:
                unknown.append(name)
                continue
            if isinstance(asked, str):
                matches.append(_is(state, asked))
            if entity.domain == "sensor":
                unit = attributes.get("unit_of_measurement") or ""
                parts.append(texts["value"].format(name=name, value=f"{state}{unit}"))
            else:
                parts.append(texts["state"].format(name=name, state=replies.state_word(state, language)))
        if unknown:
            parts.append(texts["unknown_state"].format(names=replies.join(unknown, language)).rstrip("。."))
        body = texts["sep"].join(replies.capitalized(p) if language == "en" else p for p in parts) + texts["end"]
        if matches and (all(matches) or not any(matches)):
            lead = texts["yes"] if all(matches) else texts["no"]
            # "Yes, the front door is locked." but "Yes, TV is on.": only "The"/"It" lose their capital.
            if language == "en" and body.startswith(("The ", "It ")):
                body = body[:1].lower() + body[1:]
            return lead + body
        return replies.capitalized(body)

    def _place(self, entity: Entity, language: str) -> str | None:
        area = self.devices.area(entity.area) if entity.area else None
        if area is None:
            return None
        name = replies.area_display(area.names, language)
        return name if language == "zh" else replies.with_article(name)

    # Unclear and unknown targets

    def _ask_which(self, reading: Recognition, entities: tuple[Entity, ...], language: str) -> SkillResult:
        options = [self._option(e, entities, language) for e in entities]
        texts = replies.TEXTS[language]
        question = texts["which"].format(options=replies.join(options, language, texts["or"]))
        request = {
            "intent": reading.intent,
            "slots": reading.slots,
            "said": reading.said,
            "ask": reading.ask_when_unclear,
            "candidates": [e.id for e in entities],
        }
        return SkillResult.question(question, CHOICE_SLOT, {REQUEST_SLOT: json.dumps(request, ensure_ascii=False)})

    def _option(self, entity: Entity, entities: tuple[Entity, ...], language: str) -> str:
        name = replies.display_name(entity, language)
        same = [e for e in entities if replies.display_name(e, language) == name]
        place = self._place(entity, language) if len(same) > 1 else None
        if place is None:
            return name
        return f"{place}的{name}" if language == "zh" else f"{name} in {place}"

    def _answer_choice(self, answer: str, request_json: str, language: str) -> str | SkillResult:
        try:
            request = json.loads(request_json)
            reading = Recognition(
                str(request["intent"]), dict(request["slots"]), dict(request.get("said") or {}), bool(request["ask"])
            )
            candidates = [e for i in request["candidates"] if (e := self.devices.entity(str(i))) is not None]
        except (ValueError, KeyError, TypeError):
            logger.warning("a kept smart-home request could not be read; the answer is taken as a new message")
            return SkillResult(text=replies.TEXTS[language]["not_found"])
        chosen = _chosen(answer, candidates, self.devices)
        if not chosen:
            again = self._ask_which(reading, tuple(candidates), language)
            texts = replies.TEXTS[language]
            text = texts["choice_again"].format(question=again.text)
            return SkillResult(text=text, ask=text, slot=CHOICE_SLOT, slots=again.slots)
        return self._carry_out(reading, tuple(chosen), language)

    def _not_found(self, readings: tuple[Recognition, ...], language: str) -> SkillResult:
        texts = replies.TEXTS[language]
        unknown = next((r.slots[UNKNOWN_PLACE] for r in readings if isinstance(r.slots.get(UNKNOWN_PLACE), str)), None)
        if unknown is not None and not any("area" in r.slots or "name" in r.slots for r in readings):
            return SkillResult(text=texts["no_place"].format(place=str(unknown).removeprefix("the ").strip()))
        reading = readings[0]
        name, area = reading.slots.get("name"), reading.slots.get("area")
        if isinstance(name, str):
            return SkillResult(text=texts["not_found_name"].format(name=name))
        if isinstance(area, str):
            return SkillResult(text=texts["not_found_area"].format(area=area))
        return SkillResult(text=texts["not_found"])


def _chosen(answer: str, candidates: list[Entity], devices: DevicesConfig) -> list[Entity]:
    """The candidates an answer to "which one?" picks: by name or alias, by area, or all of them."""
    folded = normalize(answer).strip("，。！？").strip(",.!? ")
    if not folded:
        return []
    if folded in ALL_WORDS or any(word in folded for word in ("都", "全部", "所有")) or folded.startswith("all"):
        return list(candidates)
    # The answer names the entity ("床头灯", "the floor lamp"), or is part of a name ("落地"), never one letter of it.
    by_name = [
        e for e in candidates
        if any(normalize(n) in folded or (len(folded) > 1 and folded in normalize(n)) for n in e.names)
    ]  # fmt: skip
    if len(by_name) == 1:
        return by_name
    pool = by_name or candidates
    by_area = []
    for entity in pool:
        area = devices.area(entity.area) if entity.area else None
        if area is not None and any(normalize(n) in folded for n in area.names):
            by_area.append(entity)
    return by_area or by_name


def _is(state: str, asked: str) -> bool:
    if asked == "on":
        return state not in _OFF_STATES
    if asked == "off":
        return state in _OFF_STATES
    return state == asked


def _num(value: Any) -> Any:
    try:
        return float(value)
    except (TypeError, ValueError):
        return value
