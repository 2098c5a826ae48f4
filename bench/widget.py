"""Website chat benchmark: what a page carrying the widget waits for, in the embedded and the Redis layout.

    .venv/bin/python -m bench.widget                                  # both layouts, about 2 minutes
    .venv/bin/python -m bench.widget --layout embedded --iterations 50 --handoffs 10

Each layout runs as child processes (``bench/layout.py``): ``assistant run``; or a gunicorn gateway, one dispatch
worker and one worker on inference and reply.web, on Redis DBs 5 (broker) and 6 (state) and a PostgreSQL database
of its own. A site is registered with ``assistant sites add --origin http://shop.test`` and every visitor request
carries ``Origin: http://shop.test``, as a page of that shop would send it. One client, one request at a time:

- the CORS preflight of ``POST /api/messages``;
- ``POST /api/visitor-tokens``;
- a stream ticket, then ``GET /api/sessions/<id>/events?ticket=`` until its first byte;
- the widget's round trip: ``POST /api/messages?wait=0`` (``现在几点``: the time skill's quick answer) on a session
  whose stream is open, until its ``reply`` event arrives on the stream;
- a handoff: the visitor's ``转人工`` until ``GET /api/operator/sessions`` lists it (polled back to back) and until
  the visitor's stream says ``waiting``; the operator's take until the visitor's stream says ``active``; the
  operator's message until it arrives on the visitor's stream. Each handoff is a new session, released after.

The stream openings run last: in the embedded server each closed stream holds a thread until its next keep-alive
(15 s) finds the socket gone. It also prints the sizes of the widget's and the operator page's scripts.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import logging
import math
import os
import queue
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from bench.client import percentile
from bench.layout import BIN, ROOT, CpuMeter, Distributed, DistributedConfig, Embedded, Layout, ServerError
from bench.voice import DEFAULT_MODELS_DIR

ORIGIN = "http://shop.test"
#: Redis databases of the Redis layout (broker, state): ``bench.run``'s, flushed before and after.
BROKER_DB, STATE_DB = 5, 6
#: The time skill answers this at once, and visitors may use it.
QUICK = "现在几点"
ASK_FOR_HUMAN = "转人工"
AGENT_TEXT = "您好，我是客服，请问有什么可以帮您？"
#: Visitors get tokens far faster than any page would ask; the per-IP and per-user limits are off already.
EXTRA_ENV = {"RATE_LIMIT_VISITOR_TOKENS": "off"}
SCRIPTS = (ROOT / "ingress" / "static" / "widget.js", ROOT / "ingress" / "static" / "operator.js")
TIMEOUT = 30.0
#: Seconds a held stream's opening or the health check may take before the server counts as full.
HOLD_TIMEOUT = 5.0

#: The rows of the table: key, label.
ROWS = (
    ("preflight", "CORS preflight OPTIONS /api/messages"),
    ("visitor_token", "POST /api/visitor-tokens"),
    ("stream_open", "stream ticket + events until 1st byte"),
    ("round_trip", "POST ?wait=0 -> reply on the stream"),
    ("post_202", "  of which the POST's 202"),
    ("handoff_listed", "转人工 -> operator list shows it"),
    ("handoff_waiting", "转人工 -> visitor told waiting"),
    ("handoff_active", "take -> visitor told active"),
    ("agent_reply", "operator message -> visitor's stream"),
)


@dataclass(frozen=True, slots=True)
class Event:
    """One SSE event as the client read it, with the ``perf_counter`` of its arrival."""

    kind: str
    data: dict[str, Any]
    at: float


class EventStream:
    """A session's event stream opened with a ticket, as the widget's ``EventSource`` opens it; a thread queues each
    event with the moment it was read."""

    def __init__(self, visitor: Visitor, session_id: str, after: str | None = None, timeout: float = 60) -> None:
        ticket = visitor.ticket(session_id)
        params = {"ticket": ticket} | ({"after": after} if after else {})
        self.response = requests.get(f"{visitor.base_url}/api/sessions/{session_id}/events", params=params,
                                     headers={"Origin": ORIGIN, "Accept": "text/event-stream"}, stream=True,
                                     timeout=(5, timeout))  # fmt: skip
        self.response.raise_for_status()
        connection = self.response.raw.connection
        self._socket: socket.socket | None = connection.sock if connection is not None else None
        if self._socket is not None:
            self._socket.settimeout(60)  # ``timeout`` bounds the opening; events may be a keep-alive (15 s) apart
        self.events: queue.Queue[Event] = queue.Queue()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        fields: dict[str, str] = {}
        try:
            for line in self.response.iter_lines(chunk_size=None, decode_unicode=True):
                if line == "":
                    if "data" in fields:
                        self.events.put(Event(fields.get("event", ""), json.loads(fields["data"]), time.perf_counter()))
                    fields = {}
                elif not line.startswith(":"):
                    name, _, value = line.partition(":")
                    fields[name] = value.removeprefix(" ")
        except (requests.RequestException, AttributeError, ValueError):
            return  # closed

    def until(self, found: Callable[[Event], bool], timeout: float = TIMEOUT) -> Event:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ServerError(f"no awaited event on the stream within {timeout:.0f} s")
            try:
                event = self.events.get(timeout=remaining)
            except queue.Empty:
                continue
            if found(event):
                return event

    def close(self) -> None:
        """Closed as a page closes it, at once: the reader thread sits in a read that only the next keep-alive would
        end, and closing the response from here would wait for it. A reset rather than a FIN, so the server's next
        write to the stream fails at once and frees what held it (in the embedded server, a thread)."""
        if self._socket is not None:
            with contextlib.suppress(OSError):  # already closed: the server ended the stream
                self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self._socket.shutdown(socket.SHUT_RDWR)
        self._thread.join(5)
        self.response.close()


class Visitor:
    """A page of the shop talking to the gateway: every request carries its ``Origin``; one keep-alive connection."""

    def __init__(self, base_url: str, site_key: str) -> None:
        self.base_url = base_url
        self.site_key = site_key
        self.http = requests.Session()
        self.http.headers["Origin"] = ORIGIN
        self.token = self.new_token()
        self.http.headers["Authorization"] = f"Bearer {self.token}"

    def new_token(self) -> str:
        answer = self.http.post(f"{self.base_url}/api/visitor-tokens", json={"site_key": self.site_key},
                                timeout=TIMEOUT)  # fmt: skip
        _expect(answer, 201)
        token: str = answer.json()["token"]
        return token

    def preflight(self) -> None:
        headers = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
        answer = self.http.options(f"{self.base_url}/api/messages", headers=headers, timeout=TIMEOUT)
        _expect(answer, 204)
        if answer.headers.get("Access-Control-Allow-Origin") != ORIGIN:
            raise ServerError(f"preflight did not allow {ORIGIN}: {dict(answer.headers)}")

    def say(self, text: str, session_id: str, wait: float = 0) -> dict[str, Any]:
        body = {"text": text, "session_id": session_id, "client_msg_id": str(uuid.uuid4())}
        answer = self.http.post(f"{self.base_url}/api/messages", params={"wait": f"{wait:g}"}, json=body,
                                timeout=TIMEOUT + wait)  # fmt: skip
        _expect(answer, 200 if wait else 202)
        result: dict[str, Any] = answer.json()
        return result

    def ticket(self, session_id: str) -> str:
        answer = self.http.post(f"{self.base_url}/api/sessions/{session_id}/stream-ticket", timeout=TIMEOUT)
        _expect(answer, 201)
        ticket: str = answer.json()["ticket"]
        return ticket

    def open_until_first_byte(self, session_id: str) -> None:
        """A ticket, then the stream until its first byte (the ``retry:`` line); closed after."""
        url = f"{self.base_url}/api/sessions/{session_id}/events"
        headers = {"Origin": ORIGIN, "Accept": "text/event-stream"}
        params = {"ticket": self.ticket(session_id)}
        with requests.get(url, params=params, headers=headers, stream=True, timeout=TIMEOUT) as answer:
            _expect(answer, 200)
            first = next(answer.iter_content(chunk_size=1))
            if first != b"r":
                raise ServerError(f"the stream began with {first!r}, not its retry line")


class Operator:
    """An operator at ``/operator``: an agent token, no cross-origin ``Origin`` (the page is the gateway's own)."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {token}"

    def listed(self) -> set[str]:
        answer = self.http.get(f"{self.base_url}/api/operator/sessions", timeout=TIMEOUT)
        _expect(answer, 200)
        return {s["session_id"] for s in answer.json()["sessions"]}

    def act(self, action: str, session_id: str, body: dict[str, Any] | None = None, status: int = 200) -> None:
        answer = self.http.post(f"{self.base_url}/api/operator/sessions/{session_id}/{action}", json=body,
                                timeout=TIMEOUT)  # fmt: skip
        _expect(answer, status)


def _expect(answer: requests.Response, status: int) -> None:
    if answer.status_code != status:
        raise ServerError(f"{answer.request.method} {answer.url.split('?')[0]}: {answer.status_code} (wanted "
                          f"{status}): {answer.text[:300]}")  # fmt: skip


def void(_: object) -> None:
    """Drops a step's result: ``timed`` measures calls, not what they return."""


def timed(step: Callable[[], None], iterations: int, warmup: int) -> list[float]:
    """Milliseconds of each of ``iterations`` calls of ``step``, after ``warmup`` unmeasured ones."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(iterations):
        began = time.perf_counter()
        step()
        times.append((time.perf_counter() - began) * 1000)
    return times


def reply_to(message_id: str) -> Callable[[Event], bool]:
    return lambda event: event.kind == "reply" and event.data["message_id"] == message_id


def round_trips(visitor: Visitor, iterations: int, warmup: int) -> tuple[list[float], list[float]]:
    """The widget's send: ``?wait=0``, then the ``reply`` event on the session's open stream."""
    session_id = f"bench-{uuid.uuid4().hex}"
    opened = visitor.say(QUICK, session_id, wait=10)  # the session is the visitor's before its stream opens
    stream = EventStream(visitor, session_id, after=opened["reply"]["id"])
    total: list[float] = []
    accepted: list[float] = []
    try:
        for n in range(warmup + iterations):
            began = time.perf_counter()
            message_id: str = visitor.say(QUICK, session_id)["message_id"]
            answered = time.perf_counter()
            reply = stream.until(reply_to(message_id))
            if reply.data.get("skill") != "time":
                raise ServerError(f"the time skill did not answer: {reply.data}")
            if n >= warmup:
                total.append((reply.at - began) * 1000)
                accepted.append((answered - began) * 1000)
    finally:
        stream.close()
    return total, accepted


def handoffs(visitor: Visitor, operator: Operator, iterations: int, warmup: int) -> dict[str, list[float]]:
    """Each on a new session with its stream open: 转人工, listed, take, the operator's message; then released."""
    figures: dict[str, list[float]] = {"handoff_listed": [], "handoff_waiting": [], "handoff_active": [],
                                       "agent_reply": []}  # fmt: skip
    for n in range(warmup + iterations):
        session_id = f"bench-{uuid.uuid4().hex}"
        opened = visitor.say(QUICK, session_id, wait=10)
        stream = EventStream(visitor, session_id, after=opened["reply"]["id"])
        try:
            began = time.perf_counter()
            visitor.say(ASK_FOR_HUMAN, session_id)
            while session_id not in operator.listed():
                pass  # back to back: the figure includes up to one listing's time
            listed = time.perf_counter()
            waiting = stream.until(lambda e: e.kind == "handoff" and e.data["handoff"]["status"] == "waiting")
            taking = time.perf_counter()
            operator.act("take", session_id)
            active = stream.until(lambda e: e.kind == "handoff" and e.data["handoff"]["status"] == "active")
            sending = time.perf_counter()
            operator.act("messages", session_id, {"text": AGENT_TEXT}, status=202)
            agent = stream.until(lambda e: e.kind == "reply" and e.data["role"] == "agent")
            if agent.data["text"] != AGENT_TEXT:
                raise ServerError(f"the operator's message came as {agent.data}")
        finally:
            stream.close()
        # After the close: the handback is written to the closed stream, which frees its thread (see ``opens``).
        operator.act("release", session_id)
        if n >= warmup:
            figures["handoff_listed"].append((listed - began) * 1000)
            figures["handoff_waiting"].append((waiting.at - began) * 1000)
            figures["handoff_active"].append((active.at - taking) * 1000)
            figures["agent_reply"].append((agent.at - sending) * 1000)
    return figures


def opens(visitor: Visitor, session_id: str, iterations: int, warmup: int) -> list[float]:
    """A ticket and the stream's first byte, then closed. A server learns that a stream was closed only when it
    next writes to it (the keep-alive comes every 15 s), so each close is followed, unmeasured, by a message whose
    reply goes to the closed stream: else hundreds of closed streams would each hold a thread of the embedded server."""
    times = []
    for n in range(warmup + iterations):
        began = time.perf_counter()
        visitor.open_until_first_byte(session_id)
        if n >= warmup:
            times.append((time.perf_counter() - began) * 1000)
        visitor.say(QUICK, session_id, wait=10)
    return times


def held_streams(visitor: Visitor, count: int) -> dict[str, Any]:
    """Streams held open at once, as many visitors' pages hold them, up to ``count``: how many opened within
    ``HOLD_TIMEOUT`` each, and whether ``/healthz`` still answered with all of them open."""
    sessions = [f"bench-held-{uuid.uuid4().hex}" for _ in range(count)]
    for session_id in sessions:
        visitor.say(QUICK, session_id, wait=10)
    streams: list[EventStream] = []
    try:
        for session_id in sessions:
            try:
                streams.append(EventStream(visitor, session_id, timeout=HOLD_TIMEOUT))
            except requests.RequestException:
                break
        began = time.perf_counter()
        try:
            health = requests.get(f"{visitor.base_url}/healthz", timeout=HOLD_TIMEOUT).status_code
        except requests.RequestException:
            health = 0
        return {"wanted": count, "opened": len(streams), "healthz_status": health,
                "healthz_ms": round((time.perf_counter() - began) * 1000, 2)}  # fmt: skip
    finally:
        for stream in streams:
            stream.close()


def register_site(layout: Layout) -> str:
    """``assistant sites add --origin http://shop.test``; its site key."""
    result = _cli(layout, "sites", "add", "--origin", ORIGIN, "--name", "Bench shop", "--json")
    site_key: str = json.loads(result)["site_key"]
    return site_key


def agent_token(layout: Layout) -> str:
    return _cli(layout, "token", "--sub", "bench-operator", "--role", "agent").strip()


def _cli(layout: Layout, *args: str) -> str:
    result = subprocess.run([str(BIN / "assistant"), *args], cwd=layout.root, env=layout.env, capture_output=True,
                            text=True, timeout=60)  # fmt: skip
    if result.returncode != 0:
        raise ServerError(f"assistant {' '.join(args[:2])} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def step(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def measure(layout: Layout, base_url: str, meter: CpuMeter, args: argparse.Namespace) -> dict[str, Any]:
    visitor = Visitor(base_url, register_site(layout))
    operator = Operator(base_url, agent_token(layout))
    n, warm = args.iterations, args.warmup
    times: dict[str, list[float]] = {}
    meter.start()
    step("preflights, visitor tokens")
    times["preflight"] = timed(visitor.preflight, n, warm)
    times["visitor_token"] = timed(lambda: void(visitor.new_token()), n, warm)
    step("round trips")
    times["round_trip"], times["post_202"] = round_trips(visitor, n, warm)
    step("handoffs")
    times |= handoffs(visitor, operator, args.handoffs, min(3, warm))
    session_id = f"bench-{uuid.uuid4().hex}"
    visitor.say(QUICK, session_id, wait=10)
    step("stream openings")
    times["stream_open"] = opens(visitor, session_id, n, warm)
    cpu = meter.stop()
    step(f"holding up to {args.hold} streams")
    held = held_streams(visitor, args.hold) if args.hold else None
    layout.check_alive()  # a server that died during the run must not pass unseen
    return {"ms": {key: summary(values) for key, values in times.items()}, "cpu_percent": cpu, "held": held}


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    figures: dict[str, float] = {"n": len(ordered)}
    for q in (50, 95, 99):
        figures[f"p{q}"] = round(percentile(ordered, q), 2)
    figures["max"] = round(ordered[-1], 2) if ordered else math.nan
    return figures


@contextlib.contextmanager
def started(name: str, args: argparse.Namespace) -> Iterator[tuple[Layout, str, CpuMeter]]:
    if name == "embedded":
        embedded = Embedded(keep_logs=args.keep_logs)
        # ``assistant run`` starts only with its speech models: the ones the tests and bench.voice install.
        embedded.env |= EXTRA_ENV | {"MODELS_DIR": str(DEFAULT_MODELS_DIR)}
        with embedded:
            embedded.start()
            yield embedded, embedded.base_url, embedded.cpu_meter()
        return
    config = DistributedConfig(broker_db=BROKER_DB, state_db=STATE_DB, extra_env=EXTRA_ENV, dispatch_workers=1)
    with Distributed(config, keep_logs=args.keep_logs) as distributed:
        distributed.start()
        yield distributed, distributed.base_url, distributed.cpu_meter()


def script_sizes() -> dict[str, dict[str, int]]:
    sizes = {}
    for path in SCRIPTS:
        data = path.read_bytes()
        sizes[path.name] = {"bytes": len(data), "gzip_9": len(gzip.compress(data, compresslevel=9, mtime=0))}
    return sizes


def show(results: dict[str, Any], sizes: dict[str, dict[str, int]]) -> None:
    names = list(results["layouts"])
    header = ["ms, p50 / p95 / p99", *names]
    rows = []
    for key, label in ROWS:
        cells = []
        for name in names:
            s = results["layouts"][name]["ms"].get(key)
            cells.append(f"{s['p50']:.2f} / {s['p95']:.2f} / {s['p99']:.2f}  (n {s['n']})" if s else "-")
        rows.append([label, *cells])
    held = [results["layouts"][name]["held"] for name in names]
    if any(held):
        rows.append(["streams held open at once", *[held_cell(h) for h in held]])
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    print()
    for i, row in enumerate([header, *rows]):
        print("  " + "  ".join(cell.ljust(w) if c == 0 else cell.rjust(w) for c, (cell, w) in
                               enumerate(zip(row, widths, strict=True))).rstrip())  # fmt: skip
        if i == 0:
            print("  " + "  ".join("-" * w for w in widths))
    print()
    for name in names:
        cpu = results["layouts"][name]["cpu_percent"]
        shown = ", ".join(f"{k} {v:g}" for k, v in cpu.items() if not k.startswith("machine_"))
        print(f"  CPU while measuring {name}, % of one core (2 cores = 200): {shown}")
    for file, size in sizes.items():
        print(f"  {file}: {size['bytes']:,} bytes, {size['gzip_9']:,} bytes gzip -9")


def held_cell(held: dict[str, Any] | None) -> str:
    if not held:
        return "-"
    health = f"/healthz {held['healthz_ms']:.0f} ms" if held["healthz_status"] == 200 else "/healthz NO ANSWER"
    return f"{held['opened']} of {held['wanted']}, {health}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.widget", description=__doc__.splitlines()[0])
    parser.add_argument("--layout", action="append", choices=["embedded", "redis"], help="default: both")
    parser.add_argument("--iterations", type=int, default=300, help="measured requests per step (steps 1-4)")
    parser.add_argument("--warmup", type=int, default=20, help="unmeasured requests before each step")
    parser.add_argument("--handoffs", type=int, default=50, help="measured handoffs (after up to 3 unmeasured)")
    parser.add_argument("--hold", type=int, default=40, help="streams held open at once at the end (capacity)")
    parser.add_argument("--keep-logs", action="store_true")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    sizes = script_sizes()
    results: dict[str, Any] = {"iterations": args.iterations, "handoffs": args.handoffs, "layouts": {},
                               "scripts": sizes}  # fmt: skip
    for name in args.layout or ["embedded", "redis"]:
        print(f"[{time.strftime('%H:%M:%S')}] {name}: starting", flush=True)
        with started(name, args) as (layout, base_url, meter):
            print(f"[{time.strftime('%H:%M:%S')}] {name}: measuring (pid {os.getpid()} is the client)", flush=True)
            results["layouts"][name] = measure(layout, base_url, meter, args)
    show(results, sizes)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
