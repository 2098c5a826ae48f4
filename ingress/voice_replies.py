"""The server's side of WebSocket ``/audio``: each message's transcript, reply and spoken reply, in order, paced.

One ``MessageWatch`` thread per message sent on the socket reads the message's voice events (``partial``,
``transcript`` from ``asr``; ``audio_start``, ``chunk``, ``audio_end`` from ``tts``) and waits for its reply on
the session's reply stream. It sends ``reply`` once, from whichever comes first, then the speech as binary frames
at about real time, so that a barge-in stops what has not gone out yet. Replies speak one at a time, in the order
their messages were sent (``Floor``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from typing import Any

from simple_websocket import ConnectionClosed

from adapters.errors import UNAVAILABLE
from adapters.voice_events import VoiceEvent, VoiceEvents
from ingress.replyhub import ReplyHub
from pipeline.envelope import Reply

logger = logging.getLogger(__name__)

#: Length of one binary audio frame, seconds.
FRAME_SECONDS = 0.04
#: How far the audio sent may run ahead of the client's playback: enough to ride out network jitter, little
#: enough that a barge-in silences the reply at once.
LEAD_SECONDS = 0.2
#: Longest single wait for voice events; the reply stream is looked at in between.
POLL_SECONDS = 0.25
#: A message whose reply (and speech) has not come within this is given up on, seconds.
REPLY_TIMEOUT_SECONDS = 300.0
#: After a barge-in, how long to wait for the ``tts`` stage to confirm it stopped, seconds.
CANCEL_CONFIRM_SECONDS = 15.0
#: ``Reply`` fields a ``reply`` event carries (the audio's blob key stays on the server).
REPLY_FIELDS = ("text", "language", "skill", "expects_reply", "actions", "error")

#: Notes in the transcript that a reply's speech was cut off (``message_id``); used when ``tts`` had finished
#: before the barge-in and so could not note it itself. Returns False when no reply is stored.
NoteInterrupted = Callable[[str], bool]


class Outlet:
    """One WebSocket's sending side, shared by the connection's threads: one frame at a time, never raises."""

    def __init__(self, ws: Any) -> None:
        self._ws = ws
        self._lock = threading.Lock()
        #: Set once the connection is closed (by either side); nothing is sent after it.
        self.closed = threading.Event()

    def event(self, payload: dict[str, Any]) -> bool:
        """Send a JSON event; False when the connection is gone."""
        return self._send(json.dumps(payload, ensure_ascii=False))

    def audio(self, pcm16: bytes) -> bool:
        """Send a binary frame; False when the connection is gone."""
        return self._send(pcm16)

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        """Close the connection (``code``: the WebSocket close code); nothing is sent after it."""
        with self._lock:
            self.closed.set()
            with suppress(ConnectionClosed, OSError):
                self._ws.close(code, reason)

    def _send(self, data: str | bytes) -> bool:
        if self.closed.is_set():
            return False
        with self._lock:
            try:
                self._ws.send(data)
            except (ConnectionClosed, OSError):
                self.closed.set()
                return False
        return True


class Floor:
    """Whose reply is speaking: messages take turns in the order they were sent, one at a time."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._queue: list[str] = []
        self._speaking: MessageWatch | None = None

    def join(self, message_id: str) -> None:
        with self._changed:
            self._queue.append(message_id)

    def wait_turn(self, message_id: str, stop: threading.Event, timeout: float) -> bool:
        """Wait until every message sent before ``message_id`` finished speaking; False on ``stop`` or timeout."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._queue and self._queue[0] != message_id:
                remaining = deadline - time.monotonic()
                if stop.is_set() or remaining <= 0:
                    return False
                self._changed.wait(min(remaining, POLL_SECONDS))
            return not stop.is_set()

    def speak(self, watch: MessageWatch) -> None:
        with self._changed:
            self._speaking = watch

    def leave(self, message_id: str) -> None:
        """``message_id`` is done speaking (or never will): the next one may."""
        with self._changed:
            if message_id in self._queue:
                self._queue.remove(message_id)
            if self._speaking is not None and self._speaking.message_id == message_id:
                self._speaking = None
            self._changed.notify_all()

    @property
    def speaking(self) -> MessageWatch | None:
        """The message whose speech is being sent now, if any."""
        with self._changed:
            return self._speaking


@dataclass
class ReplyOutput:
    """Everything the watches of one connection share."""

    outlet: Outlet
    voice_events: VoiceEvents
    hub: ReplyHub
    note_interrupted: NoteInterrupted
    floor: Floor = field(default_factory=Floor)
    watches: list[MessageWatch] = field(default_factory=list)

    def follow(self, message_id: str, session_id: str, speech_in: bool, wants_speech: bool) -> MessageWatch:
        """Start sending ``message_id``'s events and reply; ``speech_in``: it was an utterance (a transcript comes)."""
        if wants_speech:
            self.floor.join(message_id)
        watch = MessageWatch(self, message_id, session_id, speech_in, wants_speech)
        self.watches = [w for w in self.watches if w.is_alive()] + [watch]
        watch.start()
        return watch

    def close(self) -> None:
        """The connection is gone: every watch stops (on its own thread, soon); speech nobody will hear is
        cancelled."""
        self.outlet.closed.set()
        for watch in self.watches:
            watch.abandon()


