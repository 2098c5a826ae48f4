"""Who may use which skill: a website's visitors reach only the skills that opt in, through the real dispatcher with
the real smart-home skill (triggers, the intent classifier, open questions); the forwarder's last guard."""

from __future__ import annotations

import logging
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import pytest

from adapters.home_state import MemoryHomeState
from pipeline.devices import DevicesConfig
from pipeline.dialogue import DialogueState, PendingTask
from pipeline.envelope import Envelope, Reply, new_id
from pipeline.intents import IntentGuess
from pipeline.skilldefs import SkillDefinition, SkillDefinitionError
from skills.base import BaseSkill
from skills.builtin import HelpSkill, TimeSkill
from skills.declarative import DeclarativeSkill
from skills.dispatcher import Outcome, dispatch
from skills.registry import SkillRegistry
from skills.smarthome import SmartHomeSkill
from tasks.forward import Forwarder

HOME: dict[str, Any] = {
    "areas": [{"id": "living_room", "name": "客厅", "aliases": ["living room"]}],
    "entities": [
        {"id": "light.ceiling", "name": "客厅灯", "aliases": ["living room light"], "area": "living_room",
         "state": "off"},
        {"id": "light.kitchen", "name": "厨房灯", "aliases": ["kitchen light"], "state": "off"},
        {"id": "lock.front_door", "name": "大门", "aliases": ["front door"], "area": "living_room",
         "state": "unlocked"},
    ],
}  # fmt: skip
VISITOR = ("visitor",)
USER = ("user",)
TURN_ON = {"type": "intent", "intent": "HassTurnOn", "slots": {"name": "大门"}, "targets": ["lock.front_door"],
           "service": "lock.unlock", "data": {}}  # fmt: skip


class RecordingApp:
    """What the forwarder uses of the Celery app: its routes and ``send_task``; sends are recorded."""

    def __init__(self, routes: dict[str, Any]) -> None:
        self.conf = SimpleNamespace(task_routes=routes)
        self.sent: list[tuple[str, str]] = []

    def send_task(self, name: str, args: list[str], queue: str, **_: Any) -> None:
        self.sent.append((name, queue))


class Opening(BaseSkill):
    """A plugin that opts in: a website's visitors may ask it."""

    visitors = True

    def __init__(self) -> None:
        super().__init__(name="hours", triggers=["opening hours", "营业时间"])

    def execute(self, context: dict[str, Any]) -> str:
        return "9:00–17:00"


class Diary(BaseSkill):
    """A plugin that says nothing about roles: the household's only."""

    def __init__(self) -> None:
        super().__init__(name="diary", triggers=["diary", "日记"])

    def execute(self, context: dict[str, Any]) -> str:
        return "nothing planned"


@pytest.fixture
def registry() -> SkillRegistry:
    registry = SkillRegistry()
    registry.add(TimeSkill(clock=lambda: datetime(2026, 11, 25, 14, 5, 33)))
    registry.add(SmartHomeSkill(DevicesConfig.from_mapping(HOME), MemoryHomeState()))
    registry.add(Opening())
    registry.add(Diary())
    registry.add(HelpSkill(registry.describe))
    return registry


def say(
    registry: SkillRegistry,
    text: str,
    roles: tuple[str, ...],
    state: DialogueState | None = None,
    classify: Any = None,
) -> Outcome:
    envelope = Envelope(message_id=new_id(), session_id="s", channel="web", user_id="v", roles=roles, text=text,
                        seq=1)  # fmt: skip
    return dispatch(envelope, state or DialogueState(), registry, lambda s, c: s.execute(c), classify, 0.5)


def skill_of(outcome: Outcome) -> str | None:
    return None if outcome.reply is None else outcome.reply.skill


@pytest.mark.parametrize(
    "text", ["unlock the front door", "turn off all the lights", "打开大门锁", "is the front door locked?", "开灯"]
)
def test_a_visitor_never_reaches_the_smart_home(registry: SkillRegistry, text: str) -> None:
    assert skill_of(say(registry, text, USER)) == "smarthome"  # the household's member does
    outcome = say(registry, text, VISITOR)
    # No skill: inference answers, as if there were none.
    assert outcome.reply is None and outcome.state.pending is None


@pytest.mark.parametrize("roles", [USER, ("user", "admin"), ("device",), ("admin",)])
def test_the_household_reaches_every_household_skill(registry: SkillRegistry, roles: tuple[str, ...]) -> None:
    assert skill_of(say(registry, "unlock the front door", roles)) == "smarthome"
    assert skill_of(say(registry, "my diary", roles)) == "diary"


def test_visitors_reach_the_skills_that_opt_in_and_no_others(registry: SkillRegistry) -> None:
    assert skill_of(say(registry, "what time is it", VISITOR)) == "time"
    assert skill_of(say(registry, "opening hours?", VISITOR)) == "hours"
    assert say(registry, "my diary", VISITOR).reply is None


def test_no_roles_no_skill(registry: SkillRegistry) -> None:
    """An envelope that says nothing of its sender is nobody's: it reaches no skill (fail closed)."""
    assert say(registry, "what time is it", ()).reply is None


