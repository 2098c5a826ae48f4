"""Workers killed or slow, on the Redis broker's defaults: every message answered once, and soon.

The gateway and the workers run the commands compose runs. A worker renews its deliveries while it lives, so a
slow message stays with its worker however long it runs, while a dead worker's messages come back within the
visibility timeout plus one restore sweep (about 17 s), and its session's later messages follow them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
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
#: The recovery target: every accepted message is answered within this many seconds of a worker's death.
RECOVERY_TARGET_SECONDS = 30

GATE_SKILL = '''
import time
from pathlib import Path

from skills.base import BaseSkill

GATES = Path({gates!r})


class GateSkill(BaseSkill):
    """Notes each run, then answers once the file named by the message's last word exists."""

    def __init__(self):
        super().__init__(name="gate", description="等闸门 / waits at a gate", triggers=["闸门"])

    def execute(self, context):
        key = context["message"].split()[-1]
        with open(GATES / f"{{key}}.runs", "a") as runs:
            runs.write("run\\n")
        while not (GATES / key).exists():
            time.sleep(0.005)
        return f"闸门 {{key}} 开了"


class NapSkill(BaseSkill):
    """Takes a moment, as a skill calling a slow service does: a busy worker always has messages in hand."""

    def __init__(self):
        super().__init__(name="nap", description="小睡一会 / naps", triggers=["小睡"])

    def execute(self, context):
        time.sleep(0.05)
        return "睡醒了"
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
        "SKILL_TIMEOUT_SECONDS": "40",
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
            [str(BIN / "assistant"), "token", "--sub", "erin", "--role", "user", "--ttl", "3600"],
            cwd=ROOT, env=env, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        yield {"url": f"http://127.0.0.1:{port}", "token": token, "run": run, "gates": gates, "db": env["DATABASE_URL"]}
    finally:
        run.stop()
        next(database, None)


def start_worker(run: Layout, name: str, queues: str = "dispatch,inference,reply.web") -> subprocess.Popen[bytes]:
    command = [str(BIN / "assistant"), "worker", "--queues", queues, "--concurrency", "2", "--hostname", f"{name}@%h"]
    return run.start(name, command)


def kill(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)


def runs(gates: Path, key: str) -> int:
    path = gates / f"{key}.runs"
    return len(path.read_text().splitlines()) if path.exists() else 0


def dead_letters(db: str) -> list[Any]:
    repository = Repository.from_url(db)
    try:
        return repository.dead_letters()
    finally:
        repository.close()


def test_a_message_whose_worker_died_is_answered_by_another_worker_within_the_target(layout: dict[str, Any]) -> None:
    url, headers = layout["url"], {"Authorization": f"Bearer {layout['token']}"}
    run: Layout = layout["run"]
    gates: Path = layout["gates"]
    doomed = start_worker(run, "doomed")
    session = f"loss-{uuid.uuid4().hex[:8]}"
    accepted = requests.post(
        f"{url}/api/messages?wait=0", json={"text": "闸门 k1", "session_id": session}, headers=headers, timeout=30
    )
    assert accepted.status_code == 202, accepted.text
    eventually(lambda: runs(gates, "k1") == 1, 30, what="the first worker to start on the message")
    # The session's next message is accepted while the first one is in the doomed worker's hands.
    follow_up = requests.post(
        f"{url}/api/messages?wait=0", json={"text": "现在几点", "session_id": session}, headers=headers, timeout=30
    )
    assert follow_up.status_code == 202
    kill(doomed)
    killed_at = time.monotonic()
    (gates / "k1").touch()
    start_worker(run, "survivor")

    def both_replies() -> list[dict[str, Any]] | None:
        got = requests.get(f"{url}/api/sessions/{session}/replies", params={"wait": "2"}, headers=headers, timeout=30)
        replies: list[dict[str, Any]] = got.json()["replies"]
        return replies if len(replies) >= 2 else None

    replies = eventually(both_replies, RECOVERY_TARGET_SECONDS + 15, what="both messages to be answered")
    recovered = time.monotonic() - killed_at
    print(f"\nboth messages answered {recovered:.1f} s after their worker was killed")
    assert recovered < RECOVERY_TARGET_SECONDS
    assert [(r["message_id"], r["skill"]) for r in replies] == [
        (accepted.json()["message_id"], "gate"),
        (follow_up.json()["message_id"], "time"),
    ]
    assert runs(gates, "k1") == 2  # the dead worker's run, then the survivor's
    # Once: the transcript holds each message and one reply to each (in time order: both messages came first).
    time.sleep(1)
    entries = requests.get(f"{url}/api/sessions/{session}", headers=headers, timeout=10).json()["entries"]
    ids = [accepted.json()["message_id"], follow_up.json()["message_id"]]
    assert [(e["kind"], e["message_id"]) for e in entries] == [("message", ids[0]), ("message", ids[1]),
                                                               ("reply", ids[0]), ("reply", ids[1])]  # fmt: skip
    assert dead_letters(layout["db"]) == []


