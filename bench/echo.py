"""The baseline: a bare Celery task that publishes its payload back on Redis pub/sub, and its load client.

The worker runs as its own process (``python -m bench.echo``, pool threads) on the same Redis broker as
the pipeline and with the same reliability settings (late acks, prefetch 1, JSON, no results), so the
difference between the ``echo`` and ``throughput`` figures is what the pipeline itself costs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from celery import Celery
from kombu import Queue

from tasks.broker import transport_for, transport_options
from tasks.celery_app import RELIABILITY

ECHO_QUEUE = "bench.echo"
ECHO_TASK = "bench.echo"


def create_echo_app(broker_url: str, redis_url: str) -> Celery:
    """A Celery app with the echo task; its Redis client for publishing is built lazily per process."""
    app = Celery("bench-echo", set_as_current=False)
    app.conf.update(
        broker_url=broker_url,
        broker_transport=transport_for(broker_url),
        broker_transport_options=transport_options(None),
        **RELIABILITY,
        task_queues=[Queue(ECHO_QUEUE)],
        task_default_queue=ECHO_QUEUE,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        bench_redis_url=redis_url,
    )
    lock = threading.Lock()

    def publisher() -> Any:
        client = getattr(app, "_bench_redis", None)
        if client is None:
            with lock:
                client = getattr(app, "_bench_redis", None)
                if client is None:
                    import redis

                    pool = redis.BlockingConnectionPool.from_url(redis_url, max_connections=16, timeout=10)
                    client = redis.Redis(connection_pool=pool)
                    app._bench_redis = client
        return client

    @app.task(name=ECHO_TASK)
    def echo(payload: str, channel: str) -> None:
        publisher().publish(channel, payload)

    return app


class EchoClient:
    """Sends echo tasks from a small thread pool and resolves them when their pub/sub message arrives."""

    def __init__(self, broker_url: str, redis_url: str, threads: int = 8) -> None:
        self._app = create_echo_app(broker_url, redis_url)
        self._redis_url = redis_url
        self._channel = f"bench.echo.reply.{os.getpid()}.{time.time_ns()}"
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="echo-send")
        self._pending: dict[int, asyncio.Future[float]] = {}
        self._ids = itertools.count()
        self._reader: asyncio.Task[None] | None = None
        self._pubsub: Any = None
        self._client: Any = None

    async def __aenter__(self) -> EchoClient:
        import redis.asyncio as aioredis

        self._client = aioredis.Redis.from_url(self._redis_url)
        self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        await self._pubsub.subscribe(self._channel)
        self._reader = asyncio.create_task(self._read())
        # Open the producer connection before timing anything.
        await asyncio.get_running_loop().run_in_executor(self._pool, self._warm)
        return self

    def _warm(self) -> None:
        with self._app.producer_or_acquire() as producer:
            producer.connection.ensure_connection(max_retries=3)

    async def __aexit__(self, *exc: object) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._pubsub is not None:
            await self._pubsub.aclose()
        if self._client is not None:
            await self._client.aclose()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._app.close()

    async def _read(self) -> None:
        async for message in self._pubsub.listen():
            arrived = time.perf_counter()
            if message.get("type") != "message":
                continue
            try:
                key = json.loads(message["data"])["id"]
            except (ValueError, KeyError, TypeError):
                continue
            future = self._pending.pop(key, None)
            if future is not None and not future.done():
                future.set_result(arrived)

    def _send(self, payload: str) -> None:
        self._app.send_task(ECHO_TASK, args=[payload, self._channel], queue=ECHO_QUEUE)

    async def round_trip(self, timeout: float = 10.0) -> float:
        """Seconds from handing the task to Celery until its echo arrives."""
        loop = asyncio.get_running_loop()
        key = next(self._ids)
        future: asyncio.Future[float] = loop.create_future()
        self._pending[key] = future
        payload = json.dumps({"id": key, "text": "现在几点"}, ensure_ascii=False)
        started = time.perf_counter()
        try:
            await loop.run_in_executor(self._pool, self._send, payload)
            arrived = await asyncio.wait_for(future, timeout)
        finally:
            self._pending.pop(key, None)
        return arrived - started


def main() -> int:
    """Run the echo worker: ``python -m bench.echo --concurrency 4``."""
    parser = argparse.ArgumentParser(prog="bench.echo")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--hostname", default="echo@%h")
    parser.add_argument("--loglevel", default=os.environ.get("LOG_LEVEL", "INFO"))
    args = parser.parse_args()
    import logging

    logging.basicConfig(level=args.loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_echo_app(os.environ["BENCH_ECHO_BROKER_URL"], os.environ["BENCH_ECHO_REDIS_URL"])
    app.worker_main(
        ["worker", "--queues", ECHO_QUEUE, "--pool", "threads", "--concurrency", str(args.concurrency),
         "--loglevel", args.loglevel.upper(), "--without-gossip", "--without-mingle", "--hostname", args.hostname]
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
