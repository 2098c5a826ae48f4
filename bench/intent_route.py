"""Where dispatch gets its intent: classified in-process, or one stage hop away on the inference workers.

``.venv/bin/python -m bench.intent_route [--n 3000] [--hops 300] [--layout embedded --layout redis]``

- **In-process:** the ONNX intent model trained on the built-in skills (as a dispatch worker trains it), timed per
  message on a set of everyday paraphrases written for this benchmark; then ``dispatch()`` itself on messages no
  trigger matches, without a classifier and with one: the difference is what the classifier adds to a dispatch.
- **One stage hop:** the same classification done by a Celery task on a queue of its own, consumed by a worker in
  this process (threads pool, the stages' reliability settings), timed from ``send_task`` to the moment the task
  has the guess. ``embedded``: the in-memory broker polled every ``EMBEDDED_POLLING_INTERVAL`` (the
  ``assistant run`` default); ``redis``: the Redis broker (DB 12, flushed before and after) as ``compose.yaml``
  runs it. A guess from the inference stage costs this hop, and a second one back to dispatch to run the skill.

Figures are per message, sequential (one message in flight), so they are latencies, not throughput.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.layout import REDIS, _flush_redis

HOP_DB = 12
HOP_QUEUE = "bench.intent_hop"

#: Everyday requests written for this benchmark (not the model's training examples), and chat that no skill answers.
MESSAGES = (
    "外面在下雨吗我要出门", "晚上会不会很冷", "明天去杭州要带伞不", "这两天会热吗", "周六天气好不好",
    "今天是星期几呀", "现在几点钟了呢", "今天几月几号", "帮我看下时间", "你会干些什么",
    "怎么用这个助手啊", "有啥功能", "讲个笑话", "我有点饿了", "推荐一首歌",
    "is it going to rain this evening", "how warm will it be tomorrow", "should i take a coat",
    "what's the time right now", "which day is it", "what can you help me with", "how does this assistant work",
    "tell me a joke", "i'm bored", "play some music",
)  # fmt: skip


def percentiles(samples_s: Sequence[float]) -> tuple[float, float, float]:
    """p50, p95 and p99 in microseconds."""
    ordered = sorted(samples_s)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e6

    return at(0.50), at(0.95), at(0.99)


def timed(call: Callable[[], Any], n: int) -> list[float]:
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return samples


def train_builtin_model(folder: Path) -> tuple[Any, float]:
    """The model a dispatch worker trains for the built-in skills; returns it and the training's wall time."""
    from adapters.intents import OnnxIntentClassifier, train_intent_model
    from skills.builtin import builtin_skills
    from skills.intents import training_samples
    from skills.registry import SkillRegistry

    registry = SkillRegistry()
    for skill in builtin_skills(_NoWeather(), registry.describe):
        registry.add(skill)
    started = time.perf_counter()
    train_intent_model(training_samples(registry), folder)
    seconds = time.perf_counter() - started
    return OnnxIntentClassifier.load(folder), seconds


class _NoWeather:
    """Training and these texts never ask for the weather."""

    def current(self, place: str, language: str) -> None:
        return None

    def daily(self, place: str, language: str, days: int) -> None:
        return None


def in_process(classifier: Any, n: int) -> list[tuple[str, list[float]]]:
    from pipeline.dialogue import DialogueState
    from pipeline.envelope import Envelope
    from skills.builtin import builtin_skills
    from skills.dispatcher import dispatch
    from skills.registry import SkillRegistry

    texts = [MESSAGES[i % len(MESSAGES)] for i in range(n)]
    for text in MESSAGES:  # warm onnxruntime's allocations
        classifier.classify(text)
    it = iter(texts)
    classify = timed(lambda: classifier.classify(next(it)), n)

    registry = SkillRegistry()
    for skill in builtin_skills(_NoWeather(), registry.describe):
        registry.add(skill)
    # Messages no trigger matches and the classifier sends on to inference: dispatch decides, runs no skill.
    unmatched = [t for t in MESSAGES if registry.match(t) is None and _none(classifier.classify(t))]
    envelopes = [
        Envelope(
            message_id=uuid.uuid4().hex,
            session_id="bench",
            channel="web",
            user_id="bench",
            roles=("user",),
            text=t,
            seq=1,
        )
        for t in unmatched
    ]
    state = DialogueState()

    def run(skill: Any, context: dict[str, Any]) -> Any:
        return skill.execute(context)

    def dispatch_with(classify: Any) -> list[float]:
        envs = iter(envelopes[i % len(envelopes)] for i in range(n))
        return timed(lambda: dispatch(next(envs), state, registry, run, classify, 0.5), n)

    without = dispatch_with(None)
    with_model = dispatch_with(classifier.classify)
    return [
        ("in-process classify", classify),
        (f"dispatch(), no classifier ({len(unmatched)} unmatched texts)", without),
        ("dispatch(), with the classifier", with_model),
    ]


