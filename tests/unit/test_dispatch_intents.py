"""Dispatch with an intent classifier: a trigger wins, then a sure enough guess, then inference; open questions
keep their answers. The classifier is a small table of fixed guesses."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import pytest

from pipeline.dialogue import DialogueState, PendingTask
from pipeline.envelope import Envelope, new_id
from pipeline.intents import NONE_LABEL, IntentGuess
from pipeline.weather import CurrentWeather
from skills.builtin import HelpSkill, TimeSkill, WeatherSkill
from skills.dispatcher import Outcome, dispatch
from skills.registry import SkillRegistry

WEDNESDAY = datetime(2026, 11, 25, 14, 5, 33)


class FakeWeather:
    def current(self, place: str, language: str) -> CurrentWeather | None:
        return {"上海": CurrentWeather("上海", 12.0, 61), "北京": CurrentWeather("北京", -3.5, 0)}.get(place)


class TableClassifier:
    """Answers from a table of message -> guess; records every message it was asked about."""

    def __init__(self, table: dict[str, IntentGuess | None], error: Exception | None = None) -> None:
        self.table = table
        self.error = error
        self.asked: list[str] = []

    def classify(self, text: str) -> IntentGuess | None:
        self.asked.append(text)
        if self.error is not None:
            raise self.error
        return self.table.get(text)


class Session:
    def __init__(self, registry: SkillRegistry, classifier: TableClassifier, threshold: float = 0.5) -> None:
        self.registry, self.classifier, self.threshold = registry, classifier, threshold
        self.state = DialogueState()
        self.seq = 0

    def say(self, text: str) -> Outcome:
        self.seq += 1
        envelope = Envelope(message_id=new_id(), session_id="s", channel="web", user_id="alice", roles=("user",),
                            text=text, seq=self.seq)  # fmt: skip
        outcome = dispatch(envelope, self.state, self.registry, _run, self.classifier.classify, self.threshold)
        self.state = outcome.state
        return outcome


def _run(skill: Any, context: dict[str, Any]) -> Any:
    return skill.execute(context)


@pytest.fixture
def registry() -> SkillRegistry:
    registry = SkillRegistry()
    registry.add(TimeSkill(clock=lambda: WEDNESDAY))
    registry.add(WeatherSkill(FakeWeather()))
    registry.add(HelpSkill(registry.describe))
    return registry


def skill_of(outcome: Outcome) -> str | None:
    return None if outcome.reply is None else outcome.reply.skill


# The rule table: message, the classifier's guess for it, threshold, the skill that answers (None: inference).
RULES = [
    pytest.param("现在几点", IntentGuess("weather", 0.99), 0.5, "time", id="a trigger wins over a sure guess"),
    pytest.param("杭州热不热", IntentGuess("weather", 0.81), 0.5, "weather", id="no trigger, a sure guess"),
    pytest.param("how do I use you", IntentGuess("help", 0.5), 0.5, "help", id="exactly at the threshold"),
    pytest.param("杭州热不热", IntentGuess("weather", 0.49), 0.5, None, id="below the threshold: inference"),
    pytest.param("讲个笑话", None, 0.5, None, id="no guess: inference"),
    pytest.param("开灯", IntentGuess("lamp", 0.97), 0.5, None, id="a guess of a skill not registered: inference"),
    pytest.param("杭州热不热", IntentGuess("weather", 0.81), 0.9, None, id="a higher threshold"),
    pytest.param("how do I use you", IntentGuess("help", 0.01), 0.0, "help", id="threshold 0 takes any guess"),
]


@pytest.mark.parametrize(("text", "guess", "threshold", "expected"), RULES)
def test_rule_table(
    registry: SkillRegistry, text: str, guess: IntentGuess | None, threshold: float, expected: str | None
) -> None:
    outcome = Session(registry, TableClassifier({text: guess}), threshold).say(text)
    assert skill_of(outcome) == expected
    if expected is None:
        assert outcome.state.history == ()  # inference records the turn, not dispatch


def test_a_trigger_match_does_not_ask_the_classifier(registry: SkillRegistry) -> None:
    classifier = TableClassifier({})
    Session(registry, classifier).say("今天星期几")
    assert classifier.asked == []


def test_the_guessed_skill_runs_with_the_message(registry: SkillRegistry) -> None:
    session = Session(registry, TableClassifier({"上海冷不冷": IntentGuess("weather", 0.9)}))
    outcome = session.say("上海冷不冷")
    assert outcome.reply is not None
    assert (outcome.reply.skill, outcome.reply.text) == ("weather", "上海当前气温 12℃，小雨。")


def test_an_answer_to_an_open_question_fills_its_slot_and_is_not_classified(registry: SkillRegistry) -> None:
    # The classifier would take the bare answer for a time question, confidently.
    classifier = TableClassifier({"外面冷不冷": IntentGuess("weather", 0.9), "北京": IntentGuess("time", 0.99)})
    session = Session(registry, classifier)
    question = session.say("外面冷不冷")
    assert question.reply is not None and question.reply.text == "哪个城市？"
    assert session.state.pending == PendingTask(skill="weather", question="哪个城市？", slot="location", slots={})

    answer = session.say("北京")
    assert answer.reply is not None
    assert (answer.reply.skill, answer.reply.text) == ("weather", "北京当前气温 -3.5℃，晴。")
    assert classifier.asked == ["外面冷不冷"]
    assert session.state.pending is None


def test_a_trigger_still_changes_the_subject_of_an_open_question(registry: SkillRegistry) -> None:
    session = Session(registry, TableClassifier({"外面冷不冷": IntentGuess("weather", 0.9)}))
    session.say("外面冷不冷")
    changed = session.say("现在几点")
    assert changed.reply is not None and changed.reply.skill == "time"
    # The weather question is offered again after the time.
    assert session.state.pending is not None and session.state.pending.skill == "weather"


def test_after_a_cancelled_question_the_classifier_is_asked_again(registry: SkillRegistry) -> None:
    classifier = TableClassifier({"外面冷不冷": IntentGuess("weather", 0.9), "你都会些什么": IntentGuess("help", 0.8)})
    session = Session(registry, classifier)
    session.say("外面冷不冷")
    assert skill_of(session.say("算了")) == "cancel"
    assert skill_of(session.say("你都会些什么")) == "help"


def test_a_failing_classifier_sends_the_message_to_inference(
    registry: SkillRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "我的密码是 hunter2"
    classifier = TableClassifier({}, error=RuntimeError(secret))
    with caplog.at_level(logging.DEBUG, logger="skills.dispatcher"):
        outcome = Session(registry, classifier).say(secret)
        assert outcome.reply is None
        # Triggers still work with a broken model.
        assert skill_of(Session(registry, classifier).say("现在几点")) == "time"
    assert "intent classifier failed" in caplog.text
    assert "hunter2" not in caplog.text  # neither the message nor the exception's text is logged


def test_the_route_is_logged_without_the_text(registry: SkillRegistry, caplog: pytest.LogCaptureFixture) -> None:
    text = "杭州热不热呀"
    with caplog.at_level(logging.DEBUG, logger="skills.dispatcher"):
        Session(registry, TableClassifier({text: IntentGuess("weather", 0.77)})).say(text)
        Session(registry, TableClassifier({})).say("现在几点")
    assert "intent weather at 0.77 (threshold 0.50) -> weather" in caplog.text
    assert caplog.text.count("intent ") == 1  # a trigger's match asks no classifier
    assert "杭州" not in caplog.text and "几点" not in caplog.text


def test_without_a_classifier_dispatch_is_triggers_alone(registry: SkillRegistry) -> None:
    envelope = Envelope(message_id=new_id(), session_id="s", channel="web", user_id="a", text="杭州热不热", seq=1)
    assert dispatch(envelope, DialogueState(), registry, _run).reply is None


def test_the_no_skill_label_goes_to_inference_even_if_a_skill_has_that_name(registry: SkillRegistry) -> None:
    class Squatter(TimeSkill):
        def __init__(self) -> None:
            super().__init__(clock=lambda: WEDNESDAY)
            self.name = NONE_LABEL

    registry.add(Squatter())
    outcome = Session(registry, TableClassifier({"讲个笑话": IntentGuess(NONE_LABEL, 0.95)})).say("讲个笑话")
    assert outcome.reply is None
