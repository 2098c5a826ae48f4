"""The ``reply.mqtt`` deliverer on a real Celery worker (Redis broker), against a real Mosquitto of its own:
replies and device commands go out once, expired commands are dropped, a broker that is down is waited out."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
import redis
from mqtt_deliver_support import Listener, Mosquitto, mosquitto, unique_root

from adapters.bundle import Adapters
from assistant.bootstrap import build_adapters, build_worker_app
from assistant.embedded import EmbeddedWorkers
from pipeline.envelope import Reply, new_id
from pipeline.settings import Settings
from tasks.celery_app import StageCelery

pytestmark = pytest.mark.servers

REDIS_STATE_DB, REDIS_BROKER_DB = 12, 13
TURN_ON = {
    "type": "intent",
    "intent": "HassTurnOn",
    "slots": {"name": "卧室灯", "area": "卧室"},
    "targets": ["light.bedroom_lamp"],
    "service": "light.turn_on",
    "data": {},
}

FAN_ON = {**TURN_ON, "slots": {"name": "卧室风扇"}, "targets": ["fan.bedroom_fan"], "service": "fan.turn_on"}


def devices_yaml(root: str) -> str:
    return f"""
areas:
  - id: bedroom
    name: 卧室
entities:
  - id: light.bedroom_lamp
    name: 卧室灯
    area: bedroom
    state: "off"
  - id: fan.bedroom_fan
    name: 卧室风扇
    area: bedroom
    attributes:
      command_topic: {root}/custom/fan/set
