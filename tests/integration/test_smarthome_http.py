"""A smart-home request through the real HTTP API of the embedded pipeline: the request names its area in
``context``, and the reply's actions carry the intent. The module runs its own embedded pipeline (the in-memory
broker is one per process)."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from support import eventually

from adapters.tokens import issue_token
from assistant.bootstrap import build_gateway
from assistant.embedded import build_embedded
from pipeline.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 20.0


class Api:
    def __init__(self, base: str, token: str) -> None:
        self.base = base
        self.headers = {"Authorization": f"Bearer {token}"}

    def post(self, body: dict[str, Any]) -> requests.Response:
        return requests.post(f"{self.base}/api/messages", params={"wait": str(DEADLINE)}, headers=self.headers,
                             json=body, timeout=DEADLINE + 10)  # fmt: skip

    def skills(self) -> set[str]:
        response = requests.get(f"{self.base}/api/skills", headers=self.headers, timeout=DEADLINE)
        return {skill["name"] for skill in response.json()["skills"]}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, serve: Any) -> Iterator[Api]:
    root = tmp_path_factory.mktemp("smarthome-http")
    (root / "config").mkdir()
    shutil.copy(ROOT / "config" / "devices.example.yaml", root / "config" / "devices.yaml")
    settings = Settings.from_env(
        {"ASSISTANT_DATA_DIR": str(root / "data"), "ASSISTANT_CONFIG_DIR": str(root / "config")}
    )
    adapters, celery_app, workers = build_embedded(settings)
    flask_app = build_gateway(settings, adapters, celery_app)
    workers.start()
    try:
        with serve(flask_app) as base:
            api = Api(base, issue_token(settings, "alice", ("user",), 3600))
            eventually(lambda: "smarthome" in api.skills(), DEADLINE, what="the workers' skill catalog")
            yield api
    finally:
        flask_app.extensions["assistant"]["hub"].close()
        workers.stop()
        adapters.close()


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
