"""A device over MQTT, end to end through real processes: ``assistant mqtt`` and ``assistant worker`` on the
dispatch, inference and reply queues, against the local Redis, PostgreSQL and the real Mosquitto.

The device publishes 打开卧室灯 and receives its reply (with its request id) and the lamp its command; the same
request id again brings neither a second reply nor a second command. 打开卧室灯 typed in the web chat (the gateway,
``POST /api/messages``) switches the lamp too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
import sqlalchemy
from mqtt_deliver_support import Listener, Received, free_port, unique_root

pytestmark = pytest.mark.servers

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
REDIS_STATE_DB, REDIS_BROKER_DB = 12, 13
PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
#: Seconds the first reply may take: the worker starts, loads its skills and the smart home's sentences.
FIRST_REPLY_SECONDS = 90


def devices_yaml() -> str:
    return """
areas:
  - id: bedroom
    name: 卧室
    aliases: [bedroom]
  - id: kitchen
    name: 厨房
devices:
  - id: bedroom-speaker
    area: bedroom
entities:
  - id: light.bedroom_lamp
    name: 卧室灯
    aliases: [bedroom lamp]
    area: bedroom
    state: "off"
  - id: light.kitchen_light
    name: 厨房灯
    area: kitchen
    state: "off"
"""


class Processes:
    """Child processes in their own process groups, logging to files; all stopped at the end."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.running: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, *args: str) -> None:
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen([str(BIN / "assistant"), *args], cwd=ROOT, env=self.env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        self.running.append((name, process))

    def check(self) -> None:
        for name, process in self.running:
            if process.poll() is not None:
                pytest.fail(f"{name} exited with {process.returncode}:\n{self.log(name)[-3000:]}")

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def stop(self) -> None:
        for _, process in self.running:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for _, process in self.running:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    database = f"e2e_mqtt_{uuid.uuid4().hex[:10]}"
    admin = sqlalchemy.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f'CREATE DATABASE "{database}"'))
    for db in (REDIS_STATE_DB, REDIS_BROKER_DB):
        redis.Redis(db=db).flushdb()
    root = unique_root("e2e")
    folder = tmp_path_factory.mktemp("mqtt-e2e")
    (folder / "devices.yaml").write_text(devices_yaml(), encoding="utf-8")
    env = {
        **os.environ,
        "BROKER_URL": f"redis://127.0.0.1:6379/{REDIS_BROKER_DB}",
        "REDIS_URL": f"redis://127.0.0.1:6379/{REDIS_STATE_DB}",
        "DATABASE_URL": f"postgresql://postgres@127.0.0.1:5432/{database}",
        "JWT_SECRET": uuid.uuid4().hex + uuid.uuid4().hex,
        "LOG_LEVEL": "INFO",
        "MQTT_URL": "mqtt://127.0.0.1:1883",
        "MQTT_CLIENT_ID": f"{root}-edge",
        "MQTT_TOPIC_PREFIX": f"{root}/assistant",
        "MQTT_STATE_PREFIX": f"{root}/home",
        "DEVICES_FILE": str(folder / "devices.yaml"),
    }
    processes = Processes(env, folder)
    device = Listener([f"{root}/#"])
    try:
        migrate = subprocess.run([str(BIN / "assistant"), "migrate"], cwd=ROOT, env=env, capture_output=True,
                                 timeout=120)  # fmt: skip
        assert migrate.returncode == 0, migrate.stderr.decode()
        # The commands compose runs: a worker on the text stages and the reply queues, and the MQTT edge.
        processes.start("worker", "worker", "--queues", "dispatch,inference,reply.mqtt,reply.web",
                        "--hostname", f"{root}@%h")  # fmt: skip
        processes.start("mqtt", "mqtt")
        port = free_port()
        processes.start("gateway", "gateway", "--port", str(port))
        token = subprocess.run([str(BIN / "assistant"), "token", "--sub", "erin", "--role", "user"], cwd=ROOT, env=env,
                               capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
        gateway = {"url": f"http://127.0.0.1:{port}", "token": token}
        yield {"root": root, "device": device, "processes": processes, "gateway": gateway}
    finally:
        device.close()
        processes.stop()
        for db in (REDIS_STATE_DB, REDIS_BROKER_DB):
            redis.Redis(db=db).flushdb()
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()


def replies_to(device: Listener, topic: str, request_id: str) -> list[Received]:
    return [m for m in device.on(topic) if m.json().get("id") == request_id]


def commands_for(device: Listener, topic: str, message_id: str) -> list[Received]:
    return [m for m in device.on(topic) if m.json().get("message_id") == message_id]


def wait_for(layout: dict[str, Any], check: Any, timeout: float, what: str, give_up_after: float = 0.0) -> None:
    """Until ``check()`` holds; fails after ``timeout``, or returns quietly after ``give_up_after`` if given."""
    started = time.monotonic()
    deadline = started + timeout
    while not check():
        layout["processes"].check()
        if give_up_after and time.monotonic() - started > give_up_after and time.monotonic() < deadline:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {timeout:g} s; worker log:\n{layout['processes'].log('worker')[-3000:]}"
                        f"\nmqtt log:\n{layout['processes'].log('mqtt')[-3000:]}")  # fmt: skip
        time.sleep(0.05)


