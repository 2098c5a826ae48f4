"""Streaming benchmark: from the model server's first token to the first ``partial`` event on the session's SSE
stream, in the embedded and the Redis layout.

    .venv/bin/python -m bench.streaming                     # both layouts, 20 messages each, about a minute
    .venv/bin/python -m bench.streaming --layout embedded --messages 50 --tokens 200 --pace 0.002

A local server speaking OpenAI's streaming chat-completions protocol (``tests/fakes/openai_server.py``) runs in this
process and records the moment it hands each token to the socket. The servers under test (``assistant run``; or
the gateway and the workers on Redis DBs 2 and 4 with a PostgreSQL database of their own) are child processes with
``MODEL_BACKEND=openai`` pointed at it. For each message a client holding the session's SSE stream open notes when
each event arrives. Both clocks are this machine's wall clock, read in this process.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import queue
import statistics
import threading
import time
from dataclasses import dataclass
from typing import Any

import requests

from bench.layout import Distributed, DistributedConfig, Embedded, Layout
from bench.voice import DEFAULT_MODELS_DIR

#: The target: the first partial on the SSE stream within this many ms of the server sending its first token.
TARGET_MS = 50.0
#: Redis databases of the distributed run (broker, state).
BROKER_DB, STATE_DB = 2, 4
#: What the messages say: no skill's trigger, so inference answers.
PROMPT = "tell me a short story about a cat"


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


@dataclass(frozen=True, slots=True)
class Arrival:
    """One SSE event as the client read it."""

    kind: str
    data: dict[str, Any]
    wall: float


class SseClient:
    """Holds ``/api/sessions/<id>/events`` open; a thread queues each event with the moment it was read."""

    def __init__(self, base_url: str, token: str, session_id: str, after: str) -> None:
        headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream", "Last-Event-ID": after}
        self.response = requests.get(f"{base_url}/api/sessions/{session_id}/events", headers=headers, stream=True,
                                     timeout=(5, 60))  # fmt: skip
        self.response.raise_for_status()
        self.events: queue.Queue[Arrival] = queue.Queue()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        fields: dict[str, str] = {}
        try:
            for line in self.response.iter_lines(chunk_size=None, decode_unicode=True):
                if line == "":
                    if "data" in fields:
                        self.events.put(Arrival(fields.get("event", ""), json.loads(fields["data"]), time.time()))
                    fields = {}
                elif not line.startswith(":"):
                    name, _, value = line.partition(":")
                    fields[name] = value.removeprefix(" ")
        except (requests.RequestException, AttributeError, ValueError):
            return  # closed

    def until_reply(self, message_id: str, timeout: float = 60.0) -> tuple[list[Arrival], Arrival]:
        partials: list[Arrival] = []
        deadline = time.monotonic() + timeout
        while True:
            event = self.events.get(timeout=max(0.0, deadline - time.monotonic()))
            if event.kind == "reply" and event.data["message_id"] == message_id:
                return partials, event
            if event.kind == "partial" and event.data["message_id"] == message_id:
                partials.append(event)

    def close(self) -> None:
        self.response.close()


def run_messages(layout: Layout, base_url: str, fake: Any, messages: int) -> dict[str, Any]:
    token = layout.token("bench-streaming")
    headers = {"Authorization": f"Bearer {token}"}

    def post(text: str, session_id: str | None, wait: float) -> dict[str, Any]:
        body: dict[str, Any] = {"text": text} | ({"session_id": session_id} if session_id else {})
        answer = requests.post(f"{base_url}/api/messages", params={"wait": str(wait)}, json=body, headers=headers,
                               timeout=60)  # fmt: skip
        answer.raise_for_status()
        result: dict[str, Any] = answer.json()
        return result

    first_token: list[float] = []
    per_token: list[float] = []
    final: list[float] = []
    rates: list[float] = []
    posted_to_first: list[float] = []
    missing = 0
    # One session and one stream for all the messages, as a chat page holds it open.
    opened = post("现在几点", None, 10)
    client = SseClient(base_url, token, opened["session_id"], opened["reply"]["id"])
    try:
        for attempt in range(messages + 1):  # the first is a warm-up: connections, the backend's HTTP session
            request_index = len(fake.requests)
            posted = time.time()
            accepted = post(PROMPT, opened["session_id"], 0)
            partials, reply = client.until_reply(accepted["message_id"])
            if attempt == 0:
                continue
            sent = [s for s in fake.sent if s.request == request_index]
            if not partials or not sent:
                missing += 1
                continue
            first_token.append((partials[0].wall - sent[0].wall) * 1000)
            posted_to_first.append((partials[0].wall - posted) * 1000)
            by_index = {s.index: s.wall for s in sent}
            per_token += [(p.wall - by_index[i]) * 1000 for i, p in enumerate(partials) if i in by_index]
            final.append((reply.wall - sent[0].wall) * 1000)
            span = partials[-1].wall - partials[0].wall
            if span > 0:
                rates.append((len(partials) - 1) / span)
            if "".join(p.data["delta"] for p in partials) != reply.data["text"]:
                print("  warning: the partials do not join to the reply's text")
    finally:
        client.close()
    return {
        "messages": messages,
        "without_partials": missing,
        "first_partial_after_first_token_ms": summary(first_token),
        "each_partial_after_its_token_ms": summary(per_token),
        "post_to_first_partial_ms": summary(posted_to_first),
        "reply_after_first_token_ms": summary(final),
        "tokens_per_second_on_the_stream": summary(rates),
    }


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": round(percentile(values, 50), 2),
        "p95": round(percentile(values, 95), 2),
        "max": round(max(values or [float("nan")]), 2),
        "mean": round(statistics.fmean(values), 2) if values else float("nan"),
    }


def model_env(fake: Any) -> dict[str, str]:
    return {"MODEL_BACKEND": "openai", "MODEL_ENDPOINT": fake.endpoint, "MODEL_NAME": "bench-model",
            "MODEL_TIMEOUT_SECONDS": "30", "INTENT_MODEL": "off"}  # fmt: skip


def run_layout(name: str, fake: Any, messages: int) -> dict[str, Any]:
    if name == "embedded":
        embedded = Embedded()
        # ``assistant run`` starts only with its speech models: the ones the tests and bench.voice install.
        embedded.env |= model_env(fake) | {"MODELS_DIR": str(DEFAULT_MODELS_DIR)}
        with embedded:
            embedded.start()
            return run_messages(embedded, embedded.base_url, fake, messages)
    config = DistributedConfig(broker_db=BROKER_DB, state_db=STATE_DB, extra_env=model_env(fake), dispatch_workers=1)
    with Distributed(config) as distributed:
        distributed.start()
        return run_messages(distributed, distributed.base_url, fake, messages)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layout", action="append", choices=["embedded", "redis"], help="default: both")
    parser.add_argument("--messages", type=int, default=20, help="messages per layout (after one warm-up)")
    parser.add_argument("--tokens", type=int, default=20, help="tokens per reply")
    parser.add_argument("--pace", type=float, default=0.05, help="seconds between tokens (and before the first)")
    parser.add_argument("--json", help="write the figures to this file too")
    args = parser.parse_args()

    # The test fake, loaded by name: its werkzeug-decorated handler is not for this tree's type checks.
    fake_server: Any = importlib.import_module("tests.fakes.openai_server")

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the fake server's access log

    tokens = tuple(f" word{n}" if n else "word0" for n in range(args.tokens))
    results: dict[str, Any] = {"tokens": args.tokens, "pace_s": args.pace, "target_ms": TARGET_MS, "layouts": {}}
    with fake_server.FakeOpenAI(tokens=tokens, pace=args.pace) as fake:
        for name in args.layout or ["embedded", "redis"]:
            print(f"{name}: {args.messages} messages, {args.tokens} tokens {args.pace * 1000:g} ms apart ...",
                  flush=True)  # fmt: skip
            figures = run_layout(name, fake, args.messages)
            results["layouts"][name] = figures
            first = figures["first_partial_after_first_token_ms"]
            print(f"  first token sent -> first partial on SSE: p50 {first['p50']} ms, p95 {first['p95']} ms, "
                  f"max {first['max']} ms  (target {TARGET_MS:g} ms: {'met' if first['p95'] < TARGET_MS else 'MISSED'}"
                  " at p95)")  # fmt: skip
            each = figures["each_partial_after_its_token_ms"]
            print(f"  each token sent -> its partial:       p50 {each['p50']} ms, p95 {each['p95']} ms")
            done = figures["reply_after_first_token_ms"]
            print(f"  first token sent -> final reply:      p50 {done['p50']} ms, p95 {done['p95']} ms")
            rate = figures["tokens_per_second_on_the_stream"]
            print(f"  tokens/s on the stream:               p50 {rate['p50']}  (server pace {1 / args.pace:g}/s)"
                  if args.pace else f"  tokens/s on the stream:               p50 {rate['p50']}")  # fmt: skip
            if figures["without_partials"]:
                print(f"  {figures['without_partials']} messages got no partial")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