def test_the_classifier_cannot_route_a_visitor_to_a_skill_they_may_not_use(registry: SkillRegistry) -> None:
    asked: list[str] = []

    def classify(text: str) -> IntentGuess:
        asked.append(text)
        return IntentGuess("smarthome", 0.99) if "unlock" in text.lower() else IntentGuess("diary", 0.99)

    assert say(registry, "please Unlock it", VISITOR, classify=classify).reply is None
    assert say(registry, "what happened yesterday", VISITOR, classify=classify).reply is None
    assert asked == ["please Unlock it", "what happened yesterday"]
    # The same guess serves a user.
    assert skill_of(say(registry, "what happened yesterday", USER, classify=classify)) == "diary"


def test_an_open_question_of_a_skill_the_sender_may_not_use_is_dropped(registry: SkillRegistry) -> None:
    asked = say(registry, "turn on the lights", USER)  # the smart home asks which ones
    assert asked.state.pending is not None and asked.state.pending.skill == "smarthome"
    # A visitor's message on that state (kept from before skills had roles) does not answer it.
    outcome = say(registry, "the kitchen one", VISITOR, state=asked.state)
    assert outcome.reply is None and outcome.state.pending is None
    # Nor is it offered again after a skill the visitor may use.
    parked = DialogueState(interrupted=(PendingTask("smarthome", "Which one?", "name", {}),))
    answered = say(registry, "what time is it", VISITOR, state=parked)
    assert skill_of(answered) == "time" and answered.reply is not None
    assert "Which one?" not in answered.reply.text and answered.state.pending is None


def test_help_lists_only_what_the_asker_may_use(registry: SkillRegistry) -> None:
    visitor = say(registry, "help", VISITOR).reply
    user = say(registry, "help", USER).reply
    assert visitor is not None and user is not None
    assert "hours" in visitor.text and "time" in visitor.text
    assert "smarthome" not in visitor.text and "diary" not in visitor.text
    assert "smarthome" in user.text and "diary" in user.text


def test_roles_defaults_and_overrides() -> None:
    assert Diary().roles == ("user", "admin", "device") and Diary().visitors is False
    assert Opening().roles == ("user", "admin", "device", "visitor") and Opening().visitors is True
    assert not SmartHomeSkill(DevicesConfig.from_mapping(HOME), MemoryHomeState()).serves(VISITOR)
    only_admins = BaseSkill("admin-only", triggers=["x"], roles=["admin"])
    assert only_admins.serves(("user", "admin")) and not only_admins.serves(USER)
    assert BaseSkill("open", triggers=["x"], visitors=True).serves(VISITOR)
    assert BaseSkill("open", triggers=["x"], roles=["visitor"]).visitors is True
    assert Opening().describe()["visitors"] is True and Diary().describe()["visitors"] is False


def test_declarative_skills_are_closed_to_visitors_unless_opened() -> None:
    body = {"name": "faq", "triggers": ["faq"], "response": "Read the FAQ."}
    closed = SkillDefinition.from_request(body)
    opened = SkillDefinition.from_request({**body, "visitors": True})
    assert closed.visitors is False and opened.visitors is True and opened.to_dict()["visitors"] is True
    assert not DeclarativeSkill(closed).serves(VISITOR) and DeclarativeSkill(closed).serves(USER)
    assert DeclarativeSkill(opened).serves(VISITOR)
    webhook = SkillDefinition.from_request({"name": "hook", "triggers": ["hook"], "webhook": "https://x.test/h"})
    assert not DeclarativeSkill(webhook).serves(VISITOR)
    for bad in ("yes", 1, None, []):
        with pytest.raises(SkillDefinitionError, match="visitors"):
            SkillDefinition.from_request({**body, "visitors": bad})


def test_a_reply_to_a_visitor_switches_no_device(caplog: pytest.LogCaptureFixture) -> None:
    routes = {"assistant.deliver.web": {"queue": "reply.web"}, "assistant.deliver.mqtt": {"queue": "reply.mqtt"},
              "assistant.deliver.commands": {"queue": "reply.mqtt"}}  # fmt: skip
    link = {"type": "link", "url": "https://shop.example/hours"}
    reply = Reply("m1", "s1", "web", "大门已打开。", skill="smarthome", actions=(TURN_ON, link), roles=VISITOR)
    app = RecordingApp(routes)
    with caplog.at_level(logging.WARNING, logger="tasks.forward"):
        Forwarder(app).reply(reply)  # type: ignore[arg-type]
    assert app.sent == [("assistant.deliver.web", "reply.web")]
    assert "website visitor" in caplog.text and "m1" in caplog.text
    # The same reply to a user switches the lamp.
    user = RecordingApp(routes)
    Forwarder(user).reply(Reply("m2", "s1", "web", "大门已打开。", actions=(TURN_ON,), roles=USER))  # type: ignore[arg-type]
    assert user.sent[0] == ("assistant.deliver.commands", "reply.mqtt")


def test_replies_carry_the_senders_roles() -> None:
    envelope = Envelope(message_id=new_id(), session_id="s", channel="web", user_id="v", roles=VISITOR, text="hi")
    reply = Reply.answering(envelope, "hello")
    assert reply.roles == VISITOR and Reply.from_json(reply.to_json()).roles == VISITOR
    assert Reply.from_dict({**reply.to_dict(), "roles": None}).roles == ()
