"""Faults injected for real into the distributed layout: Redis restarted and paused, PostgreSQL stopped, a message
that kills its worker every time.

The gateway and the workers run the commands compose runs, against servers each test starts for itself and
breaks (``servers.py``), so other test runs on the shared local servers are not disturbed. Clients send in a
closed loop throughout, as a widget does: ``POST /api/messages?wait=30`` with a ``client_msg_id``, and a 503 is
sent again with the same id after its ``Retry-After``. Every test checks that each accepted message ends with
exactly one reply in its session, and prints its figures (``pytest -s``); docs/reliability.md lists them.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from statistics import median
from typing import Any

import pytest
import requests
from support import eventually, server_database

from adapters.db import DeadLetter, Repository
from e2e.servers import RedisServer, postgres_cluster, redis_server
from e2e.test_compose_layout import BIN, ROOT, Layout, compose_command, free_port, wait_ready

pytestmark = pytest.mark.servers

TEXT = "现在几点"
#: compose.yaml's worker services, one process each.
WORKER_SERVICES = ("worker-dispatch", "worker-inference", "worker-reply-web")
CLIENTS = 8
#: Each client's cap on messages, so a run is bounded whatever happens.
MAX_PER_CLIENT = 2000
MESSAGES_PER_SESSION = 100
#: Seconds a POST waits for its reply before it is answered 202 ``pending``.
WAIT = 30
#: Seconds a client keeps sending one message again after 503s once the burst is told to stop.
RETRY_GRACE = 20
#: A request started while Redis was paused is answered within this many seconds (the product's Redis calls
#: give up after 2 s).
FAIL_FAST_SECONDS = 5.0
#: Seconds Redis stays paused, and pauses in one burst.
PAUSE_SECONDS = 10
PAUSES = 2
#: Redis restarts in one burst: each gives the losses described in ``REDIS_LOSES_MESSAGES`` a chance.
RESTARTS = 3
#: Seconds every accepted message has to be answered after a Redis fault: the visibility timeout (15 s) brings
#: back what a worker held, plus room.
SETTLE_SECONDS = 30
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"

CRASH_MARKER = "崩溃"
CRASH_SKILL = '''
import os

from skills.base import BaseSkill


class CrashSkill(BaseSkill):
    """Kills its worker process whenever the message holds the marker, as a native crash would."""

    def __init__(self):
        super().__init__(name="crash", description="崩溃 / kills its worker", triggers=[{marker!r}])

    def execute(self, context):
        if {marker!r} in context["message"]:
            os._exit(1)
        return "没事。"
'''


# -- the layout -----------------------------------------------------------------------------------------------------


@dataclass
class Stack:
    """A running gateway and workers, and how to reach them."""

    url: str
    token: str
    run: Layout
    env: dict[str, str]

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def start_worker(self, service: str, name: str) -> subprocess.Popen[bytes]:
        return self.run.start(name, [*compose_command(service), "--hostname", f"{name}@%h"])


@contextmanager
def layout(tmp_path: Path, redis: RedisServer, database_url: str, **env: str) -> Iterator[Stack]:
    """The gateway and one worker per stage service of compose.yaml, on ``redis`` (broker db 0, state db 1)."""
    logs = tmp_path / "logs"
    logs.mkdir()
    environment = {
        **os.environ,
        "BROKER_URL": redis.url(0),
        "REDIS_URL": redis.url(1),
        "DATABASE_URL": database_url,
        "JWT_SECRET": uuid.uuid4().hex + uuid.uuid4().hex,
        "HOST": "127.0.0.1",
        # INFO at least: a worker's "ready." line says it consumes.
        "LOG_LEVEL": "INFO",
        # One user sends the whole burst: far more than a person's limit.
        "RATE_LIMIT_PER_USER": "off",
        "RATE_LIMIT_PER_IP": "off",
        **env,
    }
    run = Layout(environment, logs)
    try:
        migrate = subprocess.run(compose_command("migrate"), cwd=ROOT, env=environment, capture_output=True, timeout=60)
        assert migrate.returncode == 0, migrate.stderr.decode()
        port = free_port()
        run.start("gateway", compose_command("gateway", port))
        token = subprocess.run(
            [str(BIN / "assistant"), "token", "--sub", "erin", "--role", "user", "--ttl", "3600"],
            cwd=ROOT, env=environment, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        stack = Stack(f"http://127.0.0.1:{port}", token, run, environment)
        for service in WORKER_SERVICES:
            stack.start_worker(service, service)
        wait_ready(f"{stack.url}/readyz", run)
        eventually(lambda: all(" ready." in run.log(s) for s in WORKER_SERVICES), 30, what="the workers", interval=0.1)
        yield stack
    finally:
        run.stop()


@pytest.fixture
def redis_db() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture
def scratch_database() -> Iterator[str]:
    """A database of its own on the shared PostgreSQL, for the tests that break only Redis."""
    yield from server_database(PG_ADMIN_URL, "DROP DATABASE IF EXISTS {name} WITH (FORCE)")


# -- the clients ----------------------------------------------------------------------------------------------------


@dataclass
class Attempt:
    """One POST: when it started (wall clock), how long it took, and what came back."""

    started: float
    seconds: float
    status: int
    retry_after: str | None


@dataclass
class Accepted:
    """A message the gateway accepted (200 or 202), as its client knows it."""

    session_id: str
    client_msg_id: str
    message_id: str
    first_sent: float
    accepted_at: float
    answered_in_post: bool
    #: The status of each POST of this message: 503s then the one that was accepted.
    statuses: list[int]
    #: True when the gateway took it for a resend of a message it had accepted already.
    duplicate: bool


@dataclass
class Burst:
    """``CLIENTS`` clients, each in a closed loop on sessions of its own until ``stop``."""

    stack: Stack
    name: str
    attempts: list[Attempt] = field(default_factory=list)
    accepted: list[Accepted] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    given_up: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _stopped_at: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for i in range(CLIENTS):
            client = f"{self.name}-{i}-{uuid.uuid4().hex[:6]}"
            thread = threading.Thread(target=self._client, args=(client,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stopped_at = time.monotonic()
        self._stop.set()
        for thread in self._threads:
            thread.join(WAIT + RETRY_GRACE + 15)
        assert not any(thread.is_alive() for thread in self._threads), "a client did not finish"

    def answered_since(self, moment: float) -> float | None:
        """When the first message sent after ``moment`` was answered within its POST, if one was yet."""
        with self._lock:
            return min((a.accepted_at for a in self.accepted if a.answered_in_post and a.first_sent > moment),
                       default=None)  # fmt: skip

    def _client(self, client: str) -> None:
        http = requests.Session()
        try:
            for n in range(MAX_PER_CLIENT):
                # A new session now and then: a transcript lists a session's latest 500 entries.
                session = f"{client}-{n // MESSAGES_PER_SESSION}"
                if self._stop.is_set() or not self._send(http, session, f"{session}-{n}"):
                    return
        except Exception as exc:  # the test reads these; a thread's exception would only be printed
            with self._lock:
                self.unexpected.append(f"{client}: {type(exc).__name__}: {exc}")
        finally:
            http.close()

    def _send(self, http: requests.Session, session: str, client_msg_id: str) -> bool:
        """Send one message until it is accepted; False when the client must stop."""
        body = {"text": TEXT, "session_id": session, "client_msg_id": client_msg_id}
        first_sent = time.time()
        statuses: list[int] = []
        while True:
            started = time.time()
            response = http.post(
                f"{self.stack.url}/api/messages?wait={WAIT}", json=body, headers=self.stack.headers, timeout=WAIT + 20
            )
            attempt = Attempt(started, time.time() - started, response.status_code, response.headers.get("Retry-After"))
            statuses.append(response.status_code)
            with self._lock:
                self.attempts.append(attempt)
            if response.status_code in (200, 202):
                data = response.json()
                with self._lock:
                    self.accepted.append(Accepted(session, client_msg_id, data["message_id"], first_sent, time.time(),
                                                  "reply" in data, statuses, bool(data.get("duplicate"))))  # fmt: skip
                return True
            if response.status_code != 503 or attempt.retry_after is None:
                with self._lock:
                    self.unexpected.append(f"{response.status_code} {response.headers} {response.text[:300]}")
                return False
            if self._stop.is_set() and time.monotonic() - self._stopped_at > RETRY_GRACE:
                with self._lock:
                    self.given_up.append(client_msg_id)
                return False
            time.sleep(float(attempt.retry_after))


def newcomers(stack: Stack, until: float, clients: int = 3) -> list[Attempt]:
    """Clients that each send new messages, one after another, until ``until``; every POST they made."""
    attempts: list[Attempt] = []

    def client(i: int) -> None:
        while time.time() < until:
            started = time.time()
            body = {
                "text": TEXT,
                "session_id": f"newcomer-{i}-{uuid.uuid4().hex[:8]}",
                "client_msg_id": uuid.uuid4().hex,
            }
            response = requests.post(f"{stack.url}/api/messages?wait={WAIT}", json=body, headers=stack.headers,
                                     timeout=WAIT + 20)  # fmt: skip
            attempts.append(Attempt(started, time.time() - started, response.status_code,
                                    response.headers.get("Retry-After")))  # fmt: skip

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT + 30)
    return attempts


# -- what the sessions hold afterwards ------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What the sessions show once every accepted message has its reply, or the wait for them ran out."""

    #: message id -> when it was answered (wall clock), for the messages answered in both places.
    answered_at: dict[str, float]
    #: message id -> the reply's ``error`` in the transcript (None for a normal answer).
    errors: dict[str, str | None]
    #: Accepted messages without a reply in the transcript or the reply stream, and where it is missing.
    unanswered: list[tuple[Accepted, str]]
    #: Message ids with more than one reply in the transcript or the stream, or recorded twice.
    twice: list[str]
    #: Replies to message ids that were never accepted.
    strays: list[str]

    def problems(self) -> list[str]:
        lost = [f"{a.message_id} (POSTs {a.statuses}, {'a resend' if a.duplicate else 'new'}; no reply in {where})"
                for a, where in self.unanswered]  # fmt: skip
        twice = [f"{m} answered twice" for m in self.twice]
        return lost + twice + [f"{m} answered, never accepted" for m in self.strays]


