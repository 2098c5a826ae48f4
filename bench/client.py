"""The asyncio load client (aiohttp): open-loop sessions with SSE and long-poll, closed-loop, sequential.

Every loop is bounded by a count and a deadline; the client only talks to the URL it is given.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp

TEXT = "现在几点"
#: Seconds a POST may take before the client gives up on it.
POST_TIMEOUT = 15.0


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (nan when empty)."""
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def latency_summary(seconds: list[float], prefix: str = "") -> dict[str, float]:
    ordered = sorted(seconds)
    ms = [s * 1000 for s in ordered]
    return {
        f"{prefix}p50_ms": round(percentile(ms, 50), 2),
        f"{prefix}p95_ms": round(percentile(ms, 95), 2),
        f"{prefix}p99_ms": round(percentile(ms, 99), 2),
        f"{prefix}max_ms": round(ms[-1], 2) if ms else math.nan,
        f"{prefix}mean_ms": round(sum(ms) / len(ms), 2) if ms else math.nan,
    }


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def post_message(
    http: aiohttp.ClientSession, base_url: str, session_id: str | None, wait: float, text: str = TEXT
) -> tuple[int, dict[str, Any]]:
    body: dict[str, Any] = {"text": text}
    if session_id is not None:
        body["session_id"] = session_id
    timeout = aiohttp.ClientTimeout(total=max(POST_TIMEOUT, wait + 5))
    async with http.post(f"{base_url}/api/messages", params={"wait": f"{wait:g}"}, json=body, timeout=timeout) as resp:
        payload = await resp.json(content_type=None)
        return resp.status, payload if isinstance(payload, dict) else {}


# -- scenario 1: many open sessions, open-loop load ---------------------------------------------------------------


@dataclass
class _StreamStats:
    open_sse: int = 0
    connect_errors: int = 0
    stream_errors: int = 0
    reconnects: int = 0
    longpoll_requests: int = 0
    longpoll_errors: int = 0


@dataclass
class _Load:
    #: message_id -> (perf_counter at the start of its POST, transport of its session, wall clock then)
    sent: dict[str, tuple[float, str, float]] = field(default_factory=dict)
    #: message_id -> perf_counter when its reply arrived on the session's stream or long-poll
    arrived: dict[str, float] = field(default_factory=dict)
    #: message_id -> (wall clock at arrival, wall clock the dispatch stage made the reply, dispatch stage ms)
    stamps: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    post_seconds: list[float] = field(default_factory=list)
    post_errors: int = 0
    skipped: int = 0
    duplicates: int = 0

    def on_reply(self, reply: dict[str, Any], at: float) -> None:
        message_id = reply.get("message_id")
        if not isinstance(message_id, str):
            return
        if message_id in self.arrived:
            self.duplicates += 1
            return
        self.arrived[message_id] = at
        try:
            made = datetime.fromisoformat(reply["at"]).timestamp()
            dispatch_ms = float(reply.get("timings", {}).get("dispatch", math.nan))
        except (KeyError, TypeError, ValueError):
            return
        self.stamps[message_id] = (time.time(), made, dispatch_ms)


async def _sse(
    http: aiohttp.ClientSession, base_url: str, session_id: str, cursor: str | None,
    load: _Load, stats: _StreamStats, ready: asyncio.Event, stop: asyncio.Event,
) -> None:  # fmt: skip
    last = cursor
    url = f"{base_url}/api/sessions/{session_id}/events"
    while not stop.is_set():
        counted = False
        try:
            params = {"after": last} if last else {}
            async with http.get(url, params=params) as resp:
                if resp.status != 200:
                    stats.connect_errors += 1
                    await asyncio.sleep(0.5)
                    continue
                stats.open_sse += 1
                counted = True
                ready.set()
                event, event_id = "", None
                data: list[str] = []
                async for raw in resp.content:
                    line = raw.decode("utf-8").rstrip("\r\n")
                    if not line:
                        if event == "reply" and data:
                            load.on_reply(json.loads("\n".join(data)), time.perf_counter())
                            last = event_id or last
                        event, data, event_id = "", [], None
                        continue
                    if line.startswith(":"):
                        continue  # keep-alive comment
                    name, _, value = line.partition(":")
                    value = value.removeprefix(" ")
                    if name == "event":
                        event = value
                    elif name == "data":
                        data.append(value)
                    elif name == "id":
                        event_id = value
            if not stop.is_set():
                stats.reconnects += 1
        except (aiohttp.ClientError, TimeoutError, ValueError):
            if stop.is_set():
                return
            stats.stream_errors += 1
            stats.reconnects += 1
            await asyncio.sleep(0.5)
        finally:
            if counted:
                stats.open_sse -= 1