def test_a_live_workers_slow_message_stays_with_it_past_the_visibility_timeout(layout: dict[str, Any]) -> None:
    url, headers = layout["url"], {"Authorization": f"Bearer {layout['token']}"}
    run: Layout = layout["run"]
    gates: Path = layout["gates"]
    start_worker(run, "first")
    start_worker(run, "second")
    session = f"slow-{uuid.uuid4().hex[:8]}"
    accepted = requests.post(
        f"{url}/api/messages?wait=0", json={"text": "闸门 slow", "session_id": session}, headers=headers, timeout=30
    )
    assert accepted.status_code == 202
    eventually(lambda: runs(gates, "slow") == 1, 30, what="a worker to start on the message")
    time.sleep(22)  # past the broker's 15 s visibility timeout and several restore sweeps
    assert runs(gates, "slow") == 1, "the message was handed to a second worker while the first still had it"
    (gates / "slow").touch()
    answered = requests.get(
        f"{url}/api/sessions/{session}/replies", params={"wait": "20"}, headers=headers, timeout=30
    ).json()["replies"]
    assert [(r["message_id"], r["text"]) for r in answered] == [(accepted.json()["message_id"], "闸门 slow 开了")]
    assert runs(gates, "slow") == 1


def test_a_burst_survives_a_dispatch_worker_killed_in_the_middle(layout: dict[str, Any]) -> None:
    """The measured scenario, scaled down: clients in a closed loop, a dispatch worker killed and restarted."""
    url, headers = layout["url"], {"Authorization": f"Bearer {layout['token']}"}
    run: Layout = layout["run"]
    doomed = start_worker(run, "dispatch-doomed", "dispatch")
    start_worker(run, "dispatch-steady", "dispatch")
    start_worker(run, "deliver", "inference,reply.web")
    for name in ("dispatch-doomed", "dispatch-steady", "deliver"):
        eventually(lambda name=name: " ready." in run.log(name), 60, what=f"worker {name} to start")
    clients, per_client = 12, 25
    answers: dict[str, list[tuple[str, float]]] = {}
    pending: list[tuple[str, str]] = []
    killed_at: list[float] = []
    lock = threading.Lock()

    def client(i: int) -> None:
        session = f"burst-{i}-{uuid.uuid4().hex[:6]}"
        for n in range(per_client):
            body = {"text": "小睡", "session_id": session, "client_msg_id": f"{session}-{n}"}
            response = requests.post(f"{url}/api/messages?wait=30", json=body, headers=headers, timeout=60)
            assert response.status_code in (200, 202), response.text
            data = response.json()
            with lock:
                if "reply" in data:
                    answers.setdefault(session, []).append((data["message_id"], time.monotonic()))
                else:
                    pending.append((session, data["message_id"]))

    def chaos() -> None:
        time.sleep(1.5)
        kill(doomed)
        killed_at.append(time.monotonic())
        time.sleep(1.5)
        start_worker(run, "dispatch-reborn", "dispatch")

    with ThreadPoolExecutor(clients + 1) as pool:
        killer = pool.submit(chaos)
        for future in [pool.submit(client, i) for i in range(clients)]:
            future.result()
        killer.result()
    # Every message was answered in its POST, within the 30 s wait: none was left pending.
    assert pending == []
    latest = max(at for replies in answers.values() for _, at in replies)
    print(f"\n{clients * per_client} messages; the last answered {latest - killed_at[0]:.1f} s after the kill")
    # And once: each session's transcript alternates message, reply, with every message id once.
    for session, replies in answers.items():
        entries = requests.get(f"{url}/api/sessions/{session}", headers=headers, timeout=10).json()["entries"]
        assert [e["kind"] for e in entries] == ["message", "reply"] * per_client, session
        assert [e["message_id"] for e in entries if e["kind"] == "reply"] == [mid for mid, _ in replies]
    assert dead_letters(layout["db"]) == []


def test_a_message_the_broker_lost_in_transit_is_sent_again(layout: dict[str, Any]) -> None:
    """Kombu's Redis transport pops a message before it records it as unacknowledged: a worker that dies in
    between takes it along. Here the message is popped by hand, as such a worker would, and never comes back
    through the broker; the dispatch worker's sweep sends the kept envelope again."""
    url, headers = layout["url"], {"Authorization": f"Bearer {layout['token']}"}
    run: Layout = layout["run"]
    session = f"lost-{uuid.uuid4().hex[:8]}"
    accepted = requests.post(
        f"{url}/api/messages?wait=0", json={"text": "现在几点", "session_id": session}, headers=headers, timeout=30
    )
    assert accepted.status_code == 202
    broker = redis.Redis(db=REDIS_BROKER_DB)
    assert broker.rpop("dispatch") is not None and broker.llen("dispatch") == 0
    accepted_at = time.monotonic()
    start_worker(run, "sweeper")

    def answered() -> list[dict[str, Any]]:
        got = requests.get(f"{url}/api/sessions/{session}/replies", params={"wait": "2"}, headers=headers, timeout=30)
        replies: list[dict[str, Any]] = got.json()["replies"]
        return replies

    replies = eventually(answered, RECOVERY_TARGET_SECONDS + 15, what="the lost message to be sent again")
    print(f"\nthe lost message was answered {time.monotonic() - accepted_at:.1f} s after it was accepted")
    assert [(r["message_id"], r["skill"]) for r in replies] == [(accepted.json()["message_id"], "time")]
    assert "sending it again" in run.log("sweeper")
    time.sleep(3)  # past another sweep: nothing is sent twice
    entries = requests.get(f"{url}/api/sessions/{session}", headers=headers, timeout=10).json()["entries"]
    assert [e["kind"] for e in entries] == ["message", "reply"]
