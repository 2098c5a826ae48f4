"""Schemathesis over ``GET /api/openapi.json``: generated requests against the real app on a real port.

No answer may be a 5xx, and every answer must have a documented status, content type and body shape.
Both layouts: embedded (in-process stores, SQLite) and distributed (Redis broker and state, PostgreSQL),
each with real Celery worker threads so messages are answered. Webhook skills that the fuzzer registers
POST to a fake instead of the hosts it made up, and the weather skill asks a local fake.

The SSE endpoint streams forever once a session is found, so its calls carry the token of a user who
never sends a message: every generated call to it ends with 400, 401, 404 or 429 (to the operators' stream, 403).
The other operator calls carry an operator's token; no session is handed over, so they end with 400, 404 or 413.
The long-poll and ``POST /api/messages`` waits are capped at 1 s by ``MAX_WAIT_SECONDS``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from adapters.tokens import issue_pair, issue_token
from assistant.bootstrap import build_adapters, build_gateway, build_worker_app
from assistant.embedded import EmbeddedWorkers, build_embedded
from ingress.openapi import openapi_document
from pipeline.settings import Settings
from pipeline.stages import all_queues

REDIS = "redis://127.0.0.1:6379"
STATE_DB, BROKER_DB = 13, 14

CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance, content_type_conformance]
#: Generated requests per operation (positive and negative ones together).
MAX_EXAMPLES = 50
HTTP_TIMEOUT = 10.0
#: The settings the document depends on; the app below is built with the same.
MAX_WAIT_SECONDS = 1.0
DEFAULT_WAIT_SECONDS = 1.0

# Loaded from the dict, not from the running app: schemathesis's fixture-based loader needs pytest < 9.
# The first test checks that the app serves exactly this document.
DOCUMENT = openapi_document(Settings(max_wait_seconds=MAX_WAIT_SECONDS, default_wait_seconds=DEFAULT_WAIT_SECONDS))
schema = schemathesis.openapi.from_dict(DOCUMENT)
schema.config.generation.update(
    modes=[schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE],
    max_examples=MAX_EXAMPLES,
    database="none",
)


@dataclass
class Target:
    """The running app and the tokens its requests carry."""

    base: str
    tokens: dict[str, str]
    webhook_calls: list[str] = field(default_factory=list)
    #: A fresh access/refresh pair of a throwaway user: logout revokes what it is sent, refresh needs a refresh token.
    fresh_pair: Callable[[], Any] = lambda: None

    def token_for(self, method: str, path: str) -> str:
        if path == "/api/auth/logout":
            return str(self.fresh_pair().access_token)
        if path == "/api/auth/refresh":
            return str(self.fresh_pair().refresh_token)
        if path.startswith("/api/skills") and method in ("POST", "DELETE"):
            return self.tokens["admin"]
        if path.endswith("/events"):
            return self.tokens["listener"]
        if path.startswith("/api/operator/"):
            # An operator, so the generated calls get past the role check (no session is handed over: 404s).
            return self.tokens["operator"]
        return self.tokens["user"]


def _flush_redis() -> None:
    for db in (STATE_DB, BROKER_DB):
        client = redis.Redis.from_url(f"{REDIS}/{db}")
        client.flushdb()
        client.close()


@pytest.fixture(scope="module", params=["embedded", pytest.param("distributed", marks=pytest.mark.servers)])
def target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, open_meteo: Any, serve: Any
) -> Iterator[Target]:
    layout: str = request.param
    root = tmp_path_factory.mktemp(f"fuzz-{layout}")
    env = {
        "ASSISTANT_DATA_DIR": str(root / "data"),
        "ASSISTANT_CONFIG_DIR": str(root / "config"),
        "MAX_WAIT_SECONDS": str(MAX_WAIT_SECONDS),
        "DEFAULT_WAIT_SECONDS": str(DEFAULT_WAIT_SECONDS),
        "SKILL_TIMEOUT_SECONDS": "1",
        "HTTP_TIMEOUT_SECONDS": "1",
        "WEATHER_GEOCODING_URL": open_meteo.geocoding_url,
        "WEATHER_FORECAST_URL": open_meteo.forecast_url,
        # Limits on, so their code runs, but far above what the fuzzer sends.
        "RATE_LIMIT_PER_USER": "100000/minute",
        "RATE_LIMIT_PER_IP": "100000/minute",
    }
    if layout == "embedded":
        settings_ = Settings.from_env(env)
        adapters, celery_app, workers = build_embedded(settings_)
    else:
        _flush_redis()
        env |= {
            "BROKER_URL": f"{REDIS}/{BROKER_DB}",
            "REDIS_URL": f"{REDIS}/{STATE_DB}",
            "DATABASE_URL": request.getfixturevalue("postgres_url"),
            "JWT_SECRET": "fuzz-test-secret-" + "z" * 32,
        }
        settings_ = Settings.from_env(env)
        adapters = build_adapters(settings_, migrate=True)
        celery_app = build_worker_app(settings_)
        workers = EmbeddedWorkers(celery_app, all_queues(settings_.enabled_channels))
    # The workers' adapters: the gateway's own in embedded mode, built from the settings otherwise.
    worker_adapters = celery_app.runtime.adapters
    target = Target(base="", tokens={})

    def fake_webhook(url: str, body: dict[str, Any]) -> Any:
        target.webhook_calls.append(url)
        return {"text": "webhook answer"}

    # The fuzzer registers webhook skills with made-up URLs; nothing may leave this machine.
    worker_adapters.post_json = fake_webhook
    app = build_gateway(settings_, adapters, celery_app)
    workers.start()
    try:
        with serve(app) as base:
            target.base = base
            target.fresh_pair = lambda: issue_pair(settings_, f"fuzz-{uuid.uuid4().hex[:8]}", ("user",))
            target.tokens = {
                "user": issue_token(settings_, "fuzz-user", ("user",), 3600),
                "listener": issue_token(settings_, "fuzz-listener", ("user",), 3600),
                "operator": issue_token(settings_, "fuzz-operator", ("agent",), 3600),
                "admin": issue_token(settings_, "fuzz-admin", ("user", "admin"), 3600),
            }
            yield target
    finally:
        app.extensions["assistant"]["hub"].close()
        workers.stop()
        if worker_adapters is not adapters:
            worker_adapters.close()
        adapters.close()
        if layout == "distributed":
            _flush_redis()


def test_the_document_is_valid_openapi() -> None:
    schema.validate()  # against the OpenAPI 3.1 schema; raises on the first violation
    labels = {operation.ok().label for operation in schema.get_all_operations()}
    assert {"POST /api/messages", "GET /api/sessions/{session_id}/events", "DELETE /api/skills/{name}"} <= labels


def test_the_app_serves_the_fuzzed_document(target: Target) -> None:
    response = requests.get(f"{target.base}/api/openapi.json", timeout=HTTP_TIMEOUT)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json() == DOCUMENT


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_every_response_is_documented_and_no_server_error(case: schemathesis.Case, target: Target) -> None:
    token = target.token_for(case.method.upper(), case.path)
    case.call_and_validate(
        base_url=target.base, headers={"Authorization": f"Bearer {token}"}, checks=CHECKS, timeout=HTTP_TIMEOUT
    )


#: Cursors Python's ``isdigit``/``int`` accepted but Redis refuses (XRANGE failed: 500), and a line break.
BAD_CURSORS = ["²", "٣-0", "99999999999999999999", "18446744073709551615-18446744073709551615", "1\n"]


@pytest.mark.parametrize("cursor", BAD_CURSORS)
def test_cursors_redis_cannot_read_are_refused(target: Target, cursor: str) -> None:
    headers = {"Authorization": f"Bearer {target.tokens['user']}"}
    sent = requests.post(f"{target.base}/api/messages", json={"text": "现在几点"}, params={"wait": "1"},
                         headers=headers, timeout=HTTP_TIMEOUT)  # fmt: skip
    session = sent.json()["session_id"]
    for path in (f"/api/sessions/{session}/replies", f"/api/sessions/{session}/events"):
        response = requests.get(f"{target.base}{path}", params={"after": cursor, "wait": "0"}, headers=headers,
                                timeout=HTTP_TIMEOUT)  # fmt: skip
        assert response.status_code == 400, (path, response.text)


@pytest.mark.parametrize("escaped", ["\\u0000", "\\ud800", "\\udfff"])
def test_texts_no_store_can_keep_are_refused(target: Target, escaped: str) -> None:
    # A NUL makes PostgreSQL refuse the row; an unpaired surrogate has no UTF-8 form for the broker.
    # Both decoded fine from the JSON body and then failed with 500 (or left the message unanswered).
    user = {"Authorization": f"Bearer {target.tokens['user']}", "Content-Type": "application/json"}
    admin = {"Authorization": f"Bearer {target.tokens['admin']}", "Content-Type": "application/json"}
    bodies = [
        ("/api/messages", user, f'{{"text": "a{escaped}b"}}'),
        ("/api/messages", user, f'{{"text": "hi", "client_msg_id": "c{escaped}"}}'),
        ("/api/skills", admin, f'{{"name": "s{escaped}", "triggers": ["x"], "response": "y"}}'),
        ("/api/skills", admin, f'{{"name": "s", "description": "{escaped}", "triggers": ["x"], "response": "y"}}'),
        ("/api/skills", admin, f'{{"name": "s", "triggers": ["x{escaped}"], "response": "y"}}'),
        ("/api/skills", admin, f'{{"name": "s", "triggers": ["x"], "response": "y{escaped}"}}'),
        ("/api/skills", admin, f'{{"name": "s", "triggers": ["x"], "webhook": "http://h/{escaped}"}}'),
    ]
    for path, headers, body in bodies:
        response = requests.post(f"{target.base}{path}?wait=0", data=body.encode(), headers=headers,
                                 timeout=HTTP_TIMEOUT)  # fmt: skip
        assert response.status_code == 400, (path, body, response.text)
        assert set(response.json()) == {"error", "message"}