def _none(guess: Any) -> bool:
    return guess is None or guess.skill == "__none__" or guess.confidence < 0.5


def one_hop(classifier: Any, layout: str, hops: int) -> list[float]:
    """Latency of sending a message to a task on another queue that classifies it, on ``layout``'s broker."""
    from celery import Celery
    from kombu import Queue

    from pipeline.settings import Settings
    from tasks.broker import transport_for, transport_options
    from tasks.celery_app import RELIABILITY

    if layout == "embedded":
        broker = "memory://localhost/"
        options = transport_options(Settings().embedded_polling_interval)
    else:
        broker = f"{REDIS}/{HOP_DB}"
        options = transport_options(None)
        _flush_redis(HOP_DB)
    app = Celery(f"bench-hop-{layout}", set_as_current=False)
    app.conf.update(
        broker_url=broker,
        broker_transport=transport_for(broker),
        broker_transport_options=options,
        **RELIABILITY,
        task_queues=[Queue(f"{HOP_QUEUE}.{layout}")],
        task_default_queue=f"{HOP_QUEUE}.{layout}",
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
    )
    # A queue and task name per layout: the apps of one process share Celery's registry of task names.
    queue, task = f"{HOP_QUEUE}.{layout}", f"{HOP_QUEUE}.{layout}"
    arrived: dict[str, float] = {}
    done = threading.Condition()

    @app.task(name=task)
    def hop(message_id: str, text: str) -> None:
        classifier.classify(text)
        with done:
            arrived[message_id] = time.perf_counter()
            done.notify_all()

    worker: Any = app.WorkController(
        pool_cls="threads", concurrency=2, queues=[queue], without_heartbeat=True, without_mingle=True,
        without_gossip=True, hostname=f"bench-hop-{layout}@localhost", loglevel="WARNING",
    )  # fmt: skip
    thread = threading.Thread(target=worker.start, name="bench-hop-worker", daemon=True)
    thread.start()
    samples: list[float] = []
    try:
        for i in range(hops + 20):  # the first 20 warm the connections and are not counted
            message_id = uuid.uuid4().hex
            started = time.perf_counter()
            app.send_task(task, args=(message_id, MESSAGES[i % len(MESSAGES)]))
            with done:
                if not done.wait_for(lambda: message_id in arrived, timeout=10):  # noqa: B023 - called at once
                    raise RuntimeError(f"the {layout} hop did not arrive within 10 s")
            if i >= 20:
                samples.append(arrived.pop(message_id) - started)
    finally:
        worker.stop()
        thread.join(5)
        if layout != "embedded":
            _flush_redis(HOP_DB)
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.intent_route", description=__doc__)
    parser.add_argument("--n", type=int, default=3000, help="in-process calls per figure (default 3000)")
    parser.add_argument("--hops", type=int, default=300, help="messages sent through each stage hop (default 300)")
    parser.add_argument("--layout", action="append", choices=["embedded", "redis"], help="hop layouts (default both)")
    parser.add_argument("--hop-child", help=argparse.SUPPRESS)  # LAYOUT:MODEL_DIR, run by main in a child process
    args = parser.parse_args(argv)
    if args.hop_child:
        from adapters.intents import OnnxIntentClassifier

        layout, _, folder = args.hop_child.partition(":")
        print(json.dumps(one_hop(OnnxIntentClassifier.load(Path(folder)), layout, args.hops)))
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-intents-") as folder:
        classifier, trained = train_builtin_model(Path(folder))
        rows = in_process(classifier, args.n)
        for layout in args.layout or ["embedded", "redis"]:
            # A process per layout: a Celery worker stopped in a process is not started again in it.
            child = subprocess.run(
                [sys.executable, "-m", "bench.intent_route", "--hops", str(args.hops), "--hop-child",
                 f"{layout}:{folder}"],
                check=True, capture_output=True, text=True,
            )  # fmt: skip
            samples = json.loads(child.stdout.strip().splitlines()[-1])
            rows.append((f"one stage hop + classify, {layout} broker", samples))
    print(f"intent model: {len(classifier.labels)} labels, trained in {trained:.2f} s")
    width = max(len(name) for name, _ in rows)
    print(f"{'route'.ljust(width)}  {'p50_us':>9}  {'p95_us':>9}  {'p99_us':>9}  {'mean_us':>9}      n")
    for name, samples in rows:
        p50, p95, p99 = percentiles(samples)
        mean = statistics.fmean(samples) * 1e6
        print(f"{name.ljust(width)}  {p50:9.1f}  {p95:9.1f}  {p99:9.1f}  {mean:9.1f}  {len(samples):5d}")
    base, with_model = (percentiles(samples)[0] for name, samples in rows[1:3])
    print(f"the classifier adds {with_model - base:.1f} us p50 to a dispatch that no trigger matches")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