class MessageWatch(threading.Thread):
    """Follows one message to the end: transcript, reply, then the reply's speech until ``audio_end``."""

    def __init__(
        self, output: ReplyOutput, message_id: str, session_id: str, speech_in: bool, wants_speech: bool
    ) -> None:
        super().__init__(name=f"voice-{message_id[:8]}", daemon=True)
        self._output = output
        self.message_id = message_id
        self.session_id = session_id
        self._speech_in = speech_in
        self._wants_speech = wants_speech
        self._after: str | None = None
        self._heard = False
        self._reply_sent = False
        self._finished = False
        self._tts_end: dict[str, Any] | None = None
        self._sample_rate = 0
        self._playback_end = 0.0
        # Held while a frame or the audio_end goes out, so that no frame follows an audio_end.
        self._speech_lock = threading.Lock()
        self._speaking = False
        #: When the first frame of the reply's speech went out (``time.monotonic()``); None before.
        self.audio_started_at: float | None = None
        #: Set by ``interrupt``: the listener spoke over the reply.
        self.interrupted = threading.Event()
        self._abandoned = threading.Event()

    def interrupt(self) -> bool:
        """Barge-in: the reply's speech ends here (``audio_end`` with ``interrupted``); False if it was not speaking.

        Called from the connection's reading thread: the ``audio_end`` goes out at once, the rest (telling ``tts``
        to stop, the transcript) happens on this thread.
        """
        with self._speech_lock:
            if not self._speaking:
                return False
            self._speaking = False
            self.interrupted.set()
            self._send({"type": "audio_end", "interrupted": True})
        self._output.floor.leave(self.message_id)
        return True

    def abandon(self) -> None:
        """The connection closed: stop."""
        self._abandoned.set()

    def run(self) -> None:
        try:
            with ExitStack() as stack:
                waiter = stack.enter_context(self._output.hub.expect(self.message_id))
                self._follow(waiter)
        except UNAVAILABLE as exc:
            logger.warning("voice events of %s unreadable: %s", self.message_id, type(exc).__name__)
            self._send_error("service_unavailable", "a server the assistant needs is unreachable")
        except Exception:
            logger.exception("following message %s failed", self.message_id)
            self._send_error("internal_error", "the reply could not be sent")
        finally:
            self._output.floor.leave(self.message_id)

    def _follow(self, waiter: Any) -> None:
        hub, events = self._output.hub, self._output.voice_events
        early = hub.reply_for(self.message_id)  # a resend's reply, or one faster than this thread
        deadline = time.monotonic() + REPLY_TIMEOUT_SECONDS
        while not self._finished and time.monotonic() < deadline:
            if self.interrupted.is_set():
                self._after_barge_in(waiter)
                return
            if self._abandoned.is_set() or self._output.outlet.closed.is_set():
                self._cancel_unheard()
                return
            replied = early is not None or waiter.event.is_set()
            if not (self._speech_in and not self._heard) and not self._wants_speech and not replied:
                waiter.wait(POLL_SECONDS)  # no voice events to come: only the reply
            else:
                self._handle(events.read(self.message_id, self._after, POLL_SECONDS))
            if not self._reply_sent and not self._finished and (early is not None or waiter.event.is_set()):
                # The voice stream first: its transcript was published before the reply was made.
                self._handle(events.read(self.message_id, self._after, 0))
                found = early or waiter.result
                if not self._reply_sent and found is not None:
                    self._reply_from_stream(found[1])
        if not self._finished and not self.interrupted.is_set():
            self._send_error("reply_timeout", "no reply came in time")

    def _handle(self, events: list[VoiceEvent]) -> None:
        for item in events:
            self._after = item.cursor
            kind = item.event.get("type")
            if kind in ("partial", "transcript"):
                self._send({**item.event, "type": kind})
                self._heard = self._heard or kind == "transcript"
            elif kind == "audio_start":
                self._audio_start(item.event)
            elif kind == "chunk" and item.audio:
                self._play(item.audio)
            elif kind == "audio_end":
                self._tts_end = item.event
                self._audio_end()
            if self._finished or self.interrupted.is_set():
                return

    def _reply_from_stream(self, reply: Reply) -> None:
        payload: dict[str, Any] = {name: getattr(reply, name) for name in REPLY_FIELDS}
        payload["actions"] = list(reply.actions)
        if reply.audio is not None:
            payload["audio"] = {k: v for k, v in reply.audio.items() if k != "key"}
        self._send({"type": "reply", **payload})
        self._reply_sent = True
        # Its speech, had it any, would have come first: tts publishes audio_start before it passes the reply on, and
        # the voice stream was read to its end just now. So none comes (not asked for, no voice for the language,
        # synthesis failed, or the voice stream of an old message expired).
        self._finished = True

    def _audio_start(self, event: dict[str, Any]) -> None:
        if not self._reply_sent:
            self._send({"type": "reply", **{name: event[name] for name in REPLY_FIELDS if name in event}})
            self._reply_sent = True
        if not self._output.floor.wait_turn(self.message_id, self._abandoned, REPLY_TIMEOUT_SECONDS):
            return
        self._sample_rate = int(event.get("sample_rate") or 0)
        with self._speech_lock:
            self._send({"type": "audio_start", "sample_rate": self._sample_rate})
            self._speaking = True
        self._output.floor.speak(self)
        self._playback_end = time.monotonic()

    def _play(self, pcm16: bytes) -> None:
        """Send ``pcm16`` in frames, never more than ``LEAD_SECONDS`` ahead of the client's playback."""
        if self._sample_rate <= 0:
            return
        frame_bytes = max(2, int(self._sample_rate * FRAME_SECONDS) * 2)
        for offset in range(0, len(pcm16), frame_bytes):
            ahead = self._playback_end - time.monotonic()
            if ahead > LEAD_SECONDS and self.interrupted.wait(ahead - LEAD_SECONDS):
                return
            frame = pcm16[offset : offset + frame_bytes]
            with self._speech_lock:
                if not self._speaking or self._abandoned.is_set():
                    return
                if self.audio_started_at is None:
                    # Before the frame goes: its echo cannot arrive before this time is known.
                    self.audio_started_at = time.monotonic()
                if not self._output.outlet.audio(frame):
                    return
            # The client plays from when the frame arrives, or after what it already holds.
            self._playback_end = max(self._playback_end, time.monotonic()) + len(frame) / 2 / self._sample_rate

    def _audio_end(self) -> None:
        with self._speech_lock:
            if not self._speaking:
                return  # interrupted: _after_barge_in takes it from here
            self._speaking = False
            self._send({"type": "audio_end", "interrupted": False})
        self._output.floor.leave(self.message_id)
        self._finished = True

    def _after_barge_in(self, waiter: Any) -> None:
        """Tell ``tts`` to stop, and see that the transcript notes the reply was cut off."""
        events = self._output.voice_events
        events.cancel(self.message_id)
        ended = self._tts_end
        deadline = time.monotonic() + CANCEL_CONFIRM_SECONDS
        while ended is None and time.monotonic() < deadline:  # the transcript is noted even if the client left
            for item in events.read(self.message_id, self._after, POLL_SECONDS):
                self._after = item.cursor
                if item.event.get("type") == "audio_end":
                    ended = item.event
        self._finished = True
        if ended is None or ended.get("interrupted"):
            return  # tts stopped and noted it in the reply it stored (or never answered)
        # tts finished before it saw the cancellation, so its reply says nothing of the barge-in. The reply is in
        # the database once it is on the reply stream: the deliverer stores it first.
        if self._output.hub.wait_for_reply(waiter, CANCEL_CONFIRM_SECONDS) is not None:
            self._output.note_interrupted(self.message_id)

    def _cancel_unheard(self) -> None:
        """The connection closed before the speech was all sent: nobody will hear the rest."""
        if self._wants_speech and not self._finished:
            try:
                self._output.voice_events.cancel(self.message_id)
            except UNAVAILABLE as exc:
                logger.warning("could not cancel the speech of %s: %s", self.message_id, type(exc).__name__)

    def _send(self, payload: dict[str, Any]) -> None:
        self._output.outlet.event({**payload, "session_id": self.session_id, "message_id": self.message_id})

    def _send_error(self, code: str, message: str) -> None:
        self._send({"type": "error", "code": code, "message": message})
