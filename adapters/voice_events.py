"""Per-message voice events: the transcript and the reply's speech as it is synthesized, for the WebSocket edge.

The ``asr`` stage publishes ``transcript``; the ``tts`` stage publishes ``audio_start``, one ``chunk`` per
sentence (with its PCM bytes) and ``audio_end``. The edge that accepted the message reads them in order, and
can ask ``tts`` to stop (barge-in). A Redis stream per message in the distributed layout, memory when embedded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class VoiceEvent:
    """One event of a message's voice stream."""

    #: Its position in the stream; pass it as ``after`` to read on.
    cursor: str
    #: The event as JSON: ``{"type": "transcript" | "audio_start" | "chunk" | "audio_end", ...}``.
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
