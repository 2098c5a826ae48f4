"""Start-up of the processes that run the speech stages: without their models they stop with one clear error; with
them they load the models before their first message. Real processes, the real ``assistant`` command."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]
#: The message names the command that fixes it.
FIX = "assistant models install"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def environment(tmp_path: Path, models_dir: Path, distributed: bool) -> dict[str, str]:
    env = {
        **os.environ,
        "ASSISTANT_DATA_DIR": str(tmp_path / "data"),
        "ASSISTANT_CONFIG_DIR": str(tmp_path / "config"),
        "MODELS_DIR": str(models_dir),
        "LOG_LEVEL": "INFO",
    }
    if distributed:
        env |= {
            "BROKER_URL": "redis://127.0.0.1:6379/0",
            "REDIS_URL": "redis://127.0.0.1:6379/1",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
            "JWT_SECRET": "startup-test-secret-" + "s" * 32,
        }
    return env


@pytest.mark.parametrize("queues", ["asr", "tts", "dispatch,asr,tts"])
def test_a_speech_worker_without_its_models_stops_with_one_clear_error(tmp_path: Path, queues: str) -> None:
    env = environment(tmp_path, tmp_path / "no-models", distributed=True)
    done = subprocess.run([str(BIN / "assistant"), "worker", "--queues", queues], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    errors = [line for line in (done.stdout + done.stderr).splitlines() if FIX in line]
    assert len(errors) == 1 and str(tmp_path / "no-models") in errors[0], done.stderr


def test_a_worker_on_other_queues_needs_no_models(tmp_path: Path) -> None:
    env = environment(tmp_path, tmp_path / "no-models", distributed=True)
    worker = subprocess.Popen([str(BIN / "assistant"), "worker", "--queues", "inference", "--hostname",
                               f"startup-{os.getpid()}@%h"], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        time.sleep(4)
        assert worker.poll() is None
    finally:
        worker.terminate()
        worker.wait(10)


def test_assistant_run_without_models_stops_with_one_clear_error(tmp_path: Path) -> None:
    env = environment(tmp_path, tmp_path / "no-models", distributed=False)
    done = subprocess.run([str(BIN / "assistant"), "run", "--port", str(free_port())], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.count(FIX) == 1 and done.stdout == "", done.stderr


def test_assistant_run_loads_the_models_in_the_background_and_serves_at_once(tmp_path: Path, models_dir: Path) -> None:
    port = free_port()
    env = environment(tmp_path, models_dir, distributed=False)
    server = subprocess.Popen([str(BIN / "assistant"), "run", "--port", str(port)], env=env, cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    lines: list[str] = []
    try:
        assert server.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any("warmed up" in line and "piper" in line for line in lines):
            line = server.stdout.readline()
            if not line:
                break
            lines.append(line)
        output = "".join(lines)
        assert "whisper base warmed up" in output and "piper voice for en warmed up" in output, output
        # The server answered before the models were loaded: its banner comes first.
        assert output.index("Assistant running at") < output.index("whisper base warmed up"), output
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
    finally:
        server.terminate()
        server.wait(15)