async def _long_poll(
    http: aiohttp.ClientSession, base_url: str, session_id: str, cursor: str | None,
    load: _Load, stats: _StreamStats, wait: float, stop: asyncio.Event,
) -> None:  # fmt: skip
    last = cursor
    url = f"{base_url}/api/sessions/{session_id}/replies"
    timeout = aiohttp.ClientTimeout(total=wait + 15)
    while not stop.is_set():
        params = {"wait": f"{wait:g}"}
        if last:
            params["after"] = last
        try:
            stats.longpoll_requests += 1
            async with http.get(url, params=params, timeout=timeout) as resp:
                if resp.status != 200:
                    stats.longpoll_errors += 1
                    await asyncio.sleep(0.5)
                    continue
                body = await resp.json()
            at = time.perf_counter()
            for reply in body.get("replies", []):
                load.on_reply(reply, at)
            last = body.get("cursor") or last
        except (aiohttp.ClientError, TimeoutError, ValueError):
            if stop.is_set():
                return
            stats.longpoll_errors += 1
            await asyncio.sleep(0.5)


async def _create_sessions(
    http: aiohttp.ClientSession, base_url: str, ids: list[str], concurrency: int, deadline: float
) -> dict[str, str | None]:
    """Send each session its first message (that makes it exist) and keep the reply's cursor."""
    cursors: dict[str, str | None] = {}
    queue = list(reversed(ids))

    async def worker() -> None:
        while queue and time.monotonic() < deadline:
            sid = queue.pop()
            for _ in range(3):
                try:
                    status, body = await post_message(http, base_url, sid, wait=10)
                except (aiohttp.ClientError, TimeoutError):
                    continue
                if status == 200:
                    cursors[sid] = body["reply"]["id"]
                    break
                if status == 202:
                    cursors[sid] = None  # accepted; its reply will show up on the stream, unmatched
                    break

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return cursors


async def sessions_scenario(
    base_url: str,
    token: str,
    *,
    sessions: int = 1000,
    rate: float = 100.0,
    duration: float = 60.0,
    open_batch: int = 100,
    longpoll_wait: float = 25.0,
    grace: float = 10.0,
    max_inflight_posts: int = 1000,
    before_load: Callable[[], None] | None = None,
    after_load: Callable[[], dict[str, Any]] | None = None,
    seed: int = 1,
) -> dict[str, Any]:
    """Half the sessions hold an SSE stream, half a long-poll loop; messages at ``rate``/s to random sessions.

    Latency is from the start of the ``?wait=0`` POST to the reply's arrival on that session's stream.
    ``before_load`` runs as the load starts, ``after_load`` after it with every stream still open (they read the
    servers' CPU time and RSS).
    """
    rng = random.Random(seed)
    run = secrets.token_hex(3)
    ids = [f"bench-s-{run}-{i:05d}" for i in range(sessions)]
    kind = {sid: ("sse" if i % 2 == 0 else "longpoll") for i, sid in enumerate(ids)}
    load, stats, stop = _Load(), _StreamStats(), asyncio.Event()
    figures: dict[str, Any] = {"sessions": sessions, "rate_per_s": rate, "duration_s": duration}
    stream_conn = aiohttp.TCPConnector(limit=0)
    post_conn = aiohttp.TCPConnector(limit=max_inflight_posts)
    stream_timeout = aiohttp.ClientTimeout(total=None, sock_connect=15, connect=30)
    tasks: list[asyncio.Task[None]] = []
    async with (
        aiohttp.ClientSession(connector=stream_conn, headers=_auth(token), timeout=stream_timeout) as streams,
        aiohttp.ClientSession(connector=post_conn, headers=_auth(token)) as posts,
    ):
        try:
            started = time.monotonic()
            cursors = await _create_sessions(posts, base_url, ids, 40, started + 180)
            ids = [sid for sid in ids if sid in cursors]
            figures["sessions_created"] = len(ids)
            figures["setup_s"] = round(time.monotonic() - started, 1)

            started = time.monotonic()
            for first in range(0, len(ids), open_batch):
                waits = []
                for sid in ids[first : first + open_batch]:
                    if kind[sid] == "sse":
                        ready = asyncio.Event()
                        waits.append(asyncio.create_task(ready.wait()))
                        coro = _sse(streams, base_url, sid, cursors[sid], load, stats, ready, stop)
                    else:
                        coro = _long_poll(streams, base_url, sid, cursors[sid], load, stats, longpoll_wait, stop)
                    tasks.append(asyncio.create_task(coro))
                _, pending = await asyncio.wait(waits, timeout=30) if waits else (set(), set())
                for waiter in pending:
                    waiter.cancel()
                await asyncio.sleep(0.2)  # lets this batch's long-polls reach the server before the next batch
            figures["streams_open_s"] = round(time.monotonic() - started, 1)
            figures["sse_open_before_load"] = stats.open_sse
            await asyncio.sleep(1.0)

            if before_load is not None:
                before_load()
            figures["load_started_at"] = time.time()
            await _open_loop(posts, base_url, ids, kind, rate, duration, load, rng, max_inflight_posts, figures)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and not load.sent.keys() <= load.arrived.keys():
                await asyncio.sleep(0.05)
            figures["sse_open_after_load"] = stats.open_sse
            if after_load is not None:
                figures |= after_load()
        finally:
            stop.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    latencies: dict[str, list[float]] = {"sse": [], "longpoll": []}
    load_start = min((sent_at for sent_at, _, _ in load.sent.values()), default=0.0)
    per_second: dict[int, list[float]] = {}
    # Where the time went, from the reply's own "at" (when the dispatch stage made it; same host, same clock).
    to_made, made_to_arrival, dispatch_stage = [], [], []
    for message_id, (sent_at, transport, sent_wall) in load.sent.items():
        arrived = load.arrived.get(message_id)
        if arrived is not None:
            latencies[transport].append(arrived - sent_at)
            per_second.setdefault(int(sent_at - load_start), []).append(arrived - sent_at)
        if message_id in load.stamps:
            arrived_wall, made, dispatch_ms = load.stamps[message_id]
            to_made.append(made - sent_wall)
            made_to_arrival.append(arrived_wall - made)
            dispatch_stage.append(dispatch_ms / 1000)
    every = latencies["sse"] + latencies["longpoll"]
    figures |= {
        "sent": len(load.sent),
        "answered": len(every),
        "missing": len(load.sent) - len(every),
        "post_errors": load.post_errors,
        "skipped_client_overload": load.skipped,
        "duplicate_replies": load.duplicates,
    }
    figures |= latency_summary(every)
    figures |= latency_summary(latencies["sse"], "sse_")
    figures |= latency_summary(latencies["longpoll"], "longpoll_")
    figures |= latency_summary(load.post_seconds, "post_202_")
    figures |= latency_summary(to_made, "post_to_reply_made_")
    figures |= latency_summary(dispatch_stage, "dispatch_stage_")
    figures |= latency_summary(made_to_arrival, "reply_made_to_arrival_")
    figures |= {
        "sse_connect_errors": stats.connect_errors,
        "sse_stream_errors": stats.stream_errors,
        "sse_reconnects": stats.reconnects,
        "longpoll_requests": stats.longpoll_requests,
        "longpoll_errors": stats.longpoll_errors,
    }
    timeline = [{"second": k, "n": len(v), **latency_summary(v)} for k, v in sorted(per_second.items())]
    figures["seconds_with_p99_over_300ms"] = sum(1 for row in timeline if row["p99_ms"] > 300)
    figures["timeline"] = timeline
    return figures


