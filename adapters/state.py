"""What needs Redis in the distributed layout, behind small interfaces, with in-process versions.

``Coordination`` holds per-session keys (owner, sequence, turn lock, dialogue state), idempotency
keys and counters; ``ReplyStream`` holds each session's replies in order, delivers each message's
reply at most once, and wakes the gateways waiting for it. It also passes on the partial text of replies
still being generated: announced to the gateways listening, never stored.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from pipeline.envelope import Reply
from pipeline.turns import Turn, decide_turn, may_deliver

logger = logging.getLogger(__name__)

K = TypeVar("K")

#: Called by a reply subscription with the reply's cursor and the reply.
ReplyListener = Callable[[str, Reply], None]
#: Called by a reply subscription after it missed announcements (it reconnected): re-read the streams.
GapListener = Callable[[], None]


@dataclass(frozen=True, slots=True)
class Partial:
    """A piece of a reply still being generated, for the clients streaming the session's events."""

    #: The session the reply belongs to.
    session_id: str
    #: The message being answered.
    message_id: str
    #: Position of the piece among the message's pieces: 0, 1, 2, ...
    index: int
    #: The text added since the previous piece.
    delta: str


#: Called by a reply subscription with each partial announced (``subscribe``'s ``on_partial``).
PartialListener = Callable[[Partial], None]


@dataclass(frozen=True, slots=True)
class TurnStart:
    """Answer of ``Coordination.acquire_turn``, with what the turn needs, read in the same round trip."""

    turn: Turn
    #: The session's dialogue state (JSON), when the turn is ``GO`` and Redis still has it.
    state_json: str | None = None
    #: Version of the registered skills, so a worker knows when to reload them.
    skills_version: int = 0


@dataclass(frozen=True, slots=True)
class Registration:
    """The outcome of registering an inbound message at the edge."""

    #: ``ok``, ``duplicate`` (the client_msg_id was seen: ids are the first message's), ``forbidden``,
    #: or ``unclaimed`` (asked not to claim, and the session has no owner here).
    status: str
    message_id: str = ""
    session_id: str = ""
    #: Position of the message in its session (1, 2, ...); 0 for duplicates.
    seq: int = 0


@dataclass(frozen=True, slots=True)
class Stalled:
    """An accepted message whose reply has not gone out long after it was accepted, to be sent again."""

    message_id: str
    #: The envelope as the edge accepted it, without its place in the session (``seq``).
    envelope_json: str
    seq: int


class Coordination(Protocol):
    def register_message(
        self,
        user_id: str,
        session_id: str,
        message_id: str,
        client_msg_id: str | None,
        ttl: int,
        claim: bool = True,
        envelope_json: str | None = None,
    ) -> Registration:
        """Give the message its place in the session, unless the session is another's or the client id was seen.

        ``envelope_json`` (with ``seq`` 0) is kept until the message's reply goes out, so a message the broker
        lost in transit is found and sent again (``rescue_stalled``).
        """
        ...

    def rescue_stalled(self, older_than: float, limit: int, max_rescues: int, every: float) -> list[Stalled]:
        """Accepted messages still without a reply after ``older_than`` seconds whose session nobody is working
        on; each is due again ``older_than`` seconds later, at most ``max_rescues`` times. Of the workers that
        call this every ``every`` seconds, one gets the messages; the others get nothing."""
        ...

    def withdraw_message(self, user_id: str, registration: Registration, client_msg_id: str | None, ttl: int) -> None:
        """Undo a registration whose message never reached the queue, so the client can send it again.

        The ``client_msg_id`` is forgotten. The sequence number is given back when no later message took one;
        otherwise it is marked skipped, and neither turns nor replies of the session wait for it.
        """
        ...

    def session_owner(self, session_id: str) -> str | None: ...

    def load_state(self, session_id: str) -> str | None: ...

    def save_state(self, session_id: str, state_json: str, ttl: int) -> None: ...

    def acquire_turn(self, session_id: str, seq: int, token: str, lock_ms: int, force: bool) -> TurnStart: ...

    def renew_turn(self, session_id: str, token: str, lock_ms: int) -> bool:
        """Extend the turn's lock while its holder works; False when the lock is no longer this token's."""
        ...

    def finish_turn(self, session_id: str, seq: int, token: str, ttl: int, state_json: str | None = None) -> bool:
        """Mark ``seq`` done and release the lock; the state is saved only while the lock is still ``token``'s.

        Returns False when the turn outlived its lock (another turn may have begun): its state is dropped
        rather than written over the newer turn's.
        """
        ...

    def pass_over(self, session_id: str, seq: int, ttl: int) -> None:
        """Mark ``seq`` skipped for good (its message was given up on): no later turn or reply waits for it."""
        ...

    def count_delivery(self, key: str, ttl: int) -> int: ...

    def skills_version(self) -> int: ...

    def bump_skills_version(self) -> int: ...

    def set_catalog(self, catalog_json: str) -> None: ...

    def catalog(self) -> str | None: ...

    def ping(self) -> None: ...


