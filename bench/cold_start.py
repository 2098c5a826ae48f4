"""Cold start of a stage worker: process start to Celery's ``ready`` line, its memory, and the probe's ping.

What a message waits for when KEDA has scaled a stage to zero (deploy/README.md): the worker's imports, start and
model warm-up all happen before ``ready``. Runs against the local Redis and PostgreSQL, like ``bench.run``.

    .venv/bin/python -m bench.cold_start asr tts dispatch reply.web
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]
#: The speech stages need models; the tests' install is the quickest to find.
DEFAULT_MODELS = Path.home() / ".cache" / "assistant" / "test-models"
#: Threads of each worker, as compose.yaml runs them.
CONCURRENCY = {"asr": 2, "tts": 2, "inference": 2}


@dataclass(frozen=True, slots=True)
class ColdStart:
    """One worker's start."""

    #: The queue the worker consumed.
    queue: str
    #: Seconds from the process's start to Celery's ``ready`` line (models loaded and warmed up).
    ready_seconds: float
    #: Resident memory of the worker process when ready, MiB.
    rss_mib: int
    #: Seconds the liveness probe's ping took, and whether the worker answered it.
    ping_seconds: float
    ping_ok: bool


def rss_mib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) // 1024


def measure(queue: str, env: dict[str, str], logs: Path, timeout: float = 120) -> ColdStart:
    log_path = logs / f"{queue}.log"
    concurrency = str(CONCURRENCY.get(queue, 4))
    command = [str(BIN / "assistant"), "worker", "--queues", queue, "--concurrency", concurrency]
    with log_path.open("wb") as log:
        started = time.monotonic()
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        while b" ready." not in log_path.read_bytes():
            if process.poll() is not None or time.monotonic() - started > timeout:
                raise RuntimeError(f"worker for {queue} did not start:\n{log_path.read_text(errors='replace')[-2000:]}")
            time.sleep(0.05)
        ready = time.monotonic() - started
        memory = rss_mib(process.pid)
        # The probe of deploy/k8s/base/workers.yaml, with this machine's host name for the pod's.
        ping_started = time.monotonic()
        probe = (
            f'exec "{BIN}/celery" --app assistant.worker inspect ping --destination "celery@$(hostname)" --timeout 10'
        )
        ping = subprocess.run(["sh", "-c", probe], cwd=ROOT, env=env, capture_output=True, timeout=60)
        return ColdStart(queue, ready, memory, time.monotonic() - ping_started, ping.returncode == 0)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("queues", nargs="+", help="queues to start a worker for, one at a time")
    parser.add_argument("--broker-db", type=int, default=5, help="Redis database of the broker (state: the next)")
    parser.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS)
    args = parser.parse_args()
    env = {
        **os.environ,
        "BROKER_URL": f"redis://127.0.0.1:6379/{args.broker_db}",
        "REDIS_URL": f"redis://127.0.0.1:6379/{args.broker_db + 1}",
        "DATABASE_URL": os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        "JWT_SECRET": uuid.uuid4().hex * 2,
        "LOG_LEVEL": "INFO",
        "MODELS_DIR": str(args.models_dir),
    }
    with tempfile.TemporaryDirectory(prefix="cold-start-") as logs:
        for queue in args.queues:
            result = measure(queue, env, Path(logs))
            print(
                f"{result.queue:>16}: ready after {result.ready_seconds:5.2f} s, RSS {result.rss_mib} MiB; "
                f"probe ping {'ok' if result.ping_ok else 'FAILED'} in {result.ping_seconds:.2f} s"
            )
            for line in (Path(logs) / f"{queue}.log").read_text(errors="replace").splitlines():
                if "loaded" in line or "warmed up" in line:
                    print(f"{'':>18}{line.split(' ', 3)[-1]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
