"""Errors and traces reach Sentry, tagged and without the user's words: the embedded pipeline through real HTTP and
real Celery worker threads, reporting to a local server that receives Sentry's envelopes as sentry.io would.

``sentry_sdk`` is process-wide: this module initialises it with a DSN once, runs its own embedded pipeline (the
in-memory broker is one per process), and closes the client at the end so no other module reports anywhere.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import sentry_sdk
from sentry_support import SentryServer
from support import eventually

from adapters.sentry import close_sentry, init_sentry
from adapters.tokens import issue_token
from assistant.bootstrap import build_gateway
from assistant.embedded import build_embedded
from pipeline.settings import Settings

DEADLINE = 20.0
#: What the user writes: it must appear nowhere in what Sentry receives.
PRIVATE = f"my-private-words-{uuid.uuid4().hex}"
#: A secret in the gateway error's message and its request's query string.
QUERY_SECRET = f"qs{uuid.uuid4().hex}"

SKILL_SOURCE = '''
"""A skill that raises, quoting what the user wrote in its error, as careless skills do."""

from skills.base import BaseSkill


class ExplodingSkill(BaseSkill):
    def __init__(self):
        super().__init__(name="exploding", description="总是出错 / always fails", triggers=["引爆"])

    def execute(self, context):
        raise RuntimeError("cannot handle " + context["message"])
'''


@dataclass
class Pipeline:
    base: str
    token: str
    sentry: SentryServer

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token}"}
        return requests.post(self.base + path, headers=headers, timeout=30, **kwargs)

    def events(self, **tags: str) -> list[dict[str, Any]]:
        """Error events received so far whose tags include ``tags``."""
        sentry_sdk.flush(5)
        return [e for e in self.sentry.payloads("event") if tags.items() <= (e.get("tags") or {}).items()]

    def transactions(self) -> list[dict[str, Any]]:
        sentry_sdk.flush(5)
        return self.sentry.payloads("transaction")


def boom() -> None:
    """A gateway route that fails as a bug would, quoting a secret in its error."""
    raise RuntimeError(f"failed for {PRIVATE} at https://user:pw-{QUERY_SECRET}@db.example/x")


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory, serve: Any) -> Iterator[Pipeline]:
    root = tmp_path_factory.mktemp("sentry")
    skills_dir = root / "skills"
    skills_dir.mkdir()
    (skills_dir / "exploding.py").write_text(SKILL_SOURCE, encoding="utf-8")
    receiver = SentryServer()
    env = {
        "ASSISTANT_DATA_DIR": str(root / "data"),
        "ASSISTANT_CONFIG_DIR": str(root / "config"),
        "SKILLS_DIR": str(skills_dir),
        "SENTRY_DSN": receiver.dsn,
        "SENTRY_ENVIRONMENT": "test",
        "SENTRY_TRACES_SAMPLE_RATE": "1.0",
        "SENTRY_RELEASE": "assistant@test",
    }
    settings = Settings.from_env(env)
    assert init_sentry(settings, "embedded")
    try:
        adapters, celery_app, workers = build_embedded(settings)
        flask_app = build_gateway(settings, adapters, celery_app)
        flask_app.add_url_rule("/test/boom", "boom", boom)
        workers.start()
        try:
            with serve(flask_app) as base:
                yield Pipeline(base, issue_token(settings, "alice", ("user",), 3600), receiver)
        finally:
            flask_app.extensions["assistant"]["hub"].close()
            workers.stop()
            adapters.close()
    finally:
        close_sentry()
        receiver.close()
    assert not sentry_sdk.get_client().is_active()


def test_a_skill_that_raises_is_one_event_with_the_messages_tags_and_not_its_text(pipeline: Pipeline) -> None:
    response = pipeline.post("/api/messages", json={"text": f"引爆 {PRIVATE}"}, params={"wait": "20"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["reply"]["error"] == "skill_error", body  # the user got the apology
    message_id = body["message_id"]
    events = eventually(lambda: pipeline.events(message_id=message_id), DEADLINE, "the skill's error event")
    sentry_sdk.flush(5)
    events = pipeline.events(message_id=message_id)
    assert len(events) == 1, events
    event = events[0]
    assert event["level"] == "error"
    tags = event["tags"]
    assert tags["stage"] == "dispatch" and tags["task"] == "assistant.dispatch", tags
    assert tags["channel"] == "web" and tags["component"] == "worker", tags
    assert event["environment"] == "test" and event["release"] == "assistant@test"
    assert "exploding" in event["logentry"]["formatted"]  # which skill failed, from the dispatcher's log
    assert pipeline.sentry.paths and all(path == "/api/1/envelope/" for path in pipeline.sentry.paths)
    raw = pipeline.sentry.raw()
    assert PRIVATE.encode() not in raw


def test_a_gateway_error_is_tagged_gateway_and_scrubbed(pipeline: Pipeline) -> None:
    headers = {"Authorization": f"Bearer {pipeline.token}", "Cookie": f"session={QUERY_SECRET}"}
    response = requests.get(f"{pipeline.base}/test/boom", params={"access_token": QUERY_SECRET}, headers=headers,
                            timeout=30)  # fmt: skip
    assert response.status_code == 500
    found = eventually(
        lambda: [
            e
            for e in pipeline.events(component="gateway")
            if (e.get("request") or {}).get("url", "").endswith("/test/boom")
        ],
        DEADLINE,
        "the gateway's error event",
    )
    assert len(found) == 1, found
    event = found[0]
    assert event["tags"]["stage"] == "gateway"
    assert event["request"].get("query_string", "") in ("", "access_token=[Filtered]"), event["request"]
    raw = pipeline.sentry.raw()
    for secret in (PRIVATE, QUERY_SECRET, pipeline.token, pipeline.token.split(".")[1]):
        assert secret.encode() not in raw, secret


def test_the_http_request_and_the_dispatch_task_share_a_trace(pipeline: Pipeline) -> None:
    response = pipeline.post("/api/messages", json={"text": f"现在几点 {PRIVATE}"}, params={"wait": "20"})
    assert response.status_code == 200, response.text
    message_id = response.json()["message_id"]

    def dispatch_transaction() -> list[dict[str, Any]]:
        return [t for t in pipeline.transactions() if t.get("transaction") == "assistant.dispatch"
                and t.get("tags", {}).get("message_id") == message_id]  # fmt: skip

    dispatch = eventually(dispatch_transaction, DEADLINE, "the dispatch task's transaction")[0]
    trace_id = dispatch["contexts"]["trace"]["trace_id"]
    assert dispatch["contexts"]["trace"].get("parent_span_id"), "the task did not continue a trace"

    def request_transaction() -> list[dict[str, Any]]:
        return [t for t in pipeline.transactions() if t["contexts"]["trace"].get("op") == "http.server"
                and t["contexts"]["trace"]["trace_id"] == trace_id]  # fmt: skip

    request = eventually(request_transaction, DEADLINE, "the HTTP request's transaction")[0]
    assert request["request"]["url"].endswith("/api/messages")
    # The reply's delivery continues the same trace.
    eventually(
        lambda: [
            t
            for t in pipeline.transactions()
            if t.get("transaction") == "assistant.deliver.web" and t["contexts"]["trace"]["trace_id"] == trace_id
        ],
        DEADLINE,
        "the deliverer's transaction in the same trace",
    )
    assert PRIVATE.encode() not in pipeline.sentry.raw()


def test_nothing_is_reported_from_outside_a_sentry_module(tmp_path: Path) -> None:
    """The settings other modules build carry no DSN: ``init_sentry`` does nothing for them."""
    assert init_sentry(Settings.from_env({"ASSISTANT_DATA_DIR": str(tmp_path)}), "embedded") is False
