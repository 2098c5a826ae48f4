"""Throwaway Redis and PostgreSQL servers that one test owns, so it can stop, pause and restart them.

The shared local servers serve other test runs at the same time: a fault test breaks only its own. Each server
runs on a free port in a temporary folder, and ``close`` kills it and removes the folder, whatever happened.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

#: Seconds a server may take to accept connections after it was started.
START_TIMEOUT = 30


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until(check: Callable[[], bool], what: str, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not come up within {timeout:g} s")


class RedisServer:
    """``redis-server`` with an append-only file synced on every write, as compose runs it; one port, one folder.

    Stopped and started again, it keeps its port and folder, so it comes back with what it had (the AOF).
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.paused = False

    def url(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        command = [
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.directory),
            "--logfile", str(self.directory / "redis.log"),
        ]  # fmt: skip
        self.process = subprocess.Popen(command, start_new_session=True)
        client = redis.Redis(port=self.port, socket_timeout=1, socket_connect_timeout=1)
        try:
            _wait_until(lambda: self._answers(client), f"redis-server on port {self.port}")
        finally:
            client.close()

    def _answers(self, client: redis.Redis) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {self.process.returncode}: {self.log()[-2000:]}")
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        """SIGTERM, as ``docker compose restart`` sends: Redis syncs its AOF and exits."""
        if self.process is None:
            return
        self.resume()
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        self.process = None

    def pause(self) -> None:
        """SIGSTOP: connections stay open and nothing answers, as a hung or swapped-out server behaves."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        if self.process is not None and self.paused:
            self.process.send_signal(signal.SIGCONT)
        self.paused = False

    def log(self) -> str:
        path = self.directory / "redis.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def close(self) -> None:
        if self.process is not None:
            self.resume()
            self.process.kill()
            self.process.wait(10)
            self.process = None


@contextmanager
def redis_server() -> Iterator[RedisServer]:
    """A started ``RedisServer`` in a fresh folder; killed and removed at the end of the block."""
    directory = Path(tempfile.mkdtemp(prefix="faults-redis-"))
    server = RedisServer(directory)
    try:
        server.start()
        yield server
    finally:
        server.close()
        shutil.rmtree(directory, ignore_errors=True)


def postgres_bin() -> Path:
    """The newest installed PostgreSQL's programs folder (Debian's layout)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parent.parent.name))
    if not found:
        raise RuntimeError("no PostgreSQL under /usr/lib/postgresql")
    return found[-1].parent


class PostgresCluster:
    """A PostgreSQL cluster of its own (initdb) in a temporary folder, on a free port, trust authentication.

    PostgreSQL refuses to run as root, so as root the folder is given to the ``postgres`` user and every
    command runs as that user (``runuser``); anyone else runs them as themselves.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.data = directory / "data"
        self.port = free_port()
        self.bin = postgres_bin()
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            account = pwd.getpwnam("postgres")
            os.chown(directory, account.pw_uid, account.pw_gid)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *command: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        argv = [str(self.bin / command[0]), *command[1:]]
        if self._as_postgres:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=self.directory)

    def _check(self, result: subprocess.CompletedProcess[str], what: str) -> None:
        if result.returncode != 0:
            raise RuntimeError(f"{what} failed ({result.returncode}): {result.stdout}{result.stderr}\n{self.log()}")

    def init(self) -> None:
        result = self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
                           "--locale=C", "--no-sync")  # fmt: skip
        self._check(result, "initdb")

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.directory}"
        result = self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.directory / "postgres.log"),
                           "-w", "-t", str(START_TIMEOUT), "start")  # fmt: skip
        self._check(result, "pg_ctl start")

    def stop(self, mode: str = "fast") -> None:
        """``pg_ctl stop -m fast``: open connections are cut and the server shuts down, as a restart does."""
        self._check(self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop"), "pg_ctl stop")

    def log(self) -> str:
        path = self.directory / "postgres.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def close(self) -> None:
        """Stop the server if it runs, whatever state it is in."""
        pid_file = self.data / "postmaster.pid"
        if not pid_file.exists():
            return
        with contextlib.suppress(Exception):
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", timeout=20)
        if pid_file.exists():
            with contextlib.suppress(Exception):
                os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)


@contextmanager
def postgres_cluster() -> Iterator[PostgresCluster]:
    """A started ``PostgresCluster``; stopped and removed at the end of the block."""
    # Not under pytest's basetemp: its folders are private to the user running the tests.
    directory = Path(tempfile.mkdtemp(prefix="faults-pg-"))
    cluster: PostgresCluster | None = None
    try:
        cluster = PostgresCluster(directory)
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        if cluster is not None:
            cluster.close()
        shutil.rmtree(directory, ignore_errors=True)