def settle(stack: Stack, burst: Burst, timeout: float) -> Outcome:
    """Wait up to ``timeout`` for every accepted message's reply, in the transcript (``GET /api/sessions/<id>``)
    and in the reply stream; then count what is missing, doubled, or answers a message never accepted."""
    expected: dict[str, set[str]] = {}
    for message in burst.accepted:
        expected.setdefault(message.session_id, set()).add(message.message_id)

    def look() -> dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
        seen = {}
        for session in expected:
            got = requests.get(f"{stack.url}/api/sessions/{session}", headers=stack.headers, timeout=10)
            assert got.status_code == 200, got.text
            seen[session] = (got.json()["entries"], read_stream(stack, session))
        return seen

    def complete() -> bool:
        for session, (entries, stream) in look().items():
            replied = {e["message_id"] for e in entries if e["kind"] == "reply"}
            if not expected[session] <= replied or not expected[session] <= {r["message_id"] for r in stream}:
                return False
        return True

    with contextlib.suppress(AssertionError):
        eventually(complete, timeout, what="every accepted message's reply", interval=0.5)
    time.sleep(1)  # a second reply, if one were coming, would be on its way by now
    outcome = Outcome({}, {}, [], [], [])
    by_id = {a.message_id: a for a in burst.accepted}
    for session, (entries, stream) in look().items():
        ids = expected[session]
        in_transcript = Counter(e["message_id"] for e in entries if e["kind"] == "reply")
        recorded = Counter(e["message_id"] for e in entries if e["kind"] == "message")
        in_stream = Counter(r["message_id"] for r in stream)
        for message_id in sorted(ids):
            where = [name for name, found in (("the transcript", in_transcript), ("the stream", in_stream))
                     if message_id not in found]  # fmt: skip
            if where:
                outcome.unanswered.append((by_id[message_id], " or ".join(where)))
        outcome.twice += [m for counts in (in_transcript, recorded, in_stream) for m, n in counts.items() if n > 1]
        outcome.strays += sorted((set(in_transcript) | set(in_stream)) - ids)
        outcome.errors |= {e["message_id"]: e["error"] for e in entries if e["kind"] == "reply"}
        # When a reply was answered: its POST's answer, or else the time the worker made the reply (the stream's
        # ids are Redis's clock, which stands still while Redis is paused).
        made = {e["message_id"]: e["timestamp"] for e in entries if e["kind"] == "reply"}
        for message_id in ids & set(made) & set(in_stream):
            accepted = by_id[message_id]
            outcome.answered_at[message_id] = accepted.accepted_at if accepted.answered_in_post else made[message_id]
    assert len(by_id) == len(burst.accepted), "one message id accepted for two client message ids"
    return outcome


