"""``LOG_FORMAT=json`` and ``LOG_FILE`` on the real processes: ``assistant run``, and ``assistant gateway`` beside
``assistant worker`` on the local Redis (DBs 8 and 9) and PostgreSQL. Every line is JSON, dispatch lines carry the
message's ids, what the user wrote is nowhere, the file gets the same lines and rotates, and neither mode prints
Celery's per-task lines at INFO."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from support import eventually

pytestmark = pytest.mark.servers

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
BROKER_DB, STATE_DB = 8, 9
#: What users write: none of it may show up in a log line, at any level.
SECRETS = ("6222-0000-1111", "幸福路", "ZEBRA-42")
TEXTS = ("现在几点 ZEBRA-42", "我的银行卡号是 6222-0000-1111", "幸福路 7 号怎么走", "what time is it ZEBRA-42")
PER_TASK_LOGGERS = ("celery.worker.strategy", "celery.app.trace")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def process(command: list[str], env: dict[str, str], folder: Path, name: str) -> Iterator[Path]:
    """Runs ``command`` with its standard error in ``folder/name.err``; stopped with SIGTERM at the end."""
    err = folder / f"{name}.err"
    with open(folder / f"{name}.out", "wb") as out, open(err, "wb") as errors:
        child = subprocess.Popen(command, cwd=folder, env=env, stdout=out, stderr=errors, start_new_session=True)
        try:
            yield err
        finally:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGTERM)
            try:
                child.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait(5)


def token(env: dict[str, str], folder: Path) -> str:
    done = subprocess.run([str(BIN / "assistant"), "token", "--sub", "alice"], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def converse(base: str, bearer: str) -> list[dict[str, Any]]:
    """Sends every text in one session and waits for each reply; the answers."""
    eventually(lambda: _ready(base), 60, what=f"{base}/readyz", interval=0.2)
    answers: list[dict[str, Any]] = []
    session: str | None = None
    for text in TEXTS:
        body: dict[str, Any] = {"text": text} | ({"session_id": session} if session else {})
        response = requests.post(f"{base}/api/messages?wait=20", json=body, timeout=30,
                                 headers={"Authorization": f"Bearer {bearer}"})  # fmt: skip
        assert response.status_code == 200, response.text
        answers.append(response.json())
        session = answers[-1]["session_id"]
    return answers


def _ready(base: str) -> bool:
    try:
        return requests.get(f"{base}/readyz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def json_lines(path: Path) -> list[dict[str, Any]]:
    """Every line of ``path`` as JSON; fails naming the first line that is not."""
    lines = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            pytest.fail(f"not a JSON line in {path.name}: {raw[:300]}")
        assert isinstance(line, dict) and {"time", "level", "logger", "message"} <= line.keys(), raw
        lines.append(line)
    return lines


def same_lines(first: list[dict[str, Any]], second: list[dict[str, Any]]) -> bool:
    def key(line: dict[str, Any]) -> str:
        return json.dumps(line, sort_keys=True, ensure_ascii=False)

    return sorted(map(key, first)) == sorted(map(key, second))


def assert_no_user_text(*paths: Path) -> None:
    for path in paths:
        content = path.read_text(encoding="utf-8")
        for secret in SECRETS:
            assert secret not in content, f"{secret!r} in {path.name}"


def embedded_env(folder: Path, models_dir: Path, level: str) -> dict[str, str]:
    return {
        **os.environ,
        "ASSISTANT_DATA_DIR": str(folder / "data"),
        "ASSISTANT_CONFIG_DIR": str(folder / "config"),
        "MODELS_DIR": str(models_dir),
        # Given, not generated into the data folder: `assistant token` would race the server writing it.
        "JWT_SECRET": uuid.uuid4().hex + uuid.uuid4().hex,
        "INTENT_MODEL": "off",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": level,
        "LOG_FILE": str(folder / "log" / "assistant.log"),
        "LOG_FILE_MAX_BYTES": "8192",
        "LOG_FILE_BACKUPS": "50",
    }


def test_embedded_at_info_logs_json_without_per_task_lines_or_text(tmp_path: Path, models_dir: Path) -> None:
    env = embedded_env(tmp_path, models_dir, "INFO")
    port = free_port()
    with process([str(BIN / "assistant"), "run", "--port", str(port)], env, tmp_path, "run") as err:
        answers = converse(f"http://127.0.0.1:{port}", token(env, tmp_path))
        time.sleep(0.5)  # the deliverer's last lines
    assert answers[0]["reply"]["skill"] == "time"
    lines = json_lines(err)
    assert any(line["logger"] == "adapters.db" for line in lines)  # start-up lines are JSON too
    assert all(line["component"] == "embedded" and line["time"].endswith("Z") for line in lines)
    assert not [line for line in lines if line["logger"] in PER_TASK_LOGGERS], "Celery's per-task lines at INFO"
    assert_no_user_text(err, *tmp_path.joinpath("log").iterdir())
    # The file holds the same lines as standard error (threads may interleave them differently in the two).
    assert same_lines(json_lines(tmp_path / "log" / "assistant.log"), lines)


def test_embedded_at_debug_carries_the_ids_and_rotates_the_file(tmp_path: Path, models_dir: Path) -> None:
    env = embedded_env(tmp_path, models_dir, "DEBUG")
    port = free_port()
    with process([str(BIN / "assistant"), "run", "--port", str(port)], env, tmp_path, "run") as err:
        answers = converse(f"http://127.0.0.1:{port}", token(env, tmp_path))
        time.sleep(0.5)
    lines = json_lines(err)
    for answer in answers:
        handled = [line for line in lines if line.get("task") == "assistant.dispatch"
                   and line.get("message_id") == answer["message_id"] and line["logger"] == "tasks.stage"]  # fmt: skip
        assert len(handled) == 1, answer
        assert handled[0]["session_id"] == answer["session_id"] and handled[0]["stage"] == "dispatch"
        assert handled[0]["channel"] == "web" and handled[0]["duration_ms"] >= 0
    # At DEBUG the per-task lines are there, as the README says, in both modes.
    received = [line for line in lines if line["logger"] == "celery.worker.strategy"]
    assert len(received) >= 2 * len(TEXTS)
    assert all("duration_ms" in line for line in lines if line["logger"] == "celery.app.trace")
    assert_no_user_text(err, *tmp_path.joinpath("log").iterdir())
    files = sorted(tmp_path.joinpath("log").glob("assistant.log*"))
    rotated = [path for path in files if path.suffix not in (".log", ".lock")]
    assert rotated, "the file never rotated"
    assert all(path.stat().st_size <= 8192 for path in files)
    kept = [line for path in rotated for line in json_lines(path)] + json_lines(tmp_path / "log" / "assistant.log")
    assert same_lines(kept, lines), "the rotated files and the file hold every line of standard error"


@pytest.fixture
def redis_dbs() -> Iterator[None]:
    for db in (BROKER_DB, STATE_DB):
        redis.Redis(db=db).flushdb()
    yield
    for db in (BROKER_DB, STATE_DB):
        redis.Redis(db=db).flushdb()


def test_gateway_and_worker_log_json_without_per_task_lines(tmp_path: Path, postgres_url: str, redis_dbs: None) -> None:
    env = {
        **os.environ,
        "BROKER_URL": f"redis://127.0.0.1:6379/{BROKER_DB}",
        "REDIS_URL": f"redis://127.0.0.1:6379/{STATE_DB}",
        "DATABASE_URL": postgres_url,
        "JWT_SECRET": uuid.uuid4().hex + uuid.uuid4().hex,
        "ASSISTANT_CONFIG_DIR": str(tmp_path / "config"),
        "INTENT_MODEL": "off",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
    }
    migrate = subprocess.run([str(BIN / "assistant"), "migrate"], cwd=tmp_path, env=env, capture_output=True,
                             timeout=60)  # fmt: skip
    assert migrate.returncode == 0, migrate.stderr.decode()
    port = free_port()
    gateway_env = env | {"LOG_FILE": str(tmp_path / "log" / "gateway.log")}
    gateway = [str(BIN / "assistant"), "gateway", "--port", str(port), "--workers", "2"]
    worker = [str(BIN / "assistant"), "worker", "--queues", "dispatch,inference,reply.web", "--concurrency", "2",
              "--hostname", f"logs-{uuid.uuid4().hex[:8]}@%h"]  # fmt: skip
    with (
        process(worker, env, tmp_path, "worker") as worker_err,
        process(gateway, gateway_env, tmp_path, "gateway") as gateway_err,
    ):
        answers = converse(f"http://127.0.0.1:{port}", token(env, tmp_path))
        time.sleep(0.5)
    assert len(answers) == len(TEXTS)
    worker_lines, gateway_lines = json_lines(worker_err), json_lines(gateway_err)
    assert any(line["logger"].startswith("celery.") for line in worker_lines)  # Celery's start-up lines, as JSON
    assert any(line["logger"] == "gunicorn.error" for line in gateway_lines)  # gunicorn's own, as JSON
    assert {line["component"] for line in worker_lines} == {"worker"}
    assert {line["component"] for line in gateway_lines} == {"gateway"}
    assert len({line["pid"] for line in gateway_lines}) >= 2  # the master and its workers
    assert not [line for line in worker_lines if line["logger"] in PER_TASK_LOGGERS]
    assert_no_user_text(worker_err, gateway_err, tmp_path / "log" / "gateway.log")
    assert same_lines(json_lines(tmp_path / "log" / "gateway.log"), gateway_lines)


def test_embedded_trains_its_intent_model_at_start_not_at_the_first_message(tmp_path: Path, models_dir: Path) -> None:
    env = {**embedded_env(tmp_path, models_dir, "INFO"), "INTENT_MODEL": "on"}
    port = free_port()
    with process([str(BIN / "assistant"), "run", "--port", str(port)], env, tmp_path, "run") as err:

        def trained() -> bool:
            return any(line["logger"] == "tasks.intent_model" and "swapped in" in line["message"]
                       for line in json_lines(err))  # fmt: skip

        eventually(trained, 120, "the intent model trained with no message sent", interval=0.5)
        base = f"http://127.0.0.1:{port}"
        eventually(lambda: _ready(base), 60, what=f"{base}/readyz", interval=0.2)
        response = requests.post(f"{base}/api/messages?wait=20", json={"text": "how do I use you"}, timeout=30,
                                 headers={"Authorization": f"Bearer {token(env, tmp_path)}"})  # fmt: skip
    assert response.status_code == 200, response.text
    assert response.json()["reply"]["skill"] == "help"  # the first message already has the model
