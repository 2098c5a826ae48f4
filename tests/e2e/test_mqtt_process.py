"""``assistant mqtt`` as compose runs it: a process of its own beside the dispatch and reply.mqtt workers, on the
local Redis (DBs 2 and 4), PostgreSQL and Mosquitto. It answers devices, stops cleanly on SIGTERM, and answers what
was sent while it was down once it is back."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
import redis
import yaml
from support import eventually

from adapters.mqtt import mqtt_client, topics
from pipeline.channel_config import MqttConfig

pytestmark = pytest.mark.servers

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
REDIS_BROKER_DB, REDIS_STATE_DB = 2, 4
BROKER = "mqtt://127.0.0.1:1883"
DEADLINE = 60.0


def compose_command(service: str) -> list[str]:
    """The service's command from compose.yaml, with the installed executable."""
    command = [
        str(part) for part in yaml.safe_load((ROOT / "compose.yaml").read_text())["services"][service]["command"]
    ]
    return [str(BIN / command[0]), *command[1:]]


class Processes:
    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, command: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)  # fmt: skip
        self.running[name] = process
        return process

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        for process in self.running.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.running.values():
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory, postgres_url: str) -> Iterator[dict[str, Any]]:
    for db in (REDIS_BROKER_DB, REDIS_STATE_DB):
        redis.Redis(db=db).flushdb()
    root = f"t{uuid.uuid4().hex[:10]}"
    folder = tmp_path_factory.mktemp("mqtt-e2e")
    env = {
        **os.environ,
        "BROKER_URL": f"redis://127.0.0.1:6379/{REDIS_BROKER_DB}",
        "REDIS_URL": f"redis://127.0.0.1:6379/{REDIS_STATE_DB}",
        "DATABASE_URL": postgres_url,
        "JWT_SECRET": uuid.uuid4().hex + uuid.uuid4().hex,
        "ASSISTANT_CONFIG_DIR": str(folder / "config"),  # no devices file: any device may send
        "LOG_LEVEL": "INFO",
        "MQTT_URL": BROKER,
        "MQTT_CLIENT_ID": f"edge-{root}",
        "MQTT_TOPIC_PREFIX": f"{root}/assistant",
        "MQTT_STATE_PREFIX": f"{root}/home",
        "MQTT_SESSION_EXPIRY_SECONDS": "120",
    }
    run = Processes(env, folder)
    try:
        migrate = subprocess.run(compose_command("migrate"), cwd=ROOT, env=env, capture_output=True, timeout=60)
        assert migrate.returncode == 0, migrate.stderr.decode()
        run.start("dispatch", [*compose_command("worker-dispatch"), "--hostname", f"dispatch-{root}@%h"])
        run.start("reply-mqtt", [str(BIN / "assistant"), "worker", "--queues", "reply.mqtt", "--concurrency", "2",
                                 "--hostname", f"reply-mqtt-{root}@%h"])  # fmt: skip
        start_edge(run)
        yield {"run": run, "prefix": f"{root}/assistant", "env": env}
    finally:
        run.stop_all()
        _forget_session(env["MQTT_CLIENT_ID"])
        for db in (REDIS_BROKER_DB, REDIS_STATE_DB):
            redis.Redis(db=db).flushdb()


def start_edge(run: Processes) -> None:
    """Start ``assistant mqtt`` and wait until it has subscribed (requests before that would find no session)."""
    before = run.log("mqtt").count("MQTT edge subscribed") if (run.logs / "mqtt.log").exists() else 0
    process = run.start("mqtt", compose_command("mqtt"))

    def subscribed() -> bool:
        assert process.poll() is None, run.log("mqtt")[-3000:]
        return run.log("mqtt").count("MQTT edge subscribed") > before

    eventually(subscribed, DEADLINE, what="assistant mqtt to subscribe", interval=0.1)


def _forget_session(client_id: str) -> None:
    connected = threading.Event()
    client = mqtt_client(MqttConfig(url=BROKER), client_id, clean=True, on_connected=lambda _c: connected.set())
    client.loop_start()
    connected.wait(10)
    client.disconnect()
    client.loop_stop()