def read_stream(stack: Stack, session: str) -> list[dict[str, Any]]:
    """Every reply in the session's reply stream, page by page."""
    replies: list[dict[str, Any]] = []
    cursor = ""
    while True:
        page = requests.get(f"{stack.url}/api/sessions/{session}/replies", params={"wait": "0", "after": cursor},
                            headers=stack.headers, timeout=10).json()  # fmt: skip
        if not page["replies"]:
            return replies
        replies += page["replies"]
        cursor = page["cursor"]


def dead_letters(database_url: str) -> list[DeadLetter]:
    repository = Repository.from_url(database_url)
    try:
        return repository.dead_letters()
    finally:
        repository.close()


def answered_after_fault(stack: Stack, session: str) -> float:
    """Send one new message in ``session``; the seconds it took to be answered (it must be, within its POST)."""
    started = time.monotonic()
    response = requests.post(
        f"{stack.url}/api/messages?wait={WAIT}",
        json={"text": TEXT, "session_id": session},
        headers=stack.headers,
        timeout=WAIT + 10,
    )
    assert response.status_code == 200, response.text
    assert response.json()["reply"]["skill"] == "time"
    assert response.json()["reply"]["error"] is None
    return time.monotonic() - started


@dataclass
class Figures:
    """What a fault test prints: counts, the slowest reply, and how soon service came back."""

    fault: str
    burst: Burst
    outcome: Outcome
    fault_ended: float

    def report(self) -> str:
        accepted = self.burst.accepted
        answered_at = self.outcome.answered_at
        answered = [a for a in accepted if a.message_id in answered_at]
        refused = sum(1 for a in self.burst.attempts if a.status == 503)
        in_post = sum(1 for a in accepted if a.answered_in_post)
        latency = [answered_at[a.message_id] - a.first_sent for a in answered] or [0.0]
        after = [at - self.fault_ended for at in answered_at.values() if at > self.fault_ended]
        drained = max(after, default=0.0)
        resumed = f"the first answer at +{min(after):.1f} s, " if after else ""
        return "\n".join([
            f"\n[{self.fault}]",
            f"  messages accepted {len(accepted)}, answered {len(answered)} ({in_post} within their POST), "
            f"lost {len(self.outcome.unanswered)}, answered twice {len(self.outcome.twice)}; 503s retried {refused}",
            f"  slowest reply {max(latency):.1f} s after its first send; median {median(latency):.2f} s",
            f"  after the fault ended: {resumed}every answered message answered by +{drained:.1f} s",
            *(f"  problem: {problem}" for problem in self.outcome.problems()[:10]),
        ])  # fmt: skip