def test_a_device_asks_for_the_lamp_and_gets_a_reply_and_the_lamp_its_command_once(layout: dict[str, Any]) -> None:
    root, device = layout["root"], layout["device"]
    request_topic = f"{root}/assistant/bedroom-speaker/request"
    reply_topic = f"{root}/assistant/bedroom-speaker/reply"
    lamp_topic = f"{root}/home/bedroom/bedroom_lamp/set"
    request_id = f"req-{uuid.uuid4().hex[:8]}"
    # Until the edge has subscribed once, the broker keeps nothing for it: the device sends its request again
    # (with the same id, as a device that saw no reply does) until the reply comes.
    deadline = time.monotonic() + FIRST_REPLY_SECONDS
    while not replies_to(device, reply_topic, request_id):
        device.publish(request_topic, {"text": "打开卧室灯", "id": request_id})
        wait_for(layout, lambda: replies_to(device, reply_topic, request_id), deadline - time.monotonic(), "reply",
                 give_up_after=2.0)  # fmt: skip
    (reply,) = replies_to(device, reply_topic, request_id)
    body = reply.json()
    assert "error" not in body, body
    assert body["text"] and body["language"] == "zh" and body["session_id"]
    (action,) = [a for a in body["actions"] if a.get("type") == "intent"]
    assert (action["intent"], action["service"], action["targets"]) == ("HassTurnOn", "light.turn_on",
                                                                          ["light.bedroom_lamp"])  # fmt: skip
    wait_for(layout, lambda: commands_for(device, lamp_topic, body["message_id"]), 5, "device command")
    (command,) = commands_for(device, lamp_topic, body["message_id"])
    payload = command.json()
    assert (payload["service"], payload["entity_id"]) == ("light.turn_on", "light.bedroom_lamp")
    assert payload["expires_at"] > time.time() and not command.retain and command.expiry is not None
    assert command.at <= reply.at  # the lamp is switched before the reply says it is

    # The same request again (the device did not see the PUBACK, say): answered once, switched once.
    device.publish(request_topic, {"text": "打开卧室灯", "id": request_id})
    # A new request after it is a barrier: once its reply is here, the repeat was handled before it.
    barrier = f"req-{uuid.uuid4().hex[:8]}"
    device.publish(request_topic, {"text": "打开厨房灯", "id": barrier})
    wait_for(layout, lambda: replies_to(device, reply_topic, barrier), 20, "the next request's reply")
    kitchen = f"{root}/home/kitchen/kitchen_light/set"
    next_id = replies_to(device, reply_topic, barrier)[0].json()["message_id"]
    wait_for(layout, lambda: commands_for(device, kitchen, next_id), 5, "the kitchen's command")
    time.sleep(1.0)
    assert len(replies_to(device, reply_topic, request_id)) == 1
    assert len(commands_for(device, lamp_topic, body["message_id"])) == 1
    assert [m for m in device.messages if m.topic.endswith("/error")] == []


def test_the_lamp_asked_for_in_the_web_chat_is_switched_too(layout: dict[str, Any]) -> None:
    root, device, gateway = layout["root"], layout["device"], layout["gateway"]
    lamp_topic = f"{root}/home/bedroom/bedroom_lamp/set"
    headers = {"Authorization": f"Bearer {gateway['token']}"}

    def ready() -> bool:
        try:
            return requests.get(f"{gateway['url']}/readyz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    wait_for(layout, ready, 60, "the gateway")
    response = requests.post(f"{gateway['url']}/api/messages", params={"wait": 20}, headers=headers,
                             json={"text": "打开卧室灯", "client_msg_id": uuid.uuid4().hex}, timeout=40)  # fmt: skip
    assert response.status_code == 200, response.text
    answer = response.json()
    (action,) = [a for a in answer["reply"]["actions"] if a.get("type") == "intent"]
    assert (action["service"], action["targets"]) == ("light.turn_on", ["light.bedroom_lamp"])
    message_id = answer["message_id"]
    wait_for(layout, lambda: commands_for(device, lamp_topic, message_id), 10, "the web chat's command")
    time.sleep(1.0)
    (command,) = commands_for(device, lamp_topic, message_id)
    assert (command.json()["service"], command.json()["entity_id"]) == ("light.turn_on", "light.bedroom_lamp")
    # Nothing went to any device's reply topic: the reply went back to the web chat.
    assert not [m for m in device.messages if m.topic.endswith("/reply") and m.json().get("message_id") == message_id]
