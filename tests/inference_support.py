"""For the tests of generated replies: the pipeline (embedded or on Redis) answering from a fake OpenAI-compatible
server, through the real HTTP API, and a reader of the session's event stream that keeps ``partial`` events."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import requests
from support import eventually

from adapters.bundle import Adapters
from adapters.tokens import issue_token
from assistant.bootstrap import build_adapters, build_gateway, build_worker_app
from assistant.embedded import EmbeddedWorkers, build_embedded
from pipeline.settings import Settings
from pipeline.stages import all_queues
from tasks.celery_app import StageCelery

REDIS = "redis://127.0.0.1:6379"
JWT_SECRET = "inference-test-secret-" + "x" * 24
#: Seconds any single expected event may take before a test fails.
DEADLINE = 20.0
#: ``MODEL_TIMEOUT_SECONDS`` of the test pipelines: short, so the slow-model tests are quick.
MODEL_TIMEOUT = 2.0
#: What a message no skill matches says (no trigger of a built-in skill in it).
UNMATCHED_ZH = "给我讲个关于猫的小故事"
UNMATCHED_EN = "tell me a short story about a cat"
UNAVAILABLE_ZH = "抱歉，模型暂时不可用，请稍后再试。"
UNAVAILABLE_EN = "Sorry, the model is unavailable right now. Please try again."


def new_session() -> str:
    return f"s-{uuid.uuid4().hex}"


@dataclass
class Event:
    """One server-sent event and when it was read (``time.monotonic()`` and ``time.time()``)."""

    kind: str
    data: dict[str, Any]
    id: str | None
    at: float
    wall: float


class EventReader:
    """Reads ``GET /api/sessions/<id>/events`` as a browser would, ``partial`` and ``reply`` events alike."""

    def __init__(self, api: Api, session_id: str, after: str | None = None) -> None:
        headers = {"Accept": "text/event-stream"}
        if after is not None:
            headers["Last-Event-ID"] = after
        self.response = api.request("GET", f"/api/sessions/{session_id}/events", headers=headers, stream=True,
                                    timeout=(5, DEADLINE))  # fmt: skip
        assert self.response.status_code == 200, self.response.text
        self._lines = self.response.iter_lines(chunk_size=None, decode_unicode=True)

    def next(self) -> Event:
        fields: dict[str, str] = {}
        for line in self._lines:
            if line == "":
                if "data" in fields:
                    return Event(fields.get("event", "message"), json.loads(fields["data"]), fields.get("id"),
                                 time.monotonic(), time.time())  # fmt: skip
                fields = {}
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
        raise AssertionError("the event stream ended")

    def until_reply(self, message_id: str) -> tuple[list[Event], Event]:
        """The partial events up to the reply to ``message_id``, and that reply."""
        partials: list[Event] = []
        while True:
            event = self.next()
            if event.kind == "reply" and event.data["message_id"] == message_id:
                return partials, event
            if event.kind == "partial":
                partials.append(event)

    def close(self) -> None:
        self.response.close()


@dataclass
class Api:
    """A client of one running pipeline."""

    base: str
    settings: Settings
    #: The gateway's adapters (embedded: the workers' too).
    adapters: Adapters
    celery_app: StageCelery
    tokens: dict[str, str] = field(default_factory=dict)

    def request(self, method: str, path: str, user: str | None = "alice", **kwargs: Any) -> requests.Response:
        headers = dict(kwargs.pop("headers", {}))
        if user is not None:
            headers.setdefault("Authorization", f"Bearer {self.tokens[user]}")
        kwargs.setdefault("timeout", DEADLINE + 10)
        return requests.request(method, self.base + path, headers=headers, **kwargs)

    def post(self, text: str, session_id: str, wait: float | None = None) -> dict[str, Any]:
        params = {} if wait is None else {"wait": str(wait)}
        response = self.request("POST", "/api/messages", json={"text": text, "session_id": session_id}, params=params)
        assert response.status_code in (200, 202), response.text
        body: dict[str, Any] = response.json()
        return body

    def say(self, text: str, session_id: str) -> dict[str, Any]:
        """Send a message and wait for its reply; the reply as the API shows it."""
        body = self.post(text, session_id, wait=DEADLINE)
        assert "reply" in body, body
        reply: dict[str, Any] = body["reply"]
        return reply

    def transcript(self, session_id: str) -> list[dict[str, Any]]:
        response = self.request("GET", f"/api/sessions/{session_id}")
        assert response.status_code == 200, response.text
        entries: list[dict[str, Any]] = response.json()["entries"]
        return entries

    def model_errors(self, backend: str = "openai") -> float:
        """``assistant_model_errors_total{backend=...}`` as ``/metrics`` shows it (0 before the first)."""
        text = self.request("GET", "/metrics", user=None).text
        prefix = f'assistant_model_errors_total{{backend="{backend}"}} '
        for line in text.splitlines():
            if line.startswith(prefix):
                return float(line[len(prefix) :])
        return 0.0


def flush(*dbs: int) -> None:
    for db in dbs:
        client = redis.Redis.from_url(f"{REDIS}/{db}")
        client.flushdb()
        client.close()


@contextmanager
def running(
    serve: Callable[[Any], AbstractContextManager[str]],
    root: Path,
    model_endpoint: str,
    distributed: dict[str, str] | None = None,
) -> Iterator[Api]:
    """The pipeline answering from the model at ``model_endpoint``, behind the HTTP API on a real port (``serve``:
    the ``serve`` fixture).

    ``distributed``: the ``BROKER_URL``, ``REDIS_URL`` and ``DATABASE_URL`` of the Redis layout; its workers build
    their own adapters and reach the gateway only through the servers. Else the embedded layout.
    """
    env = {
        "ASSISTANT_DATA_DIR": str(root / "data"),
        "ASSISTANT_CONFIG_DIR": str(root / "config"),
        "MODEL_BACKEND": "openai",
        "MODEL_ENDPOINT": model_endpoint,
        "MODEL_NAME": "fake-model",
        "MODEL_TIMEOUT_SECONDS": str(MODEL_TIMEOUT),
        "MODEL_SYSTEM_PROMPT": "You are a test assistant.",
        "MODEL_HISTORY_TURNS": "3",
        "MAX_WAIT_SECONDS": "30",
        "INTENT_MODEL": "off",
        "RATE_LIMIT_PER_USER": "100000/minute",
        "RATE_LIMIT_PER_IP": "100000/minute",
    }
    if distributed is None:
        settings = Settings.from_env(env)
        adapters, celery_app, workers = build_embedded(settings)
    else:
        settings = Settings.from_env(env | distributed | {"JWT_SECRET": JWT_SECRET})
        adapters = build_adapters(settings, migrate=True)
        celery_app = build_worker_app(settings)
        workers = EmbeddedWorkers(celery_app, all_queues(settings.enabled_channels))
    flask_app = build_gateway(settings, adapters, celery_app)
    workers.start()
    try:
        with serve(flask_app) as base:
            api = Api(base, settings, adapters, celery_app)
            api.tokens = {"alice": issue_token(settings, "alice", ("user",), 3600)}
            eventually(
                lambda: api.request("GET", "/api/skills").json().get("skills"), DEADLINE, what="the skill catalog"
            )
            yield api
    finally:
        flask_app.extensions["assistant"]["hub"].close()
        workers.stop()
        worker_adapters = celery_app.runtime.adapters
        if worker_adapters is not adapters:
            worker_adapters.close()
        adapters.close()