class LostMessages(AssertionError):
    """Accepted messages without exactly one reply: the failure the Redis fault tests are expected to show."""


def assert_nothing_lost(outcome: Outcome) -> None:
    if problems := outcome.problems():
        raise LostMessages(f"{len(problems)} problems: " + "; ".join(problems))


#: Why the Redis fault tests fail today (docs/reliability.md has the evidence). Only a lost or doubled message is
#: expected (``raises``); any other failure fails the test. Not strict: a message was lost in 5 of 8 restart runs
#: and 4 of 5 pause runs, and a strict marker would fail every run that happens to lose none.
def assert_all_running(stack: Stack) -> None:
    """None of the layout's processes exited (none was restarted: the test starts each once)."""
    exited = [name for name, process in stack.run.processes if process.poll() is not None]
    assert exited == [], "\n".join(f"--- {name}\n{stack.run.log(name)[-4000:]}" for name in exited)


# -- the faults -----------------------------------------------------------------------------------------------------


@pytest.mark.timeout(150)
def test_redis_restarted_in_the_middle_of_a_burst(tmp_path: Path, redis_db: RedisServer, scratch_database: str) -> None:
    """Redis (broker and state) stopped with SIGTERM and started again on its port and folder, ~2 s down, a few
    times in one burst."""
    with layout(tmp_path, redis_db, scratch_database) as stack:
        burst = Burst(stack, "restart")
        burst.start()
        downs, recovered = [], []
        time.sleep(3)
        for _ in range(RESTARTS):
            stopped = time.time()
            redis_db.stop()
            time.sleep(2)
            redis_db.start()
            restarted = time.time()
            downs.append(restarted - stopped)
            # The next restart only once messages flow again: each restart then meets a busy pipeline.
            answered = eventually(partial(burst.answered_since, restarted), 20, what="an answer after the restart")
            recovered.append(answered - restarted)
            time.sleep(2)
        burst.stop()
        # The gateway and the workers were never restarted: they reconnected by themselves.
        assert_all_running(stack)
        outcome = settle(stack, burst, SETTLE_SECONDS)
        probe = answered_after_fault(stack, f"after-restart-{uuid.uuid4().hex[:6]}")
        fault = f"Redis restarted {RESTARTS} times, down {', '.join(f'{d:.1f}' for d in downs)} s"
        print(Figures(fault, burst, outcome, restarted).report())
        print(f"  after each restart, the first message sent after it answered within its POST at "
              f"+{', +'.join(f'{r:.1f}' for r in recovered)} s")  # fmt: skip
        print(f"  a new session's message after it all answered in {probe:.2f} s")
        assert burst.unexpected == [], burst.unexpected
        assert burst.given_up == []
        assert_nothing_lost(outcome)
        assert all(error is None for error in outcome.errors.values()), outcome.errors
        assert dead_letters(scratch_database) == []
        assert_all_running(stack)


