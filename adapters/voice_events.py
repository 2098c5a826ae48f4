"""Per-message voice events: the transcript and the reply's speech as it is synthesized, for the WebSocket edge.

The ``asr`` stage publishes ``partial`` and ``transcript``; the ``tts`` stage publishes ``audio_start``, one
``chunk`` per sentence (with its PCM bytes) and ``audio_end``. The edge that accepted the message reads them in
order, and can ask ``tts`` to stop (barge-in). A Redis stream per message in the distributed layout, memory when
embedded.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from adapters.state import SWEEP_SECONDS, _Deadlines

if TYPE_CHECKING:
    import redis

#: Events kept per message at most: a reply of a few hundred sentences stays whole, a runaway one is trimmed.
MAX_EVENTS = 1000
#: Longest single blocking read on Redis, seconds: below the client's socket timeout, so a long wait is a loop of
#: short ones rather than a timeout error.
BLOCK_SLICE_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class VoiceEvent:
    """One event of a message's voice stream."""

    #: Its position in the stream; pass it as ``after`` to read on.
    cursor: str
    #: The event as JSON: ``{"type": "partial" | "transcript" | "audio_start" | "chunk" | "audio_end", ...}``.
    event: dict[str, Any]
    #: The PCM bytes of a ``chunk``; None for the others.
    audio: bytes | None = None


class VoiceEvents(Protocol):
    """Append-only event streams, one per message, that expire."""

    def publish(self, message_id: str, event: dict[str, Any], audio: bytes | None = None) -> None:
        """Append ``event`` (and ``audio``) to ``message_id``'s stream."""
        ...

    def read(self, message_id: str, after: str | None, timeout: float) -> list[VoiceEvent]:
        """The events after ``after`` (all when None), waiting up to ``timeout`` seconds for the first one."""
        ...

    def cancel(self, message_id: str) -> None:
        """Ask the stage producing ``message_id``'s speech to stop (the listener talked over it)."""
        ...

    def cancelled(self, message_id: str) -> bool:
        """True when ``cancel`` was called for ``message_id``."""
        ...


class MemoryVoiceEvents:
    """``VoiceEvents`` in this process (embedded mode): lists under one condition variable; streams expire
    ``ttl_seconds`` after their last event, cancellations after they were made."""

    def __init__(self, ttl_seconds: float, sweep_seconds: float = SWEEP_SECONDS) -> None:
        self._ttl = ttl_seconds
        self._changed = threading.Condition()
        self._streams: dict[str, list[VoiceEvent]] = {}
        self._cancelled: set[str] = set()
        self._expiry: _Deadlines[tuple[str, str]] = _Deadlines(sweep_seconds)

    def publish(self, message_id: str, event: dict[str, Any], audio: bytes | None = None) -> None:
        with self._changed:
            self._drop_expired()
            stream = self._streams.setdefault(message_id, [])
            # Cursors count up from 1 and are never reused, also after trimming.
            position = int(stream[-1].cursor) + 1 if stream else 1
            stream.append(VoiceEvent(str(position), dict(event), audio))
            del stream[:-MAX_EVENTS]
            self._expiry.touch(("stream", message_id), self._ttl)
            self._changed.notify_all()

    def read(self, message_id: str, after: str | None, timeout: float) -> list[VoiceEvent]:
        seen = _position(after)
        deadline = time.monotonic() + max(0.0, timeout)
        with self._changed:
            while True:
                found = [e for e in self._streams.get(message_id, ()) if int(e.cursor) > seen]
                remaining = deadline - time.monotonic()
                if found or remaining <= 0:
                    return found
                self._changed.wait(remaining)

    def cancel(self, message_id: str) -> None:
        with self._changed:
            self._cancelled.add(message_id)
            self._expiry.touch(("cancel", message_id), self._ttl)

    def cancelled(self, message_id: str) -> bool:
        with self._changed:
            return message_id in self._cancelled

    def _drop_expired(self) -> None:
        for kind, message_id in self._expiry.expired():
            if kind == "stream":
                self._streams.pop(message_id, None)
            else:
                self._cancelled.discard(message_id)


def _position(cursor: str | None) -> int:
    try:
        return int(cursor) if cursor else 0
    except ValueError:
        return 0


class RedisVoiceEvents:
    """``VoiceEvents`` on Redis: a stream per message (``voice:<message_id>``) whose entries hold the event as JSON
    (``e``) and a chunk's PCM (``a``); a cancellation is a key (``voice:<message_id>:cancel``). Both expire.

    Needs a client made with ``decode_responses=False``: the audio is bytes.
    """

    def __init__(self, client: redis.Redis, ttl_seconds: int) -> None:
        self._redis = client
        self._ttl = max(1, int(ttl_seconds))

    def publish(self, message_id: str, event: dict[str, Any], audio: bytes | None = None) -> None:
        fields: dict[str, bytes] = {"e": json.dumps(event, ensure_ascii=False).encode("utf-8")}
        if audio is not None:
            fields["a"] = audio
        key = f"voice:{message_id}"
        pipe = self._redis.pipeline(transaction=False)
        pipe.xadd(key, fields, maxlen=MAX_EVENTS, approximate=True)  # type: ignore[arg-type]
        pipe.expire(key, self._ttl)
        pipe.execute()

    def read(self, message_id: str, after: str | None, timeout: float) -> list[VoiceEvent]:
        key = f"voice:{message_id}"
        start = after or "0-0"
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            block_ms = int(min(deadline - time.monotonic(), BLOCK_SLICE_SECONDS) * 1000)
            # BLOCK 0 would wait forever: no wait left means a plain read, and the last one.
            answer: Any = self._redis.xread({key: start}, count=MAX_EVENTS, block=block_ms if block_ms > 0 else None)
            if answer or block_ms <= 0:
                return [_event(entry_id, fields) for _, entries in answer or () for entry_id, fields in entries]

    def cancel(self, message_id: str) -> None:
        self._redis.set(f"voice:{message_id}:cancel", b"1", ex=self._ttl)

    def cancelled(self, message_id: str) -> bool:
        return bool(self._redis.exists(f"voice:{message_id}:cancel"))


def _event(entry_id: bytes | str, fields: dict[bytes, bytes]) -> VoiceEvent:
    cursor = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return VoiceEvent(cursor, json.loads(fields[b"e"]), fields.get(b"a"))


#: Published by the edge on a provisional message (``Envelope.provisional``): the utterance did end there.
ENDPOINT = "endpoint"
#: Published by the edge (with ``cancel``) on a provisional message whose speaker went on talking.
WITHDRAWN = "withdrawn"


def await_endpoint(events: VoiceEvents, message_id: str, timeout: float) -> bool:
    """Wait for the edge's word on a provisional utterance: True when it confirmed the end, False when it withdrew
    the message. Without a word within ``timeout`` seconds the edge is gone, and the utterance counts as ended:
    the user did say it."""
    deadline = time.monotonic() + timeout
    cursor: str | None = None
    while (left := deadline - time.monotonic()) > 0:
        if events.cancelled(message_id):
            return False
        for seen in events.read(message_id, cursor, min(left, 0.25)):
            cursor = seen.cursor
            kind = seen.event.get("type")
            if kind == ENDPOINT:
                return True
            if kind == WITHDRAWN:
                return False
    return not events.cancelled(message_id)