async def _open_loop(
    http: aiohttp.ClientSession, base_url: str, ids: list[str], kind: dict[str, str], rate: float,
    duration: float, load: _Load, rng: random.Random, max_inflight: int, figures: dict[str, Any],
) -> None:  # fmt: skip
    """Send ``rate`` messages a second for ``duration`` seconds on a fixed schedule, whatever the replies do."""
    loop = asyncio.get_running_loop()
    inflight: set[asyncio.Task[None]] = set()

    async def send(sid: str) -> None:
        started, wall = time.perf_counter(), time.time()
        try:
            status, body = await post_message(http, base_url, sid, wait=0)
        except (aiohttp.ClientError, TimeoutError):
            load.post_errors += 1
            return
        if status != 202 or "message_id" not in body:
            load.post_errors += 1
            return
        load.post_seconds.append(time.perf_counter() - started)
        load.sent[body["message_id"]] = (started, kind[sid], wall)

    total = int(rate * duration)
    start = loop.time() + 0.05
    worst_lag = 0.0
    for i in range(total):
        delay = start + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            worst_lag = max(worst_lag, -delay)
        if len(inflight) >= max_inflight:
            load.skipped += 1
            continue
        task = asyncio.create_task(send(rng.choice(ids)))
        inflight.add(task)
        task.add_done_callback(inflight.discard)
    elapsed = loop.time() - start
    figures["send_rate_achieved_per_s"] = round(total / elapsed, 1) if elapsed > 0 else math.nan
    figures["scheduler_worst_lag_ms"] = round(worst_lag * 1000, 1)
    if inflight:
        await asyncio.wait(inflight, timeout=POST_TIMEOUT + 5)


# -- closed loops ---------------------------------------------------------------------------------------------------


