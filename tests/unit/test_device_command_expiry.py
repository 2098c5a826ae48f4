"""The expiry rule of device commands: a command that sat in a queue past its expiry is dropped, never sent late;
one still valid carries what is left of its life as the MQTT v5 Message Expiry Interval."""

from __future__ import annotations

import math

import pytest

from pipeline.device_delivery import expired, expiry_interval, has_device_actions, reply_payload, seconds_left
from pipeline.devices import DevicesConfig, device_commands
from pipeline.envelope import Reply

ISSUED = 1_800_000_000.0
TURN_ON = {"type": "intent", "intent": "HassTurnOn", "slots": {"name": "卧室灯"}, "targets": ["light.bedroom_lamp"],
           "service": "light.turn_on", "data": {"brightness": 40}}  # fmt: skip
DEVICES = DevicesConfig.from_mapping({
    "areas": [{"id": "bedroom", "name": "卧室"}],
    "entities": [{"id": "light.bedroom_lamp", "name": "卧室灯", "area": "bedroom"}],
})  # fmt: skip


def command_payload(ttl: float = 30) -> dict[str, object]:
    (command,) = device_commands([TURN_ON], DEVICES, "m1", ISSUED, ttl)
    return command.payload


@pytest.mark.parametrize(
    ("waited", "dropped", "interval"),
    [
        (0.0, False, 30),  # delivered at once: the whole life
        (0.4, False, 30),  # a fraction left is rounded up, never down to an earlier expiry
        (12.5, False, 18),
        (29.9, False, 1),  # the last fraction of a second still counts: 1 s (0 would mean "never expires")
        (30.0, True, None),  # at its expiry: too late
        (31.0, True, None),
        (3600.0, True, None),  # the light is not switched an hour late
    ],
)
def test_a_command_is_sent_with_what_is_left_of_its_life_or_dropped(
    waited: float, dropped: bool, interval: int | None
) -> None:
    left = seconds_left(command_payload(), ISSUED + waited)
    assert expired(left) is dropped
    if not dropped:
        assert expiry_interval(left) == interval


def test_the_expiry_is_counted_from_when_the_reply_was_made() -> None:
    payload = command_payload(ttl=5)
    assert payload["expires_at"] == ISSUED + 5
    assert not expired(seconds_left(payload, ISSUED + 4.99))
    assert expired(seconds_left(payload, ISSUED + 5.01))


@pytest.mark.parametrize("expires_at", [None, "soon", True, math.inf, math.nan])
def test_a_command_without_a_readable_expiry_has_none(expires_at: object) -> None:
    payload = {"service": "light.turn_on"} | ({} if expires_at is None else {"expires_at": expires_at})
    left = seconds_left(payload, ISSUED)
    assert left is None and not expired(left) and expiry_interval(left) is None


def test_only_intents_with_targets_and_a_service_switch_devices() -> None:
    def reply(*actions: dict[str, object]) -> Reply:
        return Reply("m", "s", "web", "ok", actions=actions)

    assert has_device_actions(reply(TURN_ON))
    assert not has_device_actions(reply({**TURN_ON, "service": None}))  # a question about state
    assert not has_device_actions(reply({**TURN_ON, "targets": []}))  # an ambiguous request asking which one
    assert not has_device_actions(reply({"type": "link", "url": "https://example.com"}))
    assert not has_device_actions(reply())


def test_the_reply_payload_carries_the_request_id_and_an_error_only_when_there_is_one() -> None:
    reply = Reply("m1", "s1", "mqtt", "卧室灯已打开。", actions=(TURN_ON,), language="zh", reply_to="dev/req-7")
    assert reply_payload(reply, "req-7") == {
        "id": "req-7", "text": "卧室灯已打开。", "actions": [TURN_ON], "language": "zh", "session_id": "s1",
        "message_id": "m1",
    }  # fmt: skip
    failed = Reply("m2", "s1", "mqtt", "抱歉。", error="stage_error")
    assert reply_payload(failed, "req-8")["error"] == "stage_error"