@pytest.mark.timeout(150)
def test_redis_paused_requests_fail_fast_and_service_resumes(
    tmp_path: Path, redis_db: RedisServer, scratch_database: str
) -> None:
    """Redis stopped with SIGSTOP for 10 s, then SIGCONT, twice in one burst: connections hang rather than break."""
    with layout(tmp_path, redis_db, scratch_database) as stack:
        burst = Burst(stack, "pause")
        burst.start()
        during: list[Attempt] = []
        for _ in range(PAUSES):
            time.sleep(3)
            paused = time.time()
            redis_db.pause()
            # The burst's clients sit in their POSTs, waiting for replies; new clients come while Redis is paused.
            during += newcomers(stack, until=paused + PAUSE_SECONDS - FAIL_FAST_SECONDS)
            time.sleep(max(0.0, paused + PAUSE_SECONDS - time.time()))
            redis_db.resume()
            resumed = time.time()
        time.sleep(5)
        burst.stop()
        assert_all_running(stack)
        slowest = max((a.seconds for a in during), default=0.0)
        outcome = settle(stack, burst, SETTLE_SECONDS)
        probe = answered_after_fault(stack, f"after-pause-{uuid.uuid4().hex[:6]}")
        print(Figures(f"Redis paused {PAUSES} times for {PAUSE_SECONDS} s", burst, outcome, resumed).report())
        refused = sum(a.status == 503 and a.retry_after is not None for a in during)
        print(f"  new messages sent during the pauses: {len(during)}, {refused} refused with 503 and Retry-After,"
              f" the slowest answer in {slowest:.2f} s")  # fmt: skip
        print(f"  a new session's message after it all answered in {probe:.2f} s")
        assert during, "no new message was sent during the pause"
        assert all(a.status == 503 and a.retry_after for a in during), [(a.status, a.retry_after) for a in during]
        assert slowest < FAIL_FAST_SECONDS
        assert burst.unexpected == [], burst.unexpected
        assert burst.given_up == []
        assert_nothing_lost(outcome)
        assert all(error is None for error in outcome.errors.values()), outcome.errors
        assert dead_letters(scratch_database) == []
        assert_all_running(stack)


@pytest.mark.timeout(180)
def test_postgres_down_for_30_seconds(tmp_path: Path, redis_db: RedisServer) -> None:
    """PostgreSQL stopped (``pg_ctl stop -m fast``) for 30 s, then started on the same port and folder."""
    with postgres_cluster() as postgres, layout(tmp_path, redis_db, postgres.url) as stack:
        burst = Burst(stack, "pgdown")
        burst.start()
        time.sleep(3)
        stopped = time.time()
        postgres.stop()
        time.sleep(30)
        postgres.start()
        started = time.time()
        time.sleep(3)
        burst.stop()
        assert_all_running(stack)
        outcome = settle(stack, burst, 60)
        probe = answered_after_fault(stack, f"after-pg-{uuid.uuid4().hex[:6]}")
        print(Figures(f"PostgreSQL down {started - stopped:.1f} s", burst, outcome, started).report())
        print(f"  a new session's message after it all answered in {probe:.2f} s")
        assert burst.unexpected == [], burst.unexpected
        assert burst.given_up == []
        assert_nothing_lost(outcome)
        assert all(error is None for error in outcome.errors.values()), outcome.errors
        assert dead_letters(postgres.url) == []
        assert_all_running(stack)


