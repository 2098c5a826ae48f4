"""Sentry from the real processes: the gateway (gunicorn, as compose runs it) and a prefork worker report to a local
envelope server; a skill's error is one event tagged with its message, and the gateway's request and the worker's
tasks share one trace across the Redis broker."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from sentry_support import SentryServer
from support import eventually, server_database

from e2e.test_compose_layout import BIN, ROOT, Layout, compose_command, free_port, wait_ready

pytestmark = pytest.mark.servers

REDIS_BROKER_DB, REDIS_STATE_DB = 2, 4
DEADLINE = 30.0
PRIVATE = f"private-words-{uuid.uuid4().hex}"

SKILL = """
from skills.base import BaseSkill


class ExplodingSkill(BaseSkill):
    def __init__(self):
        super().__init__(name="exploding", description="总是出错 / always fails", triggers=["引爆"])

    def execute(self, context):
        raise RuntimeError("cannot handle " + context["message"])
"""


@pytest.fixture
def layout(tmp_path: Path) -> Iterator[dict[str, Any]]:
    skills = tmp_path / "skills"
    skills.mkdir()
    (skills / "exploding.py").write_text(SKILL, encoding="utf-8")
    for db in (REDIS_BROKER_DB, REDIS_STATE_DB):
        redis.Redis(db=db).flushdb()
    receiver = SentryServer()
    database = server_database("postgresql://postgres@127.0.0.1:5432/postgres", "DROP DATABASE {name} WITH (FORCE)")
    env = {
        **os.environ,
        "BROKER_URL": f"redis://127.0.0.1:6379/{REDIS_BROKER_DB}",
        "REDIS_URL": f"redis://127.0.0.1:6379/{REDIS_STATE_DB}",
        "DATABASE_URL": next(database),
        "JWT_SECRET": uuid.uuid4().hex + uuid.uuid4().hex,
        "SKILLS_DIR": str(skills),
        "HOST": "127.0.0.1",
        "SENTRY_DSN": receiver.dsn,
        "SENTRY_TRACES_SAMPLE_RATE": "1",
        "SENTRY_ENVIRONMENT": "e2e",
    }
    run = Layout(env, tmp_path)
    try:
        assert subprocess.run(compose_command("migrate"), cwd=ROOT, env=env, timeout=60).returncode == 0
        port = free_port()
        run.start("gateway", compose_command("gateway", port))
        worker = [str(BIN / "assistant"), "worker", "--queues", "dispatch,inference,reply.web", "--pool", "prefork",
                  "--concurrency", "1", "--hostname", "sentry@%h"]  # fmt: skip
        run.start("worker", worker)
        wait_ready(f"http://127.0.0.1:{port}/readyz", run)
        token = subprocess.run(
            [str(BIN / "assistant"), "token", "--sub", "erin", "--role", "user", "--ttl", "3600"],
            cwd=ROOT, env=env, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        yield {"url": f"http://127.0.0.1:{port}", "token": token, "sentry": receiver, "run": run}
    finally:
        run.stop()
        receiver.close()
        next(database, None)
        for db in (REDIS_BROKER_DB, REDIS_STATE_DB):
            redis.Redis(db=db).flushdb()


def test_worker_and_gateway_processes_report_one_tagged_event_and_one_trace(layout: dict[str, Any]) -> None:
    sentry: SentryServer = layout["sentry"]
    response = requests.post(
        f"{layout['url']}/api/messages",
        json={"text": f"引爆 {PRIVATE}"},
        params={"wait": str(DEADLINE)},
        headers={"Authorization": f"Bearer {layout['token']}"},
        timeout=DEADLINE + 10,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["reply"]["error"] == "skill_error", body
    message_id = body["message_id"]

    def events() -> list[dict[str, Any]]:
        return [e for e in sentry.payloads("event") if (e.get("tags") or {}).get("message_id") == message_id]

    event = eventually(events, DEADLINE, "the worker's error event")[0]
    tags = event["tags"]
    assert tags["component"] == "worker" and tags["stage"] == "dispatch", tags
    assert tags["task"] == "assistant.dispatch" and tags["channel"] == "web", tags
    assert event["environment"] == "e2e"

    def dispatch() -> list[dict[str, Any]]:
        return [t for t in sentry.payloads("transaction") if t.get("transaction") == "assistant.dispatch"
                and (t.get("tags") or {}).get("message_id") == message_id]  # fmt: skip

    trace_id = eventually(dispatch, DEADLINE, "the dispatch transaction")[0]["contexts"]["trace"]["trace_id"]
    gateway = eventually(
        lambda: [t for t in sentry.payloads("transaction") if t["contexts"]["trace"]["trace_id"] == trace_id
                 and t["contexts"]["trace"].get("op") == "http.server"],
        DEADLINE,
        "the gateway's request transaction in the same trace",
    )  # fmt: skip
    assert gateway[0]["tags"]["component"] == "gateway"
    time.sleep(1.0)  # anything else the processes would send about this message
    assert len(events()) == 1, events()
    raw = sentry.raw()
    assert PRIVATE.encode() not in raw
    assert layout["token"].encode() not in raw
