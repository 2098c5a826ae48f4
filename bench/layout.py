"""Start and stop the servers under test: the distributed layout, the echo worker, the embedded process.

Every server is a child process in its own process group, so teardown can signal the whole group
(gunicorn's worker, anything a worker spawned) and escalate to SIGKILL; ``Layout.close`` runs from
``__exit__`` and from ``atexit``, so an exception or Ctrl-C in the benchmark never leaves servers behind.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".venv" / "bin"
DIAG_DIR = Path(__file__).resolve().parent / "diag"
HOST = "127.0.0.1"
REDIS = f"redis://{HOST}:6379"
POSTGRES_ADMIN = f"postgresql://postgres@{HOST}:5432/postgres"

#: Redis databases this benchmark may use (others' tests use 1-4 and 10-15).
BROKER_DB = 5
STATE_DB = 6

#: The load comes from one address and a few users, far past the gateway's default rate limits.
NO_RATE_LIMITS = {"RATE_LIMIT_PER_USER": "off", "RATE_LIMIT_PER_IP": "off"}

#: Environment variables passed through to the servers; everything else is left out on purpose.
_PASSED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR")


def base_env(root: Path = ROOT, diag: bool = False) -> dict[str, str]:
    """A clean environment; the servers import the project from ``root`` (a patched copy, for trials)."""
    env = {k: v for k, v in os.environ.items() if k in _PASSED_ENV or k.startswith("LC_")}
    env.setdefault("PATH", "/usr/bin:/bin")
    env["PYTHONUNBUFFERED"] = "1"
    # Ahead of the editable install's finder, so a copy at ``root`` wins; this tree for ``bench`` itself.
    paths = [str(root), *([str(ROOT)] if root != ROOT else []), *([str(DIAG_DIR)] if diag else [])]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def diag_env(gc_log_ms: float = 5.0, max_blocking_s: float = 0.05) -> dict[str, str]:
    """Environment that turns on the diagnostics: GC pause log, gevent's hub-blocking monitor."""
    return {
        "BENCH_GC_LOG_MS": f"{gc_log_ms:g}",
        "GEVENT_MONITOR_THREAD_ENABLE": "true",
        "GEVENT_MAX_BLOCKING_TIME": f"{max_blocking_s:g}",
    }


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def rss_kib(pid: int) -> int | None:
    """VmRSS of ``pid`` in KiB, or None when the process is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def child_pids(pid: int) -> list[int]:
    """Direct children of ``pid`` (every thread's children list, as the kernel keeps them)."""
    found: list[int] = []
    with contextlib.suppress(FileNotFoundError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(FileNotFoundError), open(f"/proc/{pid}/task/{task}/children") as handle:
                found += [int(p) for p in handle.read().split()]
    return sorted(set(found))


def http_json(
    method: str, url: str, token: str | None = None, body: Any = None, timeout: float = 5.0
) -> tuple[int, Any]:
    """A small blocking HTTP call for readiness checks and probes (the load itself uses aiohttp)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        try:
            payload = json.loads(exc.read() or b"null")
        except ValueError:
            payload = None
        return exc.code, payload


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time of ``pid`` in seconds, or None when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pids_named(comm: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as handle:
                    if handle.read().strip() == comm:
                        found.append(int(entry))
            except (FileNotFoundError, ProcessLookupError):
                continue
    return found


class CpuMeter:
    """CPU use of named process sets between ``start`` and ``stop``, as percent of one core."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self._groups = groups
        self._start: tuple[float, dict[str, float]] | None = None
        self._commands: dict[str, int] = {}
        self.result: dict[str, float] = {}
        #: Redis commands run during the window, by name (server-wide).
        self.redis_calls: dict[str, int] = {}

    def _sample(self) -> dict[str, float]:
        sample = {name: sum(cpu_seconds(p) or 0.0 for p in pids) for name, pids in self._groups.items()}
        # Everything the machine ran, ours or not (other tenants, the kernel): busy jiffies from /proc/stat.
        with open("/proc/stat") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
        busy = sum(fields[:3]) + sum(fields[5:8])  # user nice system, irq softirq steal
        sample["machine_busy"] = busy / os.sysconf("SC_CLK_TCK")
        sample["machine_steal"] = fields[7] / os.sysconf("SC_CLK_TCK")
        return sample

    def start(self) -> None:
        self._commands = redis_command_calls()
        self._start = (time.monotonic(), self._sample())

    def stop(self) -> dict[str, float]:
        assert self._start is not None, "start() first"
        began, before = self._start
        wall = time.monotonic() - began
        after = self._sample()
        calls = redis_command_calls()
        self.redis_calls = {k: v - self._commands.get(k, 0) for k, v in calls.items() if v > self._commands.get(k, 0)}
        # A process that exited in between takes its CPU time with it: never below zero.
        self.result = {name: round(max(0.0, 100 * (after[name] - before[name]) / wall), 1) for name in after}
        # What ran beside the benchmark on the same cores (others' tests, unattributed kernel time).
        ours = sum(v for k, v in self.result.items() if not k.startswith("machine_"))
        self.result["others"] = round(max(0.0, self.result["machine_busy"] - ours), 1)
        return self.result


def redis_command_calls() -> dict[str, int]:
    """Calls per command since the Redis server started (server-wide: others' tests count too)."""
    import redis

    client = redis.Redis.from_url(f"{REDIS}/0")
    try:
        stats = client.info("commandstats")
    except redis.RedisError:
        return {}
    finally:
        client.close()
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}


def shared_server_pids() -> dict[str, list[int]]:
    """The local Redis and every PostgreSQL process (shared with others' tests: an upper bound)."""
    return {"redis-server": _pids_named("redis-server"), "postgres(all)": _pids_named("postgres")}


class ServerError(RuntimeError):
    """A server did not start or answer as it should."""


@dataclass
class Proc:
    """One server child process, the leader of its own process group, logging to a file."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    #: Signal for a quick, orderly stop (gunicorn: SIGINT is its quick shutdown).
    stop_signal: int = signal.SIGTERM

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def stop(self, timeout: float = 8.0) -> None:
        """Signal the group, wait, then SIGKILL whatever of the group is left."""
        pgid = self.popen.pid
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, self.stop_signal)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.popen.poll()
            if not _group_alive(pgid):
                break
            time.sleep(0.05)
        else:
            logger.warning("%s (pid %d) did not stop in %.0f s; killing its process group", self.name, pgid, timeout)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # Zombies still count for killpg(0); a group whose members are all zombies is done.
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


class Layout:
    """Owns child processes and a scratch folder; ``close`` kills every child, also on error and at exit."""

    #: The servers' environment, set by each layout.
    env: dict[str, str]

    def __init__(self, keep_logs: bool = False, root: Path = ROOT) -> None:
        self.root = root
        self.procs: list[Proc] = []
        self.workdir = Path(tempfile.mkdtemp(prefix=f"bench-{type(self).__name__.lower()}-"))
        self.keep_logs = keep_logs
        self._closed = False
        atexit.register(self.close)

    def __enter__(self) -> Self:
        return self

    def token(self, subject: str) -> str:
        """A user token for these servers' settings, from ``assistant token``."""
        result = subprocess.run(
            [str(BIN / "assistant"), "token", "--sub", subject, "--role", "user"],
            cwd=self.root, env=self.env, capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        return result.stdout.strip()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def spawn(self, name: str, argv: list[str], env: dict[str, str], stop_signal: int = signal.SIGTERM) -> Proc:
        log_path = self.workdir / f"{name}.log"
        with open(log_path, "wb") as log:
            popen = subprocess.Popen(
                argv, cwd=self.root, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        proc = Proc(name, popen, log_path, stop_signal)
        self.procs.append(proc)
        logger.info("started %s (pid %d), log %s", name, proc.pid, log_path)
        return proc

    def stop_proc(self, proc: Proc) -> None:
        proc.stop()
        if proc in self.procs:
            self.procs.remove(proc)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for proc in reversed(self.procs):
            try:
                proc.stop()
            except Exception:
                logger.exception("stopping %s failed", proc.name)
        self.procs.clear()
        try:
            self.cleanup()
        finally:
            if self.keep_logs:
                print(f"logs kept in {self.workdir}", file=sys.stderr)
            else:
                shutil.rmtree(self.workdir, ignore_errors=True)

    def cleanup(self) -> None:
        """Extra teardown after the processes are gone (databases, keys)."""

    def log_marks(self) -> dict[str, int]:
        """Current size of each server log, to read only what a scenario appended (``diag_since``)."""
        return {proc.name: proc.log_path.stat().st_size for proc in self.procs if proc.log_path.exists()}

    def diag_since(self, marks: dict[str, int]) -> dict[str, Any]:
        """GC pauses and gevent hub-blocked reports logged since ``marks`` (servers started with ``diag``)."""
        summary: dict[str, Any] = {}
        for proc in self.procs:
            with open(proc.log_path, "rb") as log:
                log.seek(marks.get(proc.name, 0))
                text = log.read().decode("utf-8", "replace")
            pauses = [
                (int(m.group(1)), float(m.group(2)))
                for m in re.finditer(r"BENCH-GC pid=\d+ gen=(\d) ms=([\d.]+)", text)
            ]
            blocked = text.count("appears to be blocked")
            if not pauses and not blocked:
                continue
            entry: dict[str, Any] = {"gevent_hub_blocked_reports": blocked}
            for gen in (0, 1, 2):
                ms = [p for g, p in pauses if g == gen]
                if ms:
                    entry[f"gc_gen{gen}_pauses"] = len(ms)
                    entry[f"gc_gen{gen}_max_ms"] = max(ms)
                    entry[f"gc_gen{gen}_total_ms"] = round(sum(ms), 1)
            summary[proc.name] = entry
        return summary

    def check_alive(self) -> None:
        for proc in self.procs:
            if not proc.alive():
                raise ServerError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.log_tail()}")

    def wait_ready(self, base_url: str, timeout: float = 60.0) -> None:
        """Poll ``/readyz`` until it answers 200 (broker, Redis and database reachable)."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                status, last = http_json("GET", f"{base_url}/readyz", timeout=3)
                if status == 200:
                    return
            except OSError as exc:
                last = exc
            time.sleep(0.2)
        raise ServerError(f"{base_url}/readyz not ready after {timeout:.0f} s: {last}")

    def probe(self, base_url: str, token: str, timeout: float = 30.0) -> None:
        """One message through the whole pipeline must come back with its reply."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            self.check_alive()
            status, last = http_json("POST", f"{base_url}/api/messages?wait=10", token, {"text": "现在几点"}, 15)
            if status == 200 and last.get("reply", {}).get("skill") == "time":
                return
            time.sleep(0.5)
        raise ServerError(f"probe message got no reply within {timeout:.0f} s: {last}")


@dataclass
class DistributedConfig:
    """What the distributed layout starts (the brief's layout by default)."""

    dispatch_workers: int = 2
    concurrency: int = 4
    log_level: str = "INFO"
    gateway_workers: int = 1
    #: Log GC pauses (``bench/diag``) and gevent hub blocking in the servers.
    diag: bool = False
    extra_env: dict[str, str] = field(default_factory=dict)
    #: Redis databases of the broker and the state (flushed before and after).
    broker_db: int = BROKER_DB
    state_db: int = STATE_DB


class Distributed(Layout):
    """Gateway (gunicorn + gevent), dispatch workers d1, d2, and one worker ``r`` on inference and reply.web."""

    def __init__(self, config: DistributedConfig | None = None, keep_logs: bool = False, root: Path = ROOT) -> None:
        super().__init__(keep_logs, root)
        self.config = config or DistributedConfig()
        self.database = f"bench_{os.getpid()}"
        self.port = free_port()
        self.base_url = f"http://{HOST}:{self.port}"
        self.broker_url = f"{REDIS}/{self.config.broker_db}"
        self.redis_url = f"{REDIS}/{self.config.state_db}"
        self.env = (
            base_env(root, self.config.diag)
            | {
                "BROKER_URL": self.broker_url,
                "REDIS_URL": self.redis_url,
                "DATABASE_URL": f"postgresql://postgres@{HOST}:5432/{self.database}",
                "JWT_SECRET": secrets.token_urlsafe(48),
                "PORT": str(self.port),
                "HOST": HOST,
                "LOG_LEVEL": self.config.log_level,
                "ASSISTANT_CONFIG_DIR": str(root / "config"),
            }
            | NO_RATE_LIMITS
            | (diag_env() if self.config.diag else {})
            | self.config.extra_env
        )
        self.gateway: Proc | None = None
        self.workers: dict[str, Proc] = {}
        self._db_created = False
        self._hostname = socket.gethostname()

    def start(self) -> Distributed:
        _flush_redis(self.config.broker_db, self.config.state_db)
        _create_database(self.database)
        self._db_created = True
        migrate = subprocess.run(
            [str(BIN / "assistant"), "migrate"],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if migrate.returncode != 0:
            raise ServerError(f"assistant migrate failed:\n{migrate.stdout}\n{migrate.stderr}")
        self.gateway = self.spawn(
            "gateway",
            [str(BIN / "assistant"), "gateway", "--workers", str(self.config.gateway_workers)],
            self.env,
            stop_signal=signal.SIGINT,
        )
        c = str(self.config.concurrency)
        for i in range(1, self.config.dispatch_workers + 1):
            self._start_worker(f"d{i}", ["--queues", "dispatch", "--concurrency", c])
        self._start_worker("r", ["--queues", "inference,reply.web", "--concurrency", c])
        self.wait_ready(self.base_url)
        self.wait_workers(list(self.workers))
        self.probe(self.base_url, self.token("bench-probe"))
        return self

    def _start_worker(self, name: str, args: list[str]) -> Proc:
        argv = [str(BIN / "assistant"), "worker", *args, "--hostname", f"{name}@%h"]
        proc = self.spawn(f"worker-{name}", argv, self.env)
        self.workers[name] = proc
        return proc

    def start_echo_worker(self, concurrency: int = 4) -> Proc:
        """The bare Celery worker of the ``echo`` scenario, on the same broker."""
        argv = [sys.executable, "-m", "bench.echo", "--concurrency", str(concurrency), "--hostname", "echo@%h"]
        env = self.env | {"BENCH_ECHO_BROKER_URL": self.broker_url, "BENCH_ECHO_REDIS_URL": self.redis_url}
        proc = self.spawn("worker-echo", argv, env)
        self.workers["echo"] = proc
        self.wait_workers(["echo"])
        return proc

    def wait_workers(self, names: list[str], timeout: float = 60.0) -> None:
        """Until every named worker answers a remote-control ping on the broker."""
        from celery import Celery

        wanted = {f"{name}@{self._hostname}" for name in names}
        app = Celery("bench-ping", broker=self.broker_url, set_as_current=False)
        app.conf.broker_connection_retry_on_startup = True
        try:
            deadline = time.monotonic() + timeout
            seen: set[str] = set()
            while time.monotonic() < deadline:
                self.check_alive()
                replies = app.control.ping(destination=sorted(wanted), timeout=1.0) or []
                seen |= {host for reply in replies for host in reply}
                if wanted <= seen:
                    return
            raise ServerError(f"workers {sorted(wanted - seen)} did not answer a ping within {timeout:.0f} s")
        finally:
            app.close()

    def gateway_worker_pids(self) -> list[int]:
        assert self.gateway is not None
        return child_pids(self.gateway.pid)

    def memory(self) -> dict[str, Any]:
        """RSS in MiB: the gunicorn worker(s) summed, the master, and each Celery worker process."""
        assert self.gateway is not None
        gateway_pids = self.gateway_worker_pids()
        figures: dict[str, Any] = {
            "gateway_workers_rss_mib": _mib(sum(rss_kib(p) or 0 for p in gateway_pids)),
            "gateway_worker_pids": gateway_pids,
            "gateway_master_rss_mib": _mib(rss_kib(self.gateway.pid) or 0),
        }
        for name, proc in self.workers.items():
            # The threads pool keeps a worker in one process; children are summed in case a pool forks.
            pids = [proc.pid, *child_pids(proc.pid)]
            figures[f"worker_{name}_rss_mib"] = _mib(sum(rss_kib(p) or 0 for p in pids))
        return figures

    def cpu_meter(self) -> CpuMeter:
        """A meter over the gateway, each worker, this client, Redis and PostgreSQL."""
        assert self.gateway is not None
        groups = {"gateway": [self.gateway.pid, *self.gateway_worker_pids()]}
        groups |= {f"worker_{name}": [proc.pid, *child_pids(proc.pid)] for name, proc in self.workers.items()}
        groups["client"] = [os.getpid()]
        return CpuMeter(groups | shared_server_pids())

    def cleanup(self) -> None:
        if self._db_created:
            _drop_database(self.database)
        _flush_redis(self.config.broker_db, self.config.state_db)


class Embedded(Layout):
    """``assistant run`` with nothing configured but a scratch data folder."""

    def __init__(self, keep_logs: bool = False, diag: bool = False, root: Path = ROOT) -> None:
        super().__init__(keep_logs, root)
        self.port = free_port()
        self.base_url = f"http://{HOST}:{self.port}"
        data = {"ASSISTANT_DATA_DIR": str(self.workdir / "data")}
        self.env = base_env(root, diag) | data | NO_RATE_LIMITS | (diag_env() if diag else {})
        self.proc: Proc | None = None

    def start(self) -> Embedded:
        argv = [str(BIN / "assistant"), "run", "--port", str(self.port)]
        self.proc = self.spawn("embedded", argv, self.env)
        self.wait_ready(self.base_url)
        self.probe(self.base_url, self.token("bench-probe"))
        return self

    def cpu_meter(self) -> CpuMeter:
        assert self.proc is not None
        return CpuMeter({"embedded": [self.proc.pid], "client": [os.getpid()]})

    def memory(self) -> dict[str, Any]:
        assert self.proc is not None
        return {"embedded_rss_mib": _mib(rss_kib(self.proc.pid) or 0)}


def _mib(kib: int) -> float:
    return round(kib / 1024, 1)


def _flush_redis(*dbs: int) -> None:
    import redis

    for db in dbs:
        client = redis.Redis.from_url(f"{REDIS}/{db}")
        try:
            client.flushdb()
        finally:
            client.close()


def _create_database(name: str) -> None:
    import psycopg

    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')


def _drop_database(name: str) -> None:
    import psycopg

    try:
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except psycopg.Error:
        logger.exception("could not drop database %s", name)