class Supervisor:
    """Starts a worker again whenever it exits, as compose's ``restart: unless-stopped`` does."""

    def __init__(self, stack: Stack, service: str) -> None:
        self._stack = stack
        self._service = service
        self.exits: list[float] = []
        self._process = stack.start_worker(service, f"{service}-0")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(0.1):
            if self._process.poll() is not None:
                self.exits.append(time.time())
                self._process = self._stack.start_worker(self._service, f"{self._service}-{len(self.exits)}")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.mark.timeout(150)
def test_a_message_that_crashes_its_worker_every_time_is_dead_lettered(
    tmp_path: Path, redis_db: RedisServer, scratch_database: str
) -> None:
    """A skill kills the dispatch worker on one message every time; after MAX_DELIVERIES it is given up on."""
    skills = tmp_path / "skills"
    skills.mkdir()
    (skills / "crash.py").write_text(CRASH_SKILL.format(marker=CRASH_MARKER), encoding="utf-8")
    max_deliveries = 2
    with layout(tmp_path, redis_db, scratch_database, SKILLS_DIR=str(skills), MAX_DELIVERIES=str(max_deliveries)) as (
        stack
    ):
        # The dispatch worker runs under a supervisor; the layout's own one is stopped first.
        dispatch = next(process for name, process in stack.run.processes if name == "worker-dispatch")
        dispatch.terminate()
        dispatch.wait(15)
        supervisor = Supervisor(stack, "worker-dispatch")
        try:
            session = f"crash-{uuid.uuid4().hex[:6]}"
            secret = f"{CRASH_MARKER} 我的银行卡密码是 {uuid.uuid4().hex[:8]}"
            sent = time.time()
            accepted = requests.post(
                f"{stack.url}/api/messages?wait=0", json={"text": secret, "session_id": session},
                headers=stack.headers, timeout=10,
            )  # fmt: skip
            assert accepted.status_code == 202, accepted.text
            message_id = accepted.json()["message_id"]

            def error_reply() -> dict[str, Any] | None:
                got = requests.get(f"{stack.url}/api/sessions/{session}/replies", params={"wait": "2"},
                                   headers=stack.headers, timeout=10)  # fmt: skip
                replies = got.json().get("replies", []) if got.status_code == 200 else []
                return next((r for r in replies if r["message_id"] == message_id), None)

            reply = eventually(error_reply, 100, what="the error reply", interval=0.2)
            answered = time.time()
            assert reply["error"] == "stage_error", reply
            assert "抱歉" in reply["text"]
            # Each delivery up to MAX_DELIVERIES killed a worker; the next one was given up without running it.
            assert len(supervisor.exits) == max_deliveries, supervisor.exits
            probe = answered_after_fault(stack, session)
        finally:
            supervisor.stop()
        entries = requests.get(f"{stack.url}/api/sessions/{session}", headers=stack.headers, timeout=10).json()[
            "entries"
        ]
        assert [(e["kind"], e["error"]) for e in entries if e["message_id"] == message_id] == [("reply", "stage_error")]
        letters = dead_letters(scratch_database)
        assert [(d.message_id, d.task, d.deliveries) for d in letters] == [
            (message_id, "assistant.dispatch", max_deliveries + 1)
        ]
        # The table keeps the message's ids and shape for an operator, never what the user wrote.
        assert secret not in letters[0].body and "银行卡" not in letters[0].body and CRASH_MARKER not in letters[0].body
        assert "银行卡" not in letters[0].error
        print(
            f"\n[a message that kills its worker, MAX_DELIVERIES={max_deliveries}]"
            f"\n  worker deaths {len(supervisor.exits)}, then dead-lettered; the error reply came"
            f" {answered - sent:.1f} s after the message was sent"
            f"\n  the session's next message answered in {probe:.2f} s"
        )
        assert probe < 5