class Subscription(Protocol):
    def close(self) -> None: ...


class EarlierReplyPending(Exception):
    """``ReplyStream.append`` refused: a reply to an earlier message of the session has not gone out yet."""


class ReplyStream(Protocol):
    def append(self, reply: Reply, ttl: int, force: bool = True) -> str | None:
        """Add ``reply`` to its session's stream; its cursor, or None when it was there already.

        Unless ``force``, raises ``EarlierReplyPending`` while the reply to the session's previous
        message (``reply.seq - 1``) is missing, so concurrent deliverers keep a session's replies in order.
        """
        ...

    def read_after(self, session_id: str, cursor: str | None, limit: int) -> list[tuple[str, Reply]]: ...

    def reply_for(self, message_id: str) -> tuple[str, Reply] | None: ...

    def subscribe(
        self, listener: ReplyListener, on_gap: GapListener, on_partial: PartialListener | None = None
    ) -> Subscription:
        """Announce each appended reply to ``listener`` (and each partial to ``on_partial``) on one subscription."""
        ...

    def publish_partial(self, partial: Partial) -> None:
        """Announce a piece of a reply still being generated. Not stored: whoever is not listening misses it, and
        the final reply carries the whole text."""
        ...

    def ping(self) -> None: ...


def cursor_key(cursor: str | None) -> tuple[int, int]:
    """Order of a cursor (``<milliseconds>-<n>``, Redis stream id form); malformed sorts first."""
    if not cursor:
        return (0, 0)
    ms, _, n = cursor.partition("-")
    try:
        return (int(ms), int(n or 0))
    except ValueError:
        return (0, 0)


def valid_cursor(cursor: str) -> bool:
    ms, sep, n = cursor.partition("-")
    return ms.isdigit() and (not sep or n.isdigit())


#: How often the in-process stores drop what has expired, at most (seconds).
SWEEP_SECONDS = 60.0


class _Deadlines(Generic[K]):
    """Expiry times of keys, as Redis keeps them with EXPIRE; the owner drops what ``expired`` returns.

    Not thread-safe by itself: the stores call it under their own lock.
    """

    def __init__(self, sweep_seconds: float) -> None:
        self._deadlines: dict[K, float] = {}
        self._sweep_seconds = sweep_seconds
        self._next_sweep = 0.0

    def touch(self, key: K, ttl: float) -> None:
        self._deadlines[key] = time.monotonic() + ttl

    def forget(self, key: K) -> None:
        self._deadlines.pop(key, None)

    def expired(self) -> list[K]:
        """The keys past their deadline (forgotten here), when a sweep is due; else nothing."""
        now = time.monotonic()
        if now < self._next_sweep:
            return []
        self._next_sweep = now + self._sweep_seconds
        gone = [key for key, deadline in self._deadlines.items() if deadline <= now]
        for key in gone:
            del self._deadlines[key]
        return gone


