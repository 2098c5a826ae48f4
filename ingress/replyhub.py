"""One reply subscription per gateway process, fanned out to the requests and streams waiting in it.

Announcements are only a wake-up: the reply streams hold every reply. When a listener may have missed one
(its buffer overflowed, or the subscription reconnected), it reads the stream again from its last cursor.
Partial text of replies being generated goes only to the listeners that asked for it, and is dropped rather
than buffered past a slow listener's room: the final reply carries the whole text.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from adapters.state import Partial, ReplyStream, Subscription, cursor_key
from pipeline.envelope import Reply

logger = logging.getLogger(__name__)

#: Replies buffered for one slow stream; past it, the stream re-reads from its cursor instead.
STREAM_BUFFER = 256
#: Most replies a stream reads back in one go after a gap.
CATCH_UP_LIMIT = 1000

Entry = tuple[str, Reply]
#: What a listener that takes partials yields: a reply with its cursor, or a piece of one being generated.
Event = Entry | Partial


class _Waiter:
    """One request waiting for one reply."""

    __slots__ = ("event", "message_id", "result")

    def __init__(self, message_id: str) -> None:
        # threading primitives and queue.Queue are cooperative under gevent's monkey patching.
        self.message_id = message_id
        self.event = threading.Event()
        self.result: Entry | None = None

    def wait(self, timeout: float) -> Entry | None:
        return self.result if self.event.wait(timeout) else None


class SessionListener:
    """The replies of one session as they arrive, for one stream or long-poll; never misses one.

    ``next`` yields the replies after the cursor given at the start, in order and each once: what the
    announcements bring, and what the stream holds whenever the announcements may have skipped some. Made with
    ``partials`` (``ReplyHub.listen``), its ``events`` also yields the partials announced, in the order they came,
    among the replies.
    """

    def __init__(self, hub: ReplyHub, session_id: str, after: str | None) -> None:
        self._hub = hub
        self.session_id = session_id
        self.last = after
        self._queue: queue.Queue[Event | None] = queue.Queue(maxsize=STREAM_BUFFER)
        self._gap = threading.Event()

    def offer(self, entry: Entry) -> None:
        try:
            self._queue.put_nowait(entry)
        except queue.Full:
            self.mark_gap()

    def offer_partial(self, partial: Partial) -> None:
        """Queue a partial; dropped when the reader is that far behind (never blocks the subscription)."""
        with suppress(queue.Full):
            self._queue.put_nowait(partial)

    def mark_gap(self) -> None:
        """Announcements may have been missed: re-read the stream on the next call."""
        self._gap.set()
        # Wake a reader blocked on the queue; if the queue is full it is awake anyway.
        with suppress(queue.Full):
            self._queue.put_nowait(None)

    def catch_up(self) -> list[Entry]:
        """What the stream holds after the last cursor (first call, and after every gap)."""
        self._gap.clear()
        found = self._hub.read_after(self.session_id, self.last, limit=CATCH_UP_LIMIT)
        return self._accept(found)

    def next(self, timeout: float) -> list[Entry]:
        """The replies that arrive within ``timeout`` seconds (usually one; several after a gap); [] if none."""
        return [event for event in self.events(timeout) if not isinstance(event, Partial)]

    def events(self, timeout: float) -> list[Event]:
        """What arrives within ``timeout`` seconds: replies as ``next`` gives them, and partials; [] if none."""
        if self._gap.is_set():
            return list(self.catch_up())
        try:
            event = self._queue.get(timeout=timeout)
        except queue.Empty:
            return []
        if event is None or self._gap.is_set():
            return list(self.catch_up())
        if isinstance(event, Partial):
            return [event]
        return list(self._accept([event]))

    def _accept(self, entries: list[Entry]) -> list[Entry]:
        fresh = []
        for cursor, reply in entries:
            if self.last is not None and cursor_key(cursor) <= cursor_key(self.last):
                continue
            self.last = cursor
            fresh.append((cursor, reply))
        return fresh


class ReplyHub:
    """Wakes a waiting request when its reply arrives, instead of polling for it."""

    def __init__(self, replies: ReplyStream) -> None:
        self._replies = replies
        self._lock = threading.Lock()
        self._waiters: dict[str, list[_Waiter]] = {}
        self._listeners: dict[str, set[SessionListener]] = {}
        #: Listeners that take partials, by session: most streams' sessions have none, so most partials stop here.
        self._partial_listeners: dict[str, set[SessionListener]] = {}
        self._subscription: Subscription | None = None

    def ensure_started(self) -> None:
        """Subscribe on first use, in the serving process (after any fork)."""
        if self._subscription is None:
            with self._lock:
                if self._subscription is None:
                    self._subscription = self._replies.subscribe(self._on_reply, self._on_gap, self._on_partial)

    def close(self) -> None:
        if self._subscription is not None:
            self._subscription.close()
            self._subscription = None

    def _on_reply(self, cursor: str, reply: Reply) -> None:
        with self._lock:
            waiters = self._waiters.pop(reply.message_id, [])
            listeners = list(self._listeners.get(reply.session_id, ()))
        for waiter in waiters:
            waiter.result = (cursor, reply)
            waiter.event.set()
        for listener in listeners:
            listener.offer((cursor, reply))

    def _on_partial(self, partial: Partial) -> None:
        with self._lock:
            listeners = list(self._partial_listeners.get(partial.session_id, ()))
        for listener in listeners:
            listener.offer_partial(partial)

    def _on_gap(self) -> None:
        """The subscription missed announcements: every stream re-reads, every waiting request looks its reply up."""
        with self._lock:
            listeners = [listener for group in self._listeners.values() for listener in group]
            waiting = list(self._waiters)
        logger.info("reply subscription resumed; %d streams and %d requests re-read", len(listeners), len(waiting))
        for listener in listeners:
            listener.mark_gap()
        for message_id in waiting:
            try:
                stored = self._replies.reply_for(message_id)
            except Exception as exc:
                logger.warning("could not look up a reply after the gap: %s", type(exc).__name__)
                return
            if stored is not None:
                self._on_reply(*stored)

    @contextmanager
    def expect(self, message_id: str) -> Iterator[_Waiter]:
        """Register for the reply to ``message_id`` for the block; ``wait`` on what it yields.

        Registering before the message is submitted means its reply cannot slip past unseen.
        """
        self.ensure_started()
        waiter = _Waiter(message_id)
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

    def wait_for_reply(self, waiter: _Waiter, timeout: float) -> Entry | None:
        """The reply ``waiter`` waits for, within ``timeout``; the stored reply is read once more at the end.

        The last look covers a reply whose announcement was lost in a way the subscription could not see.
        """
        found = waiter.wait(timeout)
        if found is None:
            found = self._replies.reply_for(waiter.message_id)
        return found

    def reply_for(self, message_id: str) -> Entry | None:
        return self._replies.reply_for(message_id)

    @contextmanager
    def listen(self, session_id: str, after: str | None, partials: bool = False) -> Iterator[SessionListener]:
        """A listener on the session's replies after cursor ``after`` (and its partials, with ``partials``), for as
        long as the block runs."""
        self.ensure_started()
        listener = SessionListener(self, session_id, after)
        groups = [self._listeners, self._partial_listeners] if partials else [self._listeners]
        with self._lock:
            for group in groups:
                group.setdefault(session_id, set()).add(listener)
        try:
            yield listener
        finally:
            with self._lock:
                for group in groups:
                    listeners = group.get(session_id)
                    if listeners is not None:
                        listeners.discard(listener)
                        if not listeners:
                            del group[session_id]

    def read_after(self, session_id: str, cursor: str | None, limit: int = 100) -> list[Entry]:
        return self._replies.read_after(session_id, cursor, limit)
