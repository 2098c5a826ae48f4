"""A WebSocket ``/audio`` client for the tests: sends frames paced at real time, records everything received."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from simple_websocket import Client, ConnectionClosed

from adapters.audio import decode_audio, float32_to_pcm16
from adapters.speech import SAMPLE_RATE

AUDIO = Path(__file__).resolve().parents[2] / "shared" / "audio"
#: 20 ms of 16 kHz audio, as a browser's audio worklet hands it over.
FRAME_SAMPLES = 320


def recording(name: str) -> npt.NDArray[np.float32]:
    """One of the real recordings in ``../shared/audio`` as 16 kHz mono float32."""
    return decode_audio((AUDIO / name).read_bytes(), 60)


def silence(seconds: float) -> npt.NDArray[np.float32]:
    return np.zeros(int(seconds * SAMPLE_RATE), dtype=np.float32)


@dataclass(frozen=True)
class Received:
    """One frame from the server and when it came (``time.monotonic()``)."""

    at: float
    #: The JSON event, or None for a binary frame.
    event: dict[str, Any] | None
    #: The binary frame's bytes.
    audio: bytes = b""

    @property
    def kind(self) -> str:
        return "binary" if self.event is None else str(self.event.get("type"))


class VoiceClient:
    """One connection to ``/audio``: a thread reads every frame into ``received``, in order."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.ws = Client.connect(url, headers=headers)
        self.received: list[Received] = []
        self._arrived = threading.Condition()
        self._taken: set[int] = set()
        self.closed: ConnectionClosed | None = None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                frame = self.ws.receive()
            except ConnectionClosed as exc:
                with self._arrived:
                    self.closed = exc
                    self._arrived.notify_all()
                return
            if frame is None:
                continue
            if isinstance(frame, bytes | bytearray):
                item = Received(time.monotonic(), None, bytes(frame))
            else:
                item = Received(time.monotonic(), json.loads(frame))
            with self._arrived:
                self.received.append(item)
                self._arrived.notify_all()

    def send(self, message: dict[str, Any]) -> None:
        self.ws.send(json.dumps(message, ensure_ascii=False))

    def send_audio(self, samples: npt.NDArray[np.float32], paced: bool = True, frame: int = FRAME_SAMPLES) -> float:
        """Stream ``samples`` as PCM16 frames of ``frame`` samples at real time; returns when the first was sent."""
        started = time.monotonic()
        for index, offset in enumerate(range(0, len(samples), frame)):
            if paced:
                delay = started + index * frame / SAMPLE_RATE - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            self.ws.send(float32_to_pcm16(samples[offset : offset + frame]))
        return started

    def next(self, kind: str | None = None, timeout: float = 30.0) -> Received:
        """The first frame (of ``kind``) not taken by an earlier call, waiting up to ``timeout`` seconds for it.

        Frames of other kinds stay for the calls that ask for them.
        """
        deadline = time.monotonic() + timeout
        with self._arrived:
            while True:
                for index, item in enumerate(self.received):
                    if index not in self._taken and (kind is None or item.kind == kind):
                        self._taken.add(index)
                        return item
                left = deadline - time.monotonic()
                if self.closed is not None:
                    raise AssertionError(f"connection closed ({self.closed}) waiting for {kind}; got {self.summary()}")
                if left <= 0:
                    raise AssertionError(f"no {kind or 'frame'} within {timeout:g} s; received {self.summary()}")
                self._arrived.wait(left)

    def event(self, kind: str, timeout: float = 30.0) -> dict[str, Any]:
        found = self.next(kind, timeout).event
        assert found is not None
        return found

    def wait_closed(self, timeout: float = 10.0) -> ConnectionClosed:
        self._reader.join(timeout)
        assert self.closed is not None, f"still open; received {self.summary()}"
        return self.closed

    def summary(self) -> list[str]:
        """The frames received, binary runs folded: ``["transcript", "reply", "audio_start", "binary x12", ...]``."""
        folded: list[str] = []
        count = 0
        for item in self.received:
            if item.kind == "binary":
                count += 1
                continue
            if count:
                folded.append(f"binary x{count}")
                count = 0
            folded.append(item.kind if item.event is None or item.kind != "error" else f"error:{item.event['code']}")
        if count:
            folded.append(f"binary x{count}")
        return folded

    def close(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            self.ws.close()


def of_message(client: VoiceClient, message_id: str) -> list[Received]:
    """What came for one message: its events, and the binary frames between its audio_start and audio_end."""
    found: list[Received] = []
    speaking: str | None = None
    for item in client.received:
        if item.event is None:
            if speaking == message_id:
                found.append(item)
            continue
        if item.kind == "audio_start":
            speaking = item.event["message_id"]
        if item.event.get("message_id") == message_id:
            found.append(item)
        if item.kind == "audio_end":
            speaking = None
    return found


def kinds(items: list[Received]) -> list[str]:
    """Event kinds with binary runs folded into one ``binary``."""
    folded: list[str] = []
    for item in items:
        if not (item.kind == "binary" and folded and folded[-1] == "binary"):
            folded.append(item.kind)
    return folded


def assert_spoken_in_order(client: VoiceClient, message_id: str, speech_in: bool = True) -> list[Received]:
    """One spoken reply's whole sequence, in order; its binary frames."""
    items = of_message(client, message_id)
    sequence = [kind for kind in kinds(items) if kind != "partial"]
    expected = ["transcript", "reply", "audio_start", "binary", "audio_end"]
    assert sequence == (expected if speech_in else expected[1:]), client.summary()
    # Partial transcripts, if any, come before the transcript.
    first_other = next(i for i, item in enumerate(items) if item.kind != "partial")
    assert all(item.kind != "partial" for item in items[first_other:])
    assert items[-1].event == {**items[-1].event, "type": "audio_end", "interrupted": False}
    return [item for item in items if item.kind == "binary"]
