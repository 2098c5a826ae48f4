"""A website's visitors and the household's skills, through real HTTP on the embedded pipeline (real Celery worker
threads, SQLite) with the example devices and the shared Mosquitto: a visitor's "unlock the front door" reaches no
skill and no device, a user's still does; skills registered over REST open to visitors only when they say so."""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from mqtt_deliver_support import Listener, unique_root
from support import eventually

from adapters.sites import Site
from adapters.tokens import issue_token
from assistant.bootstrap import build_gateway
from assistant.embedded import build_embedded
from pipeline.settings import Settings

pytestmark = pytest.mark.servers

ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 20.0
SHOP = "http://shop.test:3000"
#: How long a command that should not come is waited for.
QUIET_SECONDS = 1.5


@dataclass
class Gateway:
    base: str
    shop: Site
    user: str
    admin: str
    listener: Listener
    root: str

    def call(self, method: str, path: str, token: str, origin: str | None = None, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"}
        if origin is not None:
            headers["Origin"] = origin
        return requests.request(method, self.base + path, headers=headers, timeout=DEADLINE + 10, **kwargs)

    def visitor(self) -> str:
        response = requests.post(f"{self.base}/api/visitor-tokens", json={"site_key": self.shop.site_key},
                                 headers={"Origin": SHOP}, timeout=DEADLINE)  # fmt: skip
        assert response.status_code == 201, response.text
        return str(response.json()["token"])

    def say(self, token: str, text: str, origin: str | None = None) -> dict[str, Any]:
        response = self.call("POST", "/api/messages", token, origin, params={"wait": str(DEADLINE)},
                             json={"text": text, "session_id": f"s-{uuid.uuid4().hex}"})  # fmt: skip
        assert response.status_code == 200, response.text
        reply: dict[str, Any] = response.json()["reply"]
        return reply

    def commands(self, message_id: str) -> list[Any]:
        """The device commands published for ``message_id`` (on the devices' ``set`` topics)."""
        found = []
        for message in list(self.listener.messages):
            try:
                body = message.json()
            except ValueError:
                continue
            if isinstance(body, dict) and body.get("message_id") == message_id and "/reply" not in message.topic:
                found.append(body)
        return found


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, serve: Any) -> Iterator[Gateway]:
    root = tmp_path_factory.mktemp("visitor-skills")
    (root / "config").mkdir()
    shutil.copy(ROOT / "config" / "devices.example.yaml", root / "config" / "devices.yaml")
    topics = unique_root("visit")
    settings = Settings.from_env({
        "ASSISTANT_DATA_DIR": str(root / "data"),
        "ASSISTANT_CONFIG_DIR": str(root / "config"),
        "MQTT_URL": "mqtt://127.0.0.1:1883",
        "MQTT_CLIENT_ID": f"visitor-skills-{uuid.uuid4().hex[:8]}",
        "MQTT_TOPIC_PREFIX": f"{topics}/assistant",
        "MQTT_STATE_PREFIX": f"{topics}/home",
        "RATE_LIMIT_VISITOR_TOKENS": "1000/minute",
    })  # fmt: skip
    adapters, celery_app, workers = build_embedded(settings)
    shop = adapters.sites.add([SHOP], "Shop")
    flask_app = build_gateway(settings, adapters, celery_app)
    listener = Listener([f"{topics}/#"])
    workers.start()
    try:
        with serve(flask_app) as base:
            gateway = Gateway(base, shop, issue_token(settings, "alice", ("user",), 3600),
                              issue_token(settings, "root", ("user", "admin"), 3600), listener, topics)  # fmt: skip

            def listed() -> bool:
                skills = gateway.call("GET", "/api/skills", gateway.user).json()["skills"]
                return "smarthome" in {skill["name"] for skill in skills}

            eventually(listed, DEADLINE, what="the workers' skill catalog")
            yield gateway
    finally:
        listener.close()
        flask_app.extensions["assistant"]["hub"].close()
        workers.stop()
        adapters.close()


@pytest.mark.parametrize(
    "text", ["unlock the front door", "turn off all the lights", "打开大门的锁", "is the front door locked?"]
)
def test_a_visitor_gets_no_smart_home_answer_and_no_device_command(gateway: Gateway, text: str) -> None:
    reply = gateway.say(gateway.visitor(), text, origin=SHOP)
    assert reply["skill"] != "smarthome" and reply["actions"] == [], reply
    assert "front door" not in reply["text"] and "大门" not in reply["text"], reply["text"]
    time.sleep(QUIET_SECONDS)
    assert gateway.commands(reply["message_id"]) == []


def test_a_user_still_unlocks_the_front_door(gateway: Gateway) -> None:
    reply = gateway.say(gateway.user, "unlock the front door")
    assert reply["skill"] == "smarthome" and reply["actions"][0]["service"] == "lock.unlock", reply
    gateway.listener.wait_for(lambda _: bool(gateway.commands(reply["message_id"])), DEADLINE, "the command")
    assert [command["service"] for command in gateway.commands(reply["message_id"])] == ["lock.unlock"]


def test_a_visitor_still_gets_the_skills_open_to_visitors(gateway: Gateway) -> None:
    visitor = gateway.visitor()
    assert gateway.say(visitor, "what time is it", origin=SHOP)["skill"] == "time"
    helped = gateway.say(visitor, "help", origin=SHOP)
    assert helped["skill"] == "help" and "smarthome" not in helped["text"] and "time" in helped["text"]


def test_registered_skills_open_to_visitors_only_when_they_say_so(gateway: Gateway) -> None:
    suffix = uuid.uuid4().hex[:6]
    opened = {"name": f"hours-{suffix}", "triggers": [f"hours{suffix}"], "response": "9:00–17:00", "visitors": True}
    closed = {"name": f"wifi-{suffix}", "triggers": [f"wifi{suffix}"], "response": "The password is hunter2."}
    for body in (opened, closed):
        created = gateway.call("POST", "/api/skills", gateway.admin, json=body)
        assert created.status_code == 201, created.text
        assert created.json()["visitors"] is ("visitors" in body)
    listed = {s["name"]: s for s in gateway.call("GET", "/api/skills", gateway.user).json()["skills"]}
    assert listed[opened["name"]]["visitors"] is True and listed[closed["name"]]["visitors"] is False
    assert listed["smarthome"]["visitors"] is False and listed["time"]["visitors"] is True

    visitor = gateway.visitor()
    assert gateway.say(visitor, f"hours{suffix}?", origin=SHOP)["text"] == "9:00–17:00"
    refused = gateway.say(visitor, f"wifi{suffix}?", origin=SHOP)
    assert refused["skill"] != closed["name"] and "hunter2" not in refused["text"]
    assert gateway.say(gateway.user, f"wifi{suffix}?")["text"] == "The password is hunter2."

    bad = gateway.call("POST", "/api/skills", gateway.admin, json={**opened, "visitors": "yes"})
    assert bad.status_code == 400 and bad.json()["error"] and "visitors" in bad.json()["message"]
