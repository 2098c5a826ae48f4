"""An embedded pipeline (in-memory broker, Celery worker threads) behind a real HTTP port, with the fake Open-Meteo,
for the modules that ask it weather questions; each runs its own (one in-memory broker per process)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests
from support import eventually

from adapters.tokens import issue_token
from assistant.bootstrap import build_gateway
from assistant.embedded import build_embedded
from pipeline.settings import Settings

DEADLINE = 20.0


class Api:
    """Alice's session on one running pipeline."""

    def __init__(self, base: str, token: str) -> None:
        self.base = base
        self.headers = {"Authorization": f"Bearer {token}"}
        self.session_id = f"s-{uuid.uuid4().hex}"

    def say(self, text: str) -> dict[str, Any]:
        response = requests.post(f"{self.base}/api/messages", params={"wait": str(DEADLINE)}, headers=self.headers,
                                 json={"text": text, "session_id": self.session_id}, timeout=DEADLINE + 10)  # fmt: skip
        assert response.status_code == 200, response.text
        reply: dict[str, Any] = response.json()["reply"]
        return reply

    def skills(self) -> set[str]:
        response = requests.get(f"{self.base}/api/skills", headers=self.headers, timeout=DEADLINE)
        return {skill["name"] for skill in response.json()["skills"]}


def embedded_api(root: Path, open_meteo: Any, serve: Any, skills_dir: Path | None = None) -> Iterator[Api]:
    """The embedded pipeline behind a real HTTP port, with the fake Open-Meteo; ``skills_dir`` adds folder skills."""
    env = {
        "ASSISTANT_DATA_DIR": str(root / "data"),
        "ASSISTANT_CONFIG_DIR": str(root / "config"),
        "WEATHER_GEOCODING_URL": open_meteo.geocoding_url,
        "WEATHER_FORECAST_URL": open_meteo.forecast_url,
        "HTTP_TIMEOUT_SECONDS": "5",
    }
    if skills_dir is not None:
        env["SKILLS_DIR"] = str(skills_dir)
    settings = Settings.from_env(env)
    adapters, celery_app, workers = build_embedded(settings)
    flask_app = build_gateway(settings, adapters, celery_app)
    workers.start()
    try:
        with serve(flask_app) as base:
            api = Api(base, issue_token(settings, "alice", ("user",), 3600))
            eventually(lambda: "weather" in api.skills(), DEADLINE, what="the workers' skill catalog")
            yield api
    finally:
        flask_app.extensions["assistant"]["hub"].close()
        workers.stop()
        adapters.close()