class Device:
    def __init__(self, prefix: str, device_id: str) -> None:
        self.topics = topics(prefix)
        self.device_id = device_id
        self.replies: list[dict[str, Any]] = []
        connected = threading.Event()
        self.client = mqtt_client(MqttConfig(url=BROKER), f"dev-{uuid.uuid4().hex[:10]}",
                                  [(self.topics.reply_topic(device_id), 1)], clean=True,
                                  on_connected=lambda _c: connected.set())  # fmt: skip
        self.client.on_message = self._on_message
        self.client.loop_start()
        assert connected.wait(10)

    def _on_message(self, _client: paho.Client, _userdata: Any, message: paho.MQTTMessage) -> None:
        self.replies.append(json.loads(message.payload))

    def ask(self, text: str) -> str:
        request_id = f"r-{uuid.uuid4().hex[:8]}"
        body = json.dumps({"id": request_id, "text": text}).encode()
        self.client.publish(self.topics.request_topic(self.device_id), body, qos=1).wait_for_publish(10)
        return request_id

    def reply(self, request_id: str, timeout: float = DEADLINE) -> dict[str, Any]:
        found: list[dict[str, Any]] = eventually(
            lambda: [r for r in self.replies if r.get("id") == request_id], timeout, what=f"the reply to {request_id}"
        )
        return found[0]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_a_device_is_answered_and_a_restart_loses_nothing(layout: dict[str, Any]) -> None:
    run: Processes = layout["run"]
    device = Device(layout["prefix"], "porch-panel")
    try:
        first = device.ask("现在几点")
        reply = device.reply(first)
        assert reply["text"].startswith("现在是") and reply["session_id"] == "mqtt:porch-panel", reply
        edge = run.running["mqtt"]
        os.killpg(edge.pid, signal.SIGTERM)
        assert edge.wait(15) == 0, run.log("mqtt")[-3000:]
        # Sent while no edge runs: the broker keeps it in the edge's session.
        waiting = device.ask("现在几点")
        time.sleep(1.0)
        assert not [r for r in device.replies if r.get("id") == waiting]
        start_edge(run)
        assert device.reply(waiting)["text"].startswith("现在是")
        log = run.log("mqtt")
        assert "现在几点" not in log  # never the user's words in a log
    finally:
        device.close()


def test_assistant_mqtt_needs_a_url_and_the_distributed_layout(layout: dict[str, Any]) -> None:
    env = {k: v for k, v in layout["env"].items() if k != "MQTT_URL"}
    missing = subprocess.run(compose_command("mqtt"), cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "MQTT_URL" in missing.stderr
    embedded = {k: v for k, v in layout["env"].items() if k not in ("BROKER_URL", "REDIS_URL", "DATABASE_URL")}
    refused = subprocess.run(compose_command("mqtt"), cwd=ROOT, env=embedded, capture_output=True, text=True,
                             timeout=60)  # fmt: skip
    assert refused.returncode == 2 and "assistant run" in refused.stderr


def test_compose_wires_the_edge_to_a_broker_that_wants_logins() -> None:
    services = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    edge = services["mqtt"]
    assert edge["command"] == ["assistant", "mqtt"]
    assert edge["depends_on"]["mosquitto"]["condition"] == "service_healthy"
    # Every assistant service shares the URL: the deliverers publish with it too.
    url = edge["environment"]["MQTT_URL"]
    assert url == services["worker-dispatch"]["environment"]["MQTT_URL"]
    user = re.fullmatch(r"mqtt://(\w+):\$\{MQTT_PASSWORD:\?[^}]*\}@mosquitto:1883", url)
    assert user is not None, url
    broker = services["mosquitto"]
    mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in broker["volumes"]}
    conf = (ROOT / mounts["/mosquitto/config/mosquitto.conf"]).read_text()
    assert re.search(r"^allow_anonymous false$", conf, re.M)
    assert re.search(r"^password_file /mosquitto/config/passwd$", conf, re.M) and "/mosquitto/config/passwd" in mounts
    assert re.search(r"^acl_file /mosquitto/config/acl$", conf, re.M)
    acl = (ROOT / mounts["/mosquitto/config/acl"]).read_text()
    assert f"user {user[1]}\ntopic readwrite assistant/#" in acl
    documented = (ROOT / "deploy" / "env.example").read_text()
    assert re.search(r"^MQTT_PASSWORD=", documented, re.M) and "MQTT_URL" in documented
