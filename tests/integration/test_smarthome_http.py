"""Smart-home requests through the real HTTP API, on the embedded pipeline and on the distributed one (Redis DBs 10
and 11, flushed; PostgreSQL): the request names its area in ``context``, the reply's actions carry the intent, and
state remembered by the gateway's side (as the MQTT edge remembers it) answers a worker's question. The module runs
its own embedded pipeline (the in-memory broker is one per process)."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from support import eventually

from adapters.home_state import HomeState
from adapters.tokens import issue_token
from assistant.bootstrap import build_adapters, build_gateway, build_worker_app
from assistant.embedded import EmbeddedWorkers, build_embedded
from pipeline.settings import Settings
from tasks.celery_app import all_queues

ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 20.0
REDIS = "redis://127.0.0.1:6379"
BROKER_DB = 10
STATE_DB = 11
JWT_SECRET = "smarthome-http-test-secret-" + "x" * 24


class Api:
    def __init__(self, base: str, token: str, home_state: HomeState) -> None:
        self.base = base
        self.headers = {"Authorization": f"Bearer {token}"}
        #: The gateway process's remembered states: Redis in the distributed layout, shared with the workers.
        self.home_state = home_state

    def post(self, body: dict[str, Any]) -> requests.Response:
        return requests.post(f"{self.base}/api/messages", params={"wait": str(DEADLINE)}, headers=self.headers,
                             json=body, timeout=DEADLINE + 10)  # fmt: skip

    def skills(self) -> set[str]:
        response = requests.get(f"{self.base}/api/skills", headers=self.headers, timeout=DEADLINE)
        return {skill["name"] for skill in response.json()["skills"]}


def flush() -> None:
    for db in (BROKER_DB, STATE_DB):
        client = redis.Redis.from_url(f"{REDIS}/{db}")
        client.flushdb()
        client.close()


@pytest.fixture(scope="module", params=["embedded", pytest.param("distributed", marks=pytest.mark.servers)])
def api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, serve: Any) -> Iterator[Api]:
    layout: str = request.param
    root = tmp_path_factory.mktemp(f"smarthome-http-{layout}")
    (root / "config").mkdir()
    shutil.copy(ROOT / "config" / "devices.example.yaml", root / "config" / "devices.yaml")
    env = {"ASSISTANT_DATA_DIR": str(root / "data"), "ASSISTANT_CONFIG_DIR": str(root / "config")}
    if layout == "embedded":
        settings = Settings.from_env(env)
        adapters, celery_app, workers = build_embedded(settings)
    else:
        flush()
        env |= {
            "BROKER_URL": f"{REDIS}/{BROKER_DB}",
            "REDIS_URL": f"{REDIS}/{STATE_DB}",
            "DATABASE_URL": request.getfixturevalue("postgres_url"),
            "JWT_SECRET": JWT_SECRET,
        }
        settings = Settings.from_env(env)
        # The gateway's adapters; the workers build their own from the settings, as separate processes would.
        adapters = build_adapters(settings, migrate=True)
        celery_app = build_worker_app(settings)
        workers = EmbeddedWorkers(celery_app, all_queues(settings.enabled_channels))
    flask_app = build_gateway(settings, adapters, celery_app)
    workers.start()
    try:
        with serve(flask_app) as base:
            api = Api(base, issue_token(settings, "alice", ("user",), 3600), adapters.home_state)
            eventually(lambda: "smarthome" in api.skills(), DEADLINE, what="the workers' skill catalog")
            yield api
    finally:
        flask_app.extensions["assistant"]["hub"].close()
        workers.stop()
        worker_adapters = celery_app.runtime.adapters
        if worker_adapters is not adapters:
            worker_adapters.close()
        adapters.close()
        if layout == "distributed":
            flush()


def test_the_area_in_context_picks_the_lights(api: Api) -> None:
    response = api.post({"text": "开灯", "session_id": f"s-{uuid.uuid4().hex}", "context": {"area": "卧室"}})
    assert response.status_code == 200, response.text
    reply = response.json()["reply"]
    assert reply["text"] == "卧室灯已打开。" and reply["skill"] == "smarthome"
    assert reply["actions"] == [
        {
            "type": "intent",
            "intent": "HassTurnOn",
            "slots": {"domain": "light", "area": "卧室"},
            "targets": ["light.bedroom_lamp"],
            "service": "light.turn_on",
            "data": {},
        }
    ]


def test_without_context_the_question_comes_back(api: Api) -> None:
    session = f"s-{uuid.uuid4().hex}"
    asked = api.post({"text": "turn on the lights", "session_id": session})
    assert asked.status_code == 200, asked.text
    assert asked.json()["reply"]["text"].startswith("Which one do you mean:")
    answered = api.post({"text": "the kitchen one", "session_id": session})
    assert answered.json()["reply"]["actions"][0]["targets"] == ["light.kitchen"]


@pytest.mark.parametrize("context", [["卧室"], {"area": 3}, {"area": "x" * 101}, {"bad key": "x"}, "卧室"])
def test_a_bad_context_is_refused(api: Api, context: Any) -> None:
    response = api.post({"text": "开灯", "context": context})
    assert response.status_code == 400, response.text
    assert "context" in response.text


def test_a_state_question_reads_remembered_state(api: Api) -> None:
    session = f"s-{uuid.uuid4().hex}"
    api.home_state.set("lock.front_door", "unlocked")
    reply = api.post({"text": "大门锁好了吗？", "session_id": session}).json()["reply"]
    assert reply["text"] == "不，大门没锁。"
    assert reply["actions"][0]["intent"] == "HassGetState" and reply["actions"][0]["service"] is None
    api.home_state.set("lock.front_door", "locked")
    assert api.post({"text": "is the front door locked?", "session_id": session}).json()["reply"]["text"] == (
        "Yes, the front door is locked."
    )
