"""One reply subscription per gateway process, fanned out to the requests and streams waiting in it."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from adapters.state import ReplyStream, Subscription
from pipeline.envelope import Reply

logger = logging.getLogger(__name__)

#: Replies held for one slow stream before the oldest is dropped (the client re-reads from its cursor).
STREAM_BUFFER = 256


class _Waiter:
    """One request waiting for one reply."""

    __slots__ = ("event", "result")

    def __init__(self) -> None:
        # threading primitives and queue.Queue are cooperative under gevent's monkey patching.
        self.event = threading.Event()
        self.result: tuple[str, Reply] | None = None

    def wait(self, timeout: float) -> tuple[str, Reply] | None:
        return self.result if self.event.wait(timeout) else None


class ReplyHub:
    """Wakes a waiting request when its reply arrives, instead of polling for it."""

    def __init__(self, replies: ReplyStream) -> None:
        self._replies = replies
        self._lock = threading.Lock()
        self._waiters: dict[str, list[_Waiter]] = {}
        self._streams: dict[str, set[queue.Queue[tuple[str, Reply]]]] = {}
        self._subscription: Subscription | None = None

    def ensure_started(self) -> None:
        """Subscribe on first use, in the serving process (after any fork)."""
        if self._subscription is None:
            with self._lock:
                if self._subscription is None:
                    self._subscription = self._replies.subscribe(self._on_reply)

    def close(self) -> None:
        if self._subscription is not None:
            self._subscription.close()
            self._subscription = None

    def _on_reply(self, cursor: str, reply: Reply) -> None:
        with self._lock:
            waiters = self._waiters.pop(reply.message_id, [])
            streams = list(self._streams.get(reply.session_id, ()))
        for waiter in waiters:
            waiter.result = (cursor, reply)
            waiter.event.set()
        for stream in streams:
            try:
                stream.put_nowait((cursor, reply))
            except queue.Full:
                logger.warning("reply stream of session %s is full; the client will catch up", reply.session_id)

    @contextmanager
    def expect(self, message_id: str) -> Iterator[_Waiter]:
        """Register for the reply to ``message_id`` for the block; ``wait`` on what it yields.

        Registering before the message is submitted means its reply cannot slip past unseen.
        """
        self.ensure_started()
        waiter = _Waiter()
        with self._lock:
            self._waiters.setdefault(message_id, []).append(waiter)
        try:
            yield waiter
        finally:
            with self._lock:
                pending = self._waiters.get(message_id)
                if pending is not None and waiter in pending:
                    pending.remove(waiter)
                    if not pending:
                        del self._waiters[message_id]

    def wait_for_reply(self, message_id: str, timeout: float) -> tuple[str, Reply] | None:
        """The reply to an already submitted ``message_id``, or None if it did not come within ``timeout``."""
        with self.expect(message_id) as waiter:
            # Registered first, then looked up: a reply that arrived in between is not missed.
            stored = self._replies.reply_for(message_id)
            if stored is not None:
                return stored
            return waiter.wait(timeout)

    @contextmanager
    def listen(self, session_id: str) -> Iterator[queue.Queue[tuple[str, Reply]]]:
        """A queue receiving the session's replies as they arrive, for as long as the block runs."""
        self.ensure_started()
        stream: queue.Queue[tuple[str, Reply]] = queue.Queue(maxsize=STREAM_BUFFER)
        with self._lock:
            self._streams.setdefault(session_id, set()).add(stream)
        try:
            yield stream
        finally:
            with self._lock:
                streams = self._streams.get(session_id)
                if streams is not None:
                    streams.discard(stream)
                    if not streams:
                        del self._streams[session_id]

    def read_after(self, session_id: str, cursor: str | None, limit: int = 100) -> list[tuple[str, Reply]]:
        return self._replies.read_after(session_id, cursor, limit)
