"""A dispatch worker SIGKILLed in the middle of a burst: is every accepted message answered once, and how soon?

The distributed layout (gateway, dispatch workers d1 and d2, worker r on inference and reply.web) on the local
Redis and PostgreSQL, with the broker's defaults. Clients in a closed loop each send their messages with
``?wait=30`` to a session of their own; ``--kill-after`` seconds into the burst, d1 is SIGKILLed, and a new
dispatch worker starts ``--restart-after`` seconds later. Afterwards every session's transcript is read: each
message must have exactly one reply.

    .venv/bin/python -m bench.worker_loss                  # 40 clients x 40 messages, as the reliability page cites
    .venv/bin/python -m bench.worker_loss --clients 10 --messages 10
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import requests

from bench.layout import Distributed, DistributedConfig


@dataclass
class Outcome:
    """What one client saw: per message, when it was sent and when its reply came (None: not in the POST)."""

    session_id: str
    sent: list[tuple[str, float, float | None]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def client(base: str, token: str, messages: int, started: float) -> Outcome:
    outcome = Outcome(f"loss-{uuid.uuid4().hex[:10]}")
    headers = {"Authorization": f"Bearer {token}"}
    with requests.Session() as http:
        for n in range(messages):
            body = {"text": "现在几点", "session_id": outcome.session_id, "client_msg_id": f"{outcome.session_id}-{n}"}
            sent = time.monotonic() - started
            while True:
                response = http.post(f"{base}/api/messages?wait=30", json=body, headers=headers, timeout=60)
                if response.status_code == 503:  # not accepted; the same client_msg_id is sent again
                    time.sleep(float(response.headers.get("Retry-After", "1")))
                    continue
                break
            if response.status_code not in (200, 202):
                outcome.errors.append(f"{response.status_code} {response.text[:200]}")
                continue
            data = response.json()
            answered = time.monotonic() - started if "reply" in data else None
            outcome.sent.append((data["message_id"], sent, answered))
    return outcome


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=40)
    parser.add_argument("--messages", type=int, default=40)
    parser.add_argument("--kill-after", type=float, default=1.5)
    parser.add_argument("--restart-after", type=float, default=1.5)
    args = parser.parse_args(argv)

    with Distributed(DistributedConfig(log_level=os.environ.get("BENCH_LOG_LEVEL", "INFO")), keep_logs=True) as layout:
        print(f"logs in {layout.workdir}")
        layout.start()
        token = layout.token("bench-loss")
        doomed = layout.workers["d1"]
        started = time.monotonic()
        killed_at: list[float] = []

        def chaos() -> None:
            time.sleep(args.kill_after)
            os.killpg(doomed.pid, signal.SIGKILL)
            killed_at.append(time.monotonic() - started)
            time.sleep(args.restart_after)
            layout._start_worker("d1-again", ["--queues", "dispatch", "--concurrency", "4"])

        killer = threading.Thread(target=chaos)
        killer.start()
        with ThreadPoolExecutor(args.clients) as pool:
            outcomes = list(pool.map(lambda _: client(layout.base_url, token, args.messages, started),
                                     range(args.clients)))  # fmt: skip
        killer.join()
        burst_end = time.monotonic() - started

        headers = {"Authorization": f"Bearer {token}"}
        accepted = answered_in_post = answered_later = never = twice = 0
        latest = 0.0
        slowest = 0.0
        for outcome in outcomes:
            replies: dict[str, int] = {}
            deadline = time.monotonic() + 60
            while True:
                entries = requests.get(f"{layout.base_url}/api/sessions/{outcome.session_id}", headers=headers,
                                       timeout=30).json()["entries"]  # fmt: skip
                replies = {}
                for entry in entries:
                    if entry["kind"] == "reply":
                        replies[entry["message_id"]] = replies.get(entry["message_id"], 0) + 1
                if all(mid in replies for mid, _, _ in outcome.sent) or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            for message_id, sent, answered in outcome.sent:
                accepted += 1
                count = replies.get(message_id, 0)
                twice += count > 1
                if answered is not None:
                    answered_in_post += 1
                    latest = max(latest, answered)
                    slowest = max(slowest, answered - sent)
                elif count:
                    answered_later += 1
                    print(f"answered after its POST's wait: {message_id} (session {outcome.session_id})")
                else:
                    never += 1
                    print(f"never answered: {message_id} (session {outcome.session_id}, sent at {sent:.1f} s)")
        errors = [e for outcome in outcomes for e in outcome.errors]
        kill = killed_at[0] if killed_at else float("nan")
        print(f"{args.clients} clients x {args.messages} messages, d1 SIGKILLed at {kill:.1f} s, "
              f"a new dispatch worker {args.restart_after:g} s later; burst over at {burst_end:.1f} s")  # fmt: skip
        print(f"accepted {accepted}; answered within the POST's 30 s wait {answered_in_post}; answered later "
              f"{answered_later}; never {never}; answered twice {twice}; other errors {len(errors)}")  # fmt: skip
        print(f"slowest reply {slowest:.1f} s; the last reply came {latest - kill:.1f} s after the kill")
        return 0 if never == twice == answered_later == len(errors) == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
