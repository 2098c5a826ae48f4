"""Which tasks a reply with device actions is sent to: its commands once, before the reply, whatever the channel."""

from __future__ import annotations

import logging
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest

from pipeline.envelope import Reply
from tasks.forward import Forwarder

TURN_ON = {"type": "intent", "intent": "HassTurnOn", "slots": {"name": "卧室灯"}, "targets": ["light.bedroom_lamp"],
           "service": "light.turn_on", "data": {}}  # fmt: skip
WITH_MQTT = {"assistant.deliver.web": {"queue": "reply.web"}, "assistant.deliver.mqtt": {"queue": "reply.mqtt"},
             "assistant.deliver.commands": {"queue": "reply.mqtt"}}  # fmt: skip
SPOKEN = {"status": "ready", "key": "k", "sample_rate": 22050, "duration_seconds": 1.0, "interrupted": False}


class RecordingApp:
    """What the forwarder uses of the Celery app: its routes and ``send_task``; sends are recorded."""

    def __init__(self, routes: dict[str, Any]) -> None:
        self.conf = SimpleNamespace(task_routes=routes)
        self.sent: list[tuple[str, str]] = []

    def send_task(self, name: str, args: list[str], queue: str, **_: Any) -> None:
        self.sent.append((name, queue))


def forwarded(reply: Reply, routes: dict[str, Any] = WITH_MQTT) -> list[tuple[str, str]]:
    app = RecordingApp(routes)
    Forwarder(app).reply(reply)  # type: ignore[arg-type]
    return app.sent


def reply(channel: str, **fields: Any) -> Reply:
    fields.setdefault("actions", (TURN_ON,))
    return Reply("m1", "s1", channel, "卧室灯已打开。", **fields)


def test_a_web_reply_that_switches_a_lamp_sends_its_commands_first() -> None:
    assert forwarded(reply("web")) == [
        ("assistant.deliver.commands", "reply.mqtt"),
        ("assistant.deliver.web", "reply.web"),
    ]


def test_an_mqtt_reply_carries_its_commands_itself() -> None:
    assert forwarded(reply("mqtt")) == [("assistant.deliver.mqtt", "reply.mqtt")]


@pytest.mark.parametrize("channel", ["web", "mqtt"])
def test_a_reply_to_be_spoken_switches_the_lamp_before_the_synthesis_and_not_again_after(channel: str) -> None:
    spoken = reply(channel, wants=("text", "speech"))
    assert forwarded(spoken) == [("assistant.deliver.commands", "reply.mqtt"), ("assistant.tts", "tts")]
    assert forwarded(replace(spoken, audio=SPOKEN)) == [(f"assistant.deliver.{channel}", f"reply.{channel}")]


def test_questions_and_plain_replies_send_no_commands() -> None:
    question = {**TURN_ON, "intent": "HassGetState", "service": None}
    assert forwarded(reply("web", actions=(question,))) == [("assistant.deliver.web", "reply.web")]
    assert forwarded(reply("web", actions=())) == [("assistant.deliver.web", "reply.web")]


def test_without_mqtt_the_reply_goes_as_it_is_and_that_is_said_once(caplog: pytest.LogCaptureFixture) -> None:
    app = RecordingApp({"assistant.deliver.web": {"queue": "reply.web"}})
    forwarder = Forwarder(app)  # type: ignore[arg-type]
    with caplog.at_level(logging.INFO, logger="tasks.forward"):
        forwarder.reply(reply("web"))
        forwarder.reply(reply("web"))
    assert app.sent == [("assistant.deliver.web", "reply.web")] * 2
    assert [r.getMessage() for r in caplog.records].count(
        "replies switch devices, but MQTT_URL is not set: no device commands are published"
    ) == 1