class SkippedNumbers:
    """Sequence numbers of withdrawn messages, per session: shared by the in-process turn and reply stores."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._skipped: dict[str, set[int]] = {}

    def add(self, session_id: str, seq: int) -> None:
        with self._lock:
            self._skipped.setdefault(session_id, set()).add(seq)

    def of(self, session_id: str) -> frozenset[int]:
        """The skipped numbers of ``session_id``, as a snapshot."""
        with self._lock:
            return frozenset(self._skipped.get(session_id, ()))

    def forget(self, session_id: str) -> None:
        with self._lock:
            self._skipped.pop(session_id, None)


class MemoryCoordination:
    """``Coordination`` for the embedded mode: dictionaries under one lock, in this process.

    Sessions, client message ids and delivery counters expire after their TTL like the Redis keys do, so a
    long-running embedded assistant does not keep every session it ever saw.
    """

    def __init__(self, skipped: SkippedNumbers | None = None, sweep_seconds: float = SWEEP_SECONDS) -> None:
        self._lock = threading.Lock()
        self._skipped = skipped or SkippedNumbers()
        self._expiry: _Deadlines[tuple[str, Any]] = _Deadlines(sweep_seconds)
        self._owners: dict[str, str] = {}
        self._seqs: dict[str, int] = {}
        self._done: dict[str, int] = {}
        self._turn_locks: dict[str, tuple[str, float]] = {}
        self._states: dict[str, str] = {}
        self._client_ids: dict[tuple[str, str], tuple[str, str]] = {}
        self._counters: dict[str, int] = {}
        self._skills_version = 0
        self._catalog: str | None = None

    def register_message(
        self,
        user_id: str,
        session_id: str,
        message_id: str,
        client_msg_id: str | None,
        ttl: int,
        claim: bool = True,
        envelope_json: str | None = None,
    ) -> Registration:
        # In one process nothing is lost between the in-memory queue and its worker: nothing to keep for a rescue.
        with self._lock:
            self._drop_expired()
            owner = self._owners.get(session_id)
            if owner is not None and owner != user_id:
                return Registration("forbidden")
            if owner is None and not claim:
                return Registration("unclaimed")
            if client_msg_id is not None and (user_id, client_msg_id) in self._client_ids:
                first_message, first_session = self._client_ids[(user_id, client_msg_id)]
                return Registration("duplicate", first_message, first_session)
            self._owners[session_id] = user_id
            seq = self._seqs.get(session_id, 0) + 1
            self._seqs[session_id] = seq
            self._expiry.touch(("session", session_id), ttl)
            if client_msg_id is not None:
                self._client_ids[(user_id, client_msg_id)] = (message_id, session_id)
                self._expiry.touch(("cmid", (user_id, client_msg_id)), ttl)
            return Registration("ok", message_id, session_id, seq)

    def withdraw_message(self, user_id: str, registration: Registration, client_msg_id: str | None, ttl: int) -> None:
        with self._lock:
            key = (user_id, client_msg_id or "")
            if client_msg_id is not None and self._client_ids.get(key) == (
                registration.message_id,
                registration.session_id,
            ):
                del self._client_ids[key]
                self._expiry.forget(("cmid", key))
            if self._seqs.get(registration.session_id) == registration.seq:
                self._seqs[registration.session_id] = registration.seq - 1
            else:
                self._skipped.add(registration.session_id, registration.seq)

    def _drop_expired(self) -> None:
        for kind, key in self._expiry.expired():
            if kind == "session":
                for store in (self._owners, self._seqs, self._done, self._turn_locks, self._states):
                    store.pop(key, None)
                self._skipped.forget(key)
            elif kind == "cmid":
                self._client_ids.pop(key, None)
            else:
                self._counters.pop(key, None)

    def session_owner(self, session_id: str) -> str | None:
        with self._lock:
            self._drop_expired()
            return self._owners.get(session_id)

    def load_state(self, session_id: str) -> str | None:
        with self._lock:
            self._drop_expired()
            return self._states.get(session_id)

    def save_state(self, session_id: str, state_json: str, ttl: int) -> None:
        with self._lock:
            self._states[session_id] = state_json
            self._expiry.touch(("session", session_id), ttl)

    def acquire_turn(self, session_id: str, seq: int, token: str, lock_ms: int, force: bool) -> TurnStart:
        with self._lock:
            held = self._turn_locks.get(session_id)
            locked = held is not None and held[1] > time.monotonic()
            done = self._done.get(session_id, 0)
            turn = decide_turn(seq, done, self._skipped.of(session_id), locked, force)
            if turn is not Turn.GO:
                return TurnStart(turn)
            self._turn_locks[session_id] = (token, time.monotonic() + lock_ms / 1000)
            return TurnStart(Turn.GO, self._states.get(session_id), self._skills_version)

    def rescue_stalled(self, older_than: float, limit: int, max_rescues: int, every: float) -> list[Stalled]:
        return []

    def renew_turn(self, session_id: str, token: str, lock_ms: int) -> bool:
        with self._lock:
            held = self._turn_locks.get(session_id)
            if held is None or held[0] != token:
                return False
            self._turn_locks[session_id] = (token, time.monotonic() + lock_ms / 1000)
            return True

    def finish_turn(self, session_id: str, seq: int, token: str, ttl: int, state_json: str | None = None) -> bool:
        with self._lock:
            self._expiry.touch(("session", session_id), ttl)
            held = self._turn_locks.get(session_id)
            owned = held is not None and held[0] == token
            if owned:
                del self._turn_locks[session_id]
                if state_json is not None:
                    self._states[session_id] = state_json
            if seq > self._done.get(session_id, 0):
                self._done[session_id] = seq
            return owned

    def pass_over(self, session_id: str, seq: int, ttl: int) -> None:
        if seq:
            self._skipped.add(session_id, seq)
        with self._lock:
            self._expiry.touch(("session", session_id), ttl)

    def count_delivery(self, key: str, ttl: int) -> int:
        with self._lock:
            self._drop_expired()
            self._expiry.touch(("count", key), ttl)
            self._counters[key] = self._counters.get(key, 0) + 1
            return self._counters[key]

    def skills_version(self) -> int:
        with self._lock:
            return self._skills_version

    def bump_skills_version(self) -> int:
        with self._lock:
            self._skills_version += 1
            return self._skills_version

    def set_catalog(self, catalog_json: str) -> None:
        with self._lock:
            self._catalog = catalog_json

    def catalog(self) -> str | None:
        with self._lock:
            return self._catalog

    def ping(self) -> None:
        return None


class _MemorySubscription:
    def __init__(self, stream: MemoryReplyStream, listener: ReplyListener, on_partial: PartialListener | None) -> None:
        self._stream = stream
        self.listener = listener
        self.on_partial = on_partial

    def close(self) -> None:
        self._stream._unsubscribe(self)


class MemoryReplyStream:
    """``ReplyStream`` for the embedded mode: lists per session, listeners called in the appending thread.

    A session's replies expire after the TTL given with its latest one, as the Redis stream does.
    """

    def __init__(
        self, skipped: SkippedNumbers | None = None, max_per_session: int = 1000, sweep_seconds: float = SWEEP_SECONDS
    ) -> None:
        self._lock = threading.Lock()
        self._skipped = skipped or SkippedNumbers()
        self._expiry: _Deadlines[tuple[str, str]] = _Deadlines(sweep_seconds)
        self._max = max_per_session
        self._sessions: dict[str, list[tuple[str, Reply]]] = {}
        self._by_message: dict[str, tuple[str, Reply]] = {}
        self._delivered: dict[str, int] = {}
        self._subscriptions: list[_MemorySubscription] = []
        self._last = (0, 0)

    def append(self, reply: Reply, ttl: int, force: bool = True) -> str | None:
        with self._lock:
            self._drop_expired()
            if reply.message_id in self._by_message:
                return None
            delivered = self._delivered.get(reply.session_id, 0)
            if not may_deliver(reply.seq, delivered, self._skipped.of(reply.session_id), force):
                raise EarlierReplyPending(reply.session_id)
            self._delivered[reply.session_id] = max(delivered, reply.seq)
            ms = int(time.time() * 1000)
            last_ms, last_n = self._last
            self._last = (ms, 0) if ms > last_ms else (last_ms, last_n + 1)
            cursor = f"{self._last[0]}-{self._last[1]}"
            entries = self._sessions.setdefault(reply.session_id, [])
            entries.append((cursor, reply))
            del entries[: -self._max]
            self._by_message[reply.message_id] = (cursor, reply)
            self._expiry.touch(("session", reply.session_id), ttl)
            self._expiry.touch(("reply", reply.message_id), ttl)
            listeners = [subscription.listener for subscription in self._subscriptions]
        for listener in listeners:
            try:
                listener(cursor, reply)
            except Exception:
                # As with Redis: a failing listener must not fail the delivery that is already stored.
                logger.exception("reply listener failed")
        return cursor

    def _drop_expired(self) -> None:
        for kind, key in self._expiry.expired():
            if kind == "session":
                self._sessions.pop(key, None)
                self._delivered.pop(key, None)
            else:
                self._by_message.pop(key, None)

    def read_after(self, session_id: str, cursor: str | None, limit: int) -> list[tuple[str, Reply]]:
        after = cursor_key(cursor)
        with self._lock:
            self._drop_expired()
            entries = list(self._sessions.get(session_id, ()))
        return [(c, r) for c, r in entries if cursor_key(c) > after][:limit]

    def reply_for(self, message_id: str) -> tuple[str, Reply] | None:
        with self._lock:
            self._drop_expired()
            return self._by_message.get(message_id)

    def subscribe(
        self, listener: ReplyListener, on_gap: GapListener, on_partial: PartialListener | None = None
    ) -> Subscription:
        # In-process listeners are called for every append: they never miss one, so ``on_gap`` is never due.
        subscription = _MemorySubscription(self, listener, on_partial)
        with self._lock:
            self._subscriptions.append(subscription)
        return subscription

    def _unsubscribe(self, subscription: _MemorySubscription) -> None:
        with self._lock:
            if subscription in self._subscriptions:
                self._subscriptions.remove(subscription)

    def publish_partial(self, partial: Partial) -> None:
        # Called in the generating thread: listeners only queue the piece (``ReplyHub``), they never block it.
        with self._lock:
            listeners = [s.on_partial for s in self._subscriptions if s.on_partial is not None]
        for listener in listeners:
            try:
                listener(partial)
            except Exception:
                logger.exception("partial listener failed")

    def ping(self) -> None:
        return None
