"""A dispatch worker killed in the middle of a message: another worker answers it, once.

The gateway runs as compose runs it. The workers run the same Celery app as ``assistant worker`` does, with
one change: the broker hands a dead worker's message on after about 13 s instead of 5 minutes (still
longer than the dead worker's session lock, 11 s here, as 5 minutes is in production).
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
from support import eventually, server_database

from adapters.db import Repository
from e2e.test_compose_layout import BIN, ROOT, Layout, compose_command, free_port, wait_ready

pytestmark = pytest.mark.servers

REDIS_BROKER_DB, REDIS_STATE_DB = 2, 4

WORKER = """
import sys
from pipeline.settings import Settings
from tasks.celery_app import create_celery_app

app = create_celery_app(Settings.from_env())
app.conf.broker_transport_options = {
    **app.conf.broker_transport_options,
    "visibility_timeout": 13,
    "unacked_restore_interval": 1,
}
app.worker_main(["worker", "--queues", "dispatch,inference,reply.web", "--pool", "threads", "--concurrency", "2",
                 "--without-gossip", "--without-mingle", "--loglevel", "INFO", "--hostname", sys.argv[1]])
"""

GATE_SKILL = '''
import time
from pathlib import Path

from skills.base import BaseSkill

GATES = Path({gates!r})


class GateSkill(BaseSkill):
    """Says it started, then answers once the file named by the message's last word exists."""

    def __init__(self):
        super().__init__(name="gate", description="等闸门 / waits at a gate", triggers=["闸门"])

    def execute(self, context):
        key = context["message"].split()[-1]
        (GATES / f"{{key}}.started").touch()
        while not (GATES / key).exists():
            time.sleep(0.005)
        return f"闸门 {{key}} 开了"
'''


@pytest.fixture
def layout(tmp_path: Path) -> Iterator[dict[str, Any]]:
    gates = tmp_path / "gates"
    gates.mkdir()
    skills = tmp_path / "skills"
    skills.mkdir()
    (skills / "gate.py").write_text(GATE_SKILL.format(gates=str(gates)), encoding="utf-8")
    for db in (REDIS_BROKER_DB, REDIS_STATE_DB):
        redis.Redis(db=db).flushdb()
    database = server_database("postgresql://postgres@127.0.0.1:5432/postgres", "DROP DATABASE {name} WITH (FORCE)")
    env = {
        **os.environ,
        "BROKER_URL": f"redis://127.0.0.1:6379/{REDIS_BROKER_DB}",
        "REDIS_URL": f"redis://127.0.0.1:6379/{REDIS_STATE_DB}",
        "DATABASE_URL": next(database),
        "JWT_SECRET": uuid.uuid4().hex + uuid.uuid4().hex,
        "SKILLS_DIR": str(skills),
        # The dead worker's session lock outlives it by this plus 10 s; keep the wait short.
        "SKILL_TIMEOUT_SECONDS": "1",
        "HOST": "127.0.0.1",
        # Many messages from one user and one address.
        "RATE_LIMIT_PER_USER": "off",
        "RATE_LIMIT_PER_IP": "off",
    }
    run = Layout(env, tmp_path)
    try:
        assert subprocess.run(compose_command("migrate"), cwd=ROOT, env=env, timeout=60).returncode == 0
        port = free_port()
        run.start("gateway", compose_command("gateway", port))
        wait_ready(f"http://127.0.0.1:{port}/readyz", run)
        token = subprocess.run(
            [str(BIN / "assistant"), "token", "--sub", "erin", "--role", "user"],
            cwd=ROOT, env=env, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        yield {"url": f"http://127.0.0.1:{port}", "token": token, "run": run, "gates": gates, "db": env["DATABASE_URL"]}
    finally:
        run.stop()
        next(database, None)


def start_worker(run: Layout, name: str) -> subprocess.Popen[bytes]:
    return run.start(name, [sys.executable, "-c", WORKER, f"{name}@%h"])


def test_a_message_whose_worker_died_is_answered_by_another_worker(layout: dict[str, Any]) -> None:
    url, headers = layout["url"], {"Authorization": f"Bearer {layout['token']}"}
    run: Layout = layout["run"]
    gates: Path = layout["gates"]
    doomed = start_worker(run, "doomed")
    session = f"loss-{uuid.uuid4().hex[:8]}"
    accepted = requests.post(
        f"{url}/api/messages?wait=0", json={"text": "闸门 k1", "session_id": session}, headers=headers, timeout=30
    )
    assert accepted.status_code == 202, accepted.text
    eventually((gates / "k1.started").exists, 30, what="the first worker to start on the message")
    os.killpg(doomed.pid, signal.SIGKILL)
    doomed.wait(10)
    (gates / "k1").touch()

    start_worker(run, "survivor")
    replies = eventually(
        lambda: requests.get(
            f"{url}/api/sessions/{session}/replies", params={"wait": "5"}, headers=headers, timeout=30
        ).json()["replies"],
        60,
        what="the message to be answered by the second worker",
    )
    assert [(r["message_id"], r["skill"], r["text"]) for r in replies] == [
        (accepted.json()["message_id"], "gate", "闸门 k1 开了")
    ]
    # Once: the session goes on, and the transcript holds the message and one reply.
    time.sleep(1)
    follow_up = requests.post(
        f"{url}/api/messages?wait=10", json={"text": "现在几点", "session_id": session}, headers=headers, timeout=30
    )
    assert follow_up.json()["reply"]["skill"] == "time"
    entries = requests.get(f"{url}/api/sessions/{session}", headers=headers, timeout=10).json()["entries"]
    assert [e["kind"] for e in entries] == ["message", "reply", "message", "reply"]
    repository = Repository.from_url(layout["db"])
    try:
        assert repository.dead_letters() == []
    finally:
        repository.close()