async def closed_loop(
    operation: Callable[[int], Awaitable[float]],
    clients: int,
    duration: float,
    warmup: float,
    window: tuple[Callable[[], None], Callable[[], Any]] | None = None,
) -> dict[str, Any]:
    """``clients`` loops each calling ``operation(i)`` back to back; counts what completes in the window.

    ``operation`` returns its latency in seconds or raises. The window opens after ``warmup`` seconds;
    ``window`` is a pair of callbacks run as it opens and as it closes (CPU meters).
    """
    loop = asyncio.get_running_loop()
    opens = loop.time() + warmup
    closes = opens + duration
    if window is not None:
        loop.call_at(opens, window[0])
        loop.call_at(closes, window[1])
    latencies: list[float] = []
    errors: list[str] = []

    async def client(index: int) -> None:
        while loop.time() < closes:
            try:
                seconds = await operation(index)
            except Exception as exc:
                if opens <= loop.time() <= closes:
                    errors.append(f"{type(exc).__name__}: {exc}"[:200])
                else:
                    await asyncio.sleep(0.01)
                continue
            if opens <= loop.time() <= closes:
                latencies.append(seconds)

    await asyncio.wait_for(asyncio.gather(*(client(i) for i in range(clients))), warmup + duration + 60)
    figures: dict[str, Any] = {
        "clients": clients,
        "duration_s": duration,
        "completed": len(latencies),
        "msgs_per_s": round(len(latencies) / duration, 1),
        "errors": len(errors),
    }
    figures |= latency_summary(latencies)
    if errors:
        figures["first_errors"] = sorted(set(errors))[:5]
    return figures


class PipelineError(Exception):
    """A message did not come back answered."""


async def throughput_scenario(
    base_url: str,
    token: str,
    *,
    clients: int = 40,
    duration: float = 30.0,
    warmup: float = 3.0,
    window: tuple[Callable[[], None], Callable[[], Any]] | None = None,
) -> dict[str, Any]:
    """``clients`` concurrent users, each POSTing ``?wait=10`` to its own session and waiting for the 200."""
    run = secrets.token_hex(3)
    dispatch_ms: list[float] = []
    connector = aiohttp.TCPConnector(limit=clients * 2)
    async with aiohttp.ClientSession(connector=connector, headers=_auth(token)) as http:

        async def one(index: int) -> float:
            started = time.perf_counter()
            status, body = await post_message(http, base_url, f"bench-t-{run}-{index:03d}", wait=10)
            elapsed = time.perf_counter() - started
            reply = body.get("reply")
            if status != 200 or not isinstance(reply, dict):
                raise PipelineError(f"HTTP {status}: {str(body)[:120]}")
            timing = reply.get("timings", {}).get("dispatch")
            if isinstance(timing, int | float):
                dispatch_ms.append(timing / 1000)
            return elapsed

        figures = await closed_loop(one, clients, duration, warmup, window)
    figures |= {k: v for k, v in latency_summary(dispatch_ms, "dispatch_stage_").items() if "p50" in k or "p99" in k}
    return figures


async def sequential_scenario(base_url: str, token: str, *, count: int = 200, warmup: int = 5) -> dict[str, Any]:
    """One client, one session, ``count`` messages one after the other, each ``?wait=10``."""
    session = f"bench-e-{secrets.token_hex(3)}"
    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + 30 + count * 11
    measured_from = math.nan
    async with aiohttp.ClientSession(headers=_auth(token)) as http:
        for i in range(warmup + count):
            if time.monotonic() > deadline:
                break
            if i == warmup:
                measured_from = time.perf_counter()
            started = time.perf_counter()
            try:
                status, body = await post_message(http, base_url, session, wait=10)
            except (aiohttp.ClientError, TimeoutError):
                status, body = 0, {}
            elapsed = time.perf_counter() - started
            if i < warmup:
                continue
            if status == 200 and isinstance(body.get("reply"), dict):
                latencies.append(elapsed)
            else:
                errors += 1
    duration = time.perf_counter() - measured_from
    figures: dict[str, Any] = {
        "messages": count,
        "answered": len(latencies),
        "errors": errors,
        "duration_s": round(duration, 2),
        "msgs_per_s": round(len(latencies) / duration, 1) if duration > 0 else math.nan,
    }
    figures |= latency_summary(latencies)
    return figures


async def echo_scenario(
    broker_url: str,
    redis_url: str,
    *,
    clients: int = 40,
    duration: float = 30.0,
    warmup: float = 3.0,
    window: tuple[Callable[[], None], Callable[[], Any]] | None = None,
) -> dict[str, Any]:
    """The same closed loop through the bare echo task (``bench.echo``)."""
    from bench.echo import EchoClient

    async with EchoClient(broker_url, redis_url) as echo:
        return await closed_loop(lambda _index: echo.round_trip(10.0), clients, duration, warmup, window)
