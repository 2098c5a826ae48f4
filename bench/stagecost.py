"""CPU cost of each step a message goes through, called one by one in this process on the real servers.

``.venv/bin/python -m bench.stagecost [--n 500]``: builds the adapters the workers build (Redis DB 7,
a scratch PostgreSQL database), replays the steps of the gateway's POST, the dispatch stage
(``tasks.dispatch.handle_message``) and the web deliverer one at a time, and prints the CPU time
(``time.process_time``, this process only: the client side of every round trip) and wall time per call.
It explains where the per-message CPU of ``throughput`` goes; the Celery hop itself is what ``echo`` measures.
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from bench.layout import HOST, REDIS, _create_database, _drop_database, _flush_redis

COST_DB = 7


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.stagecost", description=__doc__)
    parser.add_argument("--n", type=int, default=500, help="calls per step (default 500)")
    args = parser.parse_args(argv)
    database = f"bench_cost_{os.getpid()}"
    _flush_redis(COST_DB)
    _create_database(database)
    try:
        rows = measure(database, args.n)
    finally:
        _drop_database(database)
        _flush_redis(COST_DB)
    width = max(len(r[0]) for r in rows)
    print(f"{'step'.ljust(width)}  cpu_us/call  wall_us/call")
    for name, cpu, wall in rows:
        print(f"{name.ljust(width)}  {cpu:11.0f}  {wall:12.0f}")
    return 0


def measure(database: str, n: int) -> list[tuple[str, float, float]]:
    import sqlalchemy as sa

    from adapters.db import create_engine_for
    from assistant.bootstrap import build_adapters, build_worker_app
    from pipeline.dialogue import DialogueState
    from pipeline.envelope import Envelope, Reply
    from pipeline.settings import Settings
    from pipeline.stages import Stage
    from skills.dispatcher import dispatch
    from tasks.dispatch import handle_message
    from tasks.stage import Waiting

    url = f"postgresql://postgres@{HOST}:5432/{database}"
    settings = Settings(
        broker_url=f"{REDIS}/{COST_DB}", redis_url=f"{REDIS}/{COST_DB}", database_url=url, jwt_secret="x" * 40
    )
    adapters = build_adapters(settings, migrate=True)
    app = build_worker_app(settings, adapters)
    runtime = app.runtime
    forward = runtime.forward
    coordination, repository, replies = adapters.coordination, adapters.repository, adapters.replies
    rows: list[tuple[str, float, float]] = []
    sessions = [f"cost-{i}" for i in range(50)]

    def envelope(i: int) -> Envelope:
        return Envelope(
            message_id=uuid.uuid4().hex, session_id=sessions[i % len(sessions)], channel="web",
            user_id="bench", roles=("user",), text="现在几点", seq=i // len(sessions) + 1,
        )  # fmt: skip

    def step(name: str, setup: Callable[[int], Any], call: Callable[[Any], Any]) -> None:
        inputs = [setup(i) for i in range(n)]
        cpu, wall = time.process_time(), time.perf_counter()
        for item in inputs:
            call(item)
        rows.append((name, (time.process_time() - cpu) / n * 1e6, (time.perf_counter() - wall) / n * 1e6))

    try:
        # Warm every connection pool and SQLAlchemy's statement cache first.
        for i in range(20):
            env = envelope(i)
            repository.record_message(env)
            repository.record_reply(Reply.answering(env, "warm"))
            repository.save_session_state(env.session_id, "bench", "web", "{}")
            forward.to_stage(Stage.DISPATCH, env)

        # -- the gateway's POST (besides HTTP and JWT) --
        step("gateway: register_message (Lua)", lambda i: uuid.uuid4().hex,
             lambda mid: coordination.register_message("bench", "gw-session", mid, None, 3600))  # fmt: skip
        step("gateway: send_task to dispatch", envelope,
             lambda env: forward.to_stage(Stage.DISPATCH, env))  # fmt: skip
        step("gateway: reply_for (GET)", lambda i: uuid.uuid4().hex, replies.reply_for)

        # -- dispatch, step by step as handle_message runs them --
        step("dispatch: acquire_turn (Lua: lock, state, skills version)", envelope,
             lambda env: coordination.acquire_turn(env.session_id + "-t", 0, "tok", 10000, True))  # fmt: skip
        registry = runtime.current_registry(coordination.skills_version())
        step("dispatch: skill match+run, own thread", envelope,
             lambda env: dispatch(env, DialogueState(), registry, runtime.run_skill))  # fmt: skip
        step("dispatch: skill match+run, inline", envelope,
             lambda env: dispatch(env, DialogueState(), registry, lambda skill, ctx: skill.execute(ctx)))  # fmt: skip
        step("dispatch: record_message + state (PG txn)", envelope,
             lambda env: repository.record_message(env, '{"history": []}'))  # fmt: skip
        step("dispatch: send_task reply.web", lambda i: Reply.answering(envelope(i), "ok"), forward.reply)
        step("dispatch: finish_turn + state (Lua)", envelope,
             lambda env: coordination.finish_turn(env.session_id + "-t", 0, "tok", 3600, "{}"))  # fmt: skip
        # The real handle_message on 50 sessions taking turns (seq 1, 2, ...): mostly existing sessions, as under load.
        step("dispatch: handle_message, whole", lambda i: replace(envelope(i), session_id=f"whole-{i % 50}"),
             lambda env: handle_message(env, runtime, Waiting()))  # fmt: skip

        # -- the web deliverer --
        step("deliver: Reply.from_json", lambda i: Reply.answering(envelope(i), "ok").to_json(), Reply.from_json)
        step("deliver: replies.append (Lua XADD PUBLISH)", lambda i: Reply.answering(envelope(i), "ok"),
             lambda reply: replies.append(reply, 3600))  # fmt: skip
        step("deliver: record_reply (PG txn)", lambda i: Reply.answering(envelope(i), "ok"), repository.record_reply)

        # -- what the database layer costs by itself --
        pinged = create_engine_for(url)
        unpinged = sa.create_engine(pinged.url, pool_size=5)
        for engine in (pinged, unpinged):
            with engine.connect():
                pass

        def empty_transaction(engine: sa.Engine) -> None:
            with engine.begin():
                pass

        step("db: empty transaction, pool_pre_ping", lambda i: pinged, empty_transaction)
        step("db: empty transaction, no pre-ping", lambda i: unpinged, empty_transaction)
        pinged.dispose()
        unpinged.dispose()
    finally:
        adapters.close()
        app.close()
    return rows


if __name__ == "__main__":
    raise SystemExit(main())