"""


@pytest.fixture(scope="module")
def broker() -> Iterator[Mosquitto]:
    with mosquitto() as server:
        yield server


@pytest.fixture(scope="module")
def deliverer(broker: Mosquitto, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    for db in (REDIS_STATE_DB, REDIS_BROKER_DB):
        redis.Redis(db=db).flushdb()
    root = unique_root()
    folder = tmp_path_factory.mktemp("mqtt-deliver")
    (folder / "devices.yaml").write_text(devices_yaml(root), encoding="utf-8")
    settings = Settings.from_env({
        "ASSISTANT_DATA_DIR": str(folder / "data"),
        "ASSISTANT_CONFIG_DIR": str(folder / "config"),
        "DATABASE_URL": f"sqlite:///{folder / 'assistant.db'}",
        "BROKER_URL": f"redis://127.0.0.1:6379/{REDIS_BROKER_DB}",
        "REDIS_URL": f"redis://127.0.0.1:6379/{REDIS_STATE_DB}",
        "MQTT_URL": broker.url,
        "MQTT_CLIENT_ID": f"deliver-test-{uuid.uuid4().hex[:8]}",
        "MQTT_TOPIC_PREFIX": f"{root}/assistant",
        "MQTT_STATE_PREFIX": f"{root}/home",
        "DEVICES_FILE": str(folder / "devices.yaml"),
        "JWT_SECRET": uuid.uuid4().hex + uuid.uuid4().hex,
    })  # fmt: skip
    adapters = build_adapters(settings, migrate=True)
    app = build_worker_app(settings, adapters)
    workers = EmbeddedWorkers(app, ["reply.mqtt"], concurrency=4)
    workers.start()
    listener = Listener([f"{root}/#"], port=broker.port, persistent=True)
    try:
        yield {"root": root, "app": app, "adapters": adapters, "settings": settings, "listener": listener}
    finally:
        listener.close()
        workers.stop()
        adapters.close()
        for db in (REDIS_STATE_DB, REDIS_BROKER_DB):
            redis.Redis(db=db).flushdb()


def mqtt_reply(device: str, request_id: str, **fields: Any) -> Reply:
    fields.setdefault("actions", (TURN_ON,))
    return Reply(message_id=new_id(), session_id=new_id(), channel="mqtt", text="卧室灯已打开。",
                 reply_to=f"{device}/{request_id}", user_id=device, language="zh", seq=1, **fields)  # fmt: skip


def deliver(app: StageCelery, reply: Reply) -> None:
    app.send_task("assistant.deliver.mqtt", args=[reply.to_json()], queue="reply.mqtt")


def lamp(env: dict[str, Any]) -> str:
    return f"{env['root']}/home/bedroom/bedroom_lamp/set"


def for_message(listener: Listener, topic: str, message_id: str) -> list[Any]:
    return [m for m in listener.on(topic) if m.json().get("message_id") == message_id]


def test_a_reply_and_its_command_go_out_once_however_often_the_reply_is_delivered(
    deliverer: dict[str, Any],
) -> None:
    listener: Listener = deliverer["listener"]
    reply = mqtt_reply("bedroom-speaker", "req-1")
    topic = f"{deliverer['root']}/assistant/bedroom-speaker/reply"
    deliver(deliverer["app"], reply)
    listener.wait_for(lambda _: bool(for_message(listener, topic, reply.message_id)), 10, "reply")
    # At least once on the broker: the same reply again, as a redelivery brings it.
    deliver(deliverer["app"], reply)
    deliver(deliverer["app"], reply)
    time.sleep(2.0)
    (answer,) = for_message(listener, topic, reply.message_id)
    body = answer.json()
    assert body["id"] == "req-1" and body["text"] == "卧室灯已打开。" and body["language"] == "zh"
    assert body["actions"] == [TURN_ON] and body["session_id"] == reply.session_id and "error" not in body
    assert not answer.retain
    (command,) = for_message(listener, lamp(deliverer), reply.message_id)
    payload = command.json()
    assert (payload["service"], payload["entity_id"]) == ("light.turn_on", "light.bedroom_lamp")
    assert payload["expires_at"] == pytest.approx(reply.created_at + 30)
    assert not command.retain and command.expiry is not None and 0 < command.expiry <= 30
    # The reply is in the session's stream (and the transcript), as the web deliverer leaves it.
    adapters: Adapters = deliverer["adapters"]
    stored = adapters.replies.reply_for(reply.message_id)
    assert stored is not None and stored[1].text == reply.text
    # The command went out before the reply that says it was done.
    assert command.at <= answer.at


def test_a_command_that_waited_past_its_expiry_is_dropped_and_the_reply_still_goes(
    deliverer: dict[str, Any],
) -> None:
    listener: Listener = deliverer["listener"]
    stale = mqtt_reply("bedroom-speaker", "req-old", created_at=time.time() - 31)
    topic = f"{deliverer['root']}/assistant/bedroom-speaker/reply"
    deliver(deliverer["app"], stale)
    listener.wait_for(lambda _: bool(for_message(listener, topic, stale.message_id)), 10, "reply")
    time.sleep(0.5)
    assert for_message(listener, lamp(deliverer), stale.message_id) == []


def test_a_reply_to_the_web_chat_switches_the_lamp_too(deliverer: dict[str, Any]) -> None:
    listener: Listener = deliverer["listener"]
    app: StageCelery = deliverer["app"]
    web = replace(mqtt_reply("ignored", "x", actions=(TURN_ON, FAN_ON)), channel="web", reply_to=None, user_id="erin")
    app.runtime.forward.reply(web)
    listener.wait_for(lambda _: bool(for_message(listener, lamp(deliverer), web.message_id)), 10, "command")
    # An entity with a command_topic of its own gets its command there.
    fan = f"{deliverer['root']}/custom/fan/set"
    listener.wait_for(lambda _: bool(for_message(listener, fan, web.message_id)), 10, "fan command")
    app.runtime.forward.reply(web)  # sent twice: still one command
    time.sleep(1.5)
    (command,) = for_message(listener, lamp(deliverer), web.message_id)
    assert command.json()["service"] == "light.turn_on"
    assert [m.json()["service"] for m in for_message(listener, fan, web.message_id)] == ["fan.turn_on"]
    # Nothing was published on any device's reply topic for it.
    replies = [m for m in listener.messages if m.topic.endswith("/reply")]
    assert not [m for m in replies if m.json().get("message_id") == web.message_id]
    # A question names no service: no command.
    question = replace(web, message_id=new_id(), actions=({**TURN_ON, "intent": "HassGetState", "service": None},))
    app.runtime.forward.reply(question)
    time.sleep(1.0)
    assert for_message(listener, lamp(deliverer), question.message_id) == []


def test_a_broker_that_is_down_is_waited_out_and_the_reply_delivered_once(
    deliverer: dict[str, Any], broker: Mosquitto
) -> None:
    listener: Listener = deliverer["listener"]
    reply = mqtt_reply("kitchen-speaker", "req-down")
    topic = f"{deliverer['root']}/assistant/kitchen-speaker/reply"
    broker.stop()
    try:
        deliver(deliverer["app"], reply)
        time.sleep(3.0)  # the deliverer tries, fails and retries meanwhile
        assert for_message(listener, topic, reply.message_id) == []
    finally:
        back = time.monotonic()
        broker.start()
    listener.wait_for(lambda _: bool(for_message(listener, topic, reply.message_id)), 40, "reply after the restart")
    (answer,) = for_message(listener, topic, reply.message_id)
    assert answer.json()["id"] == "req-down" and answer.at >= back
    listener.wait_for(lambda _: bool(for_message(listener, lamp(deliverer), reply.message_id)), 5, "command")
    time.sleep(1.0)
    assert len(for_message(listener, lamp(deliverer), reply.message_id)) == 1
    assert len(for_message(listener, topic, reply.message_id)) == 1
    assert json.loads(answer.payload)["message_id"] == reply.message_id


def test_a_message_the_broker_refuses_fails_the_publish() -> None:
    from adapters.mqtt_publisher import MqttPublisher, PublishFailed
    from pipeline.channel_config import MqttConfig

    with mosquitto(acl="topic readwrite allowed/#\n") as strict:
        publisher = MqttPublisher(MqttConfig(url=strict.url, client_id=f"acl-{uuid.uuid4().hex[:8]}"), timeout=3)
        try:
            publisher.publish("allowed/reply", b"{}")
            with pytest.raises(PublishFailed, match="refused"):
                publisher.publish("denied/reply", b"{}")
            publisher.publish("allowed/reply", b"{}")  # the connection goes on
        finally:
            publisher.close()


def test_the_same_reply_delivered_many_times_at_once_goes_out_once(deliverer: dict[str, Any]) -> None:
    listener: Listener = deliverer["listener"]
    reply = mqtt_reply("bedroom-speaker", "req-burst")
    web = replace(mqtt_reply("ignored", "y"), channel="web", reply_to=None, user_id="erin")
    topic = f"{deliverer['root']}/assistant/bedroom-speaker/reply"
    for _ in range(6):  # four worker threads take them at the same moment
        deliver(deliverer["app"], reply)
        deliverer["app"].runtime.forward.reply(web)
    listener.wait_for(lambda _: bool(for_message(listener, topic, reply.message_id)), 10, "reply")
    listener.wait_for(lambda _: bool(for_message(listener, lamp(deliverer), web.message_id)), 10, "command")
    time.sleep(2.0)  # a busy attempt waits 0.5 s, re-queued, and then finds the mark
    assert len(for_message(listener, topic, reply.message_id)) == 1
    assert len(for_message(listener, lamp(deliverer), reply.message_id)) == 1
    assert len(for_message(listener, lamp(deliverer), web.message_id)) == 1
