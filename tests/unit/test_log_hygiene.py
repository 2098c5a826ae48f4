"""Logs of failing skills show the skill, the exception type and where it was raised: never the user's text."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from pipeline.dialogue import DialogueState
from pipeline.envelope import Envelope, new_id
from pipeline.logsafe import trace_without_messages
from pipeline.weather import CurrentWeather
from skills.base import BaseSkill
from skills.builtin import WeatherSkill
from skills.dispatcher import dispatch
from skills.registry import SkillRegistry

USER_TEXT = "帮我查一下订单 A-99812，地址是幸福路 7 号"


class QuotingSkill(BaseSkill):
    """Fails with the user's text in its exception message, as careless skills do."""

    def __init__(self) -> None:
        super().__init__(name="quoting", triggers=["订单"])

    def execute(self, context: dict[str, Any]) -> str:
        try:
            int(context["message"])
        except ValueError as exc:
            raise RuntimeError(f"cannot handle {context['message']!r}") from exc
        return "never"


class QuotingWeather:
    def current(self, place: str, language: str) -> CurrentWeather | None:
        raise KeyError(f"no such place {place!r}")


def test_trace_without_messages_keeps_types_and_frames() -> None:
    try:
        QuotingSkill().execute({"message": USER_TEXT})
    except RuntimeError as exc:
        trace = trace_without_messages(exc)
    assert trace.startswith("builtins.RuntimeError\n")
    assert "in execute" in trace and "raised while handling builtins.ValueError" in trace
    assert "A-99812" not in trace


def test_a_failing_skill_is_logged_without_the_message(caplog: pytest.LogCaptureFixture) -> None:
    registry = SkillRegistry([QuotingSkill()])
    envelope = Envelope(message_id=new_id(), session_id=new_id(), channel="web", user_id="alice", roles=("user",),
                        text=USER_TEXT, seq=1)  # fmt: skip
    with caplog.at_level(logging.DEBUG):
        outcome = dispatch(envelope, DialogueState(), registry, lambda skill, context: skill.execute(context))
    assert outcome.reply is not None and outcome.reply.error == "skill_error"
    line = next(r for r in caplog.records if r.name == "skills.dispatcher")
    assert line.levelno == logging.ERROR and line.exc_info is None
    text = line.getMessage()
    assert "quoting" in text and envelope.message_id in text and "RuntimeError" in text and "in execute" in text
    assert "A-99812" not in caplog.text and "幸福路" not in caplog.text


def test_a_failing_weather_provider_is_logged_without_the_place(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        answer = WeatherSkill(QuotingWeather()).execute({"message": "幸福路天气", "language": "zh", "slots": {}})
    assert answer.startswith("抱歉")  # type: ignore[union-attr]
    assert "KeyError" in caplog.text
    assert "幸福路" not in caplog.text
