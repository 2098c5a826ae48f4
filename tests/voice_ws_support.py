"""For the tests of WebSocket ``/audio``: a client that paces frames at real time and records what comes back, the
embedded pipeline behind the real server, and checks of the order of a spoken reply."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from simple_websocket import Client, ConnectionClosed

from adapters.audio import decode_audio, float32_to_pcm16
from adapters.bundle import Adapters, SpeechEngines
from adapters.db import TranscriptEntry
from adapters.speech import SAMPLE_RATE
from adapters.tokens import issue_token
from adapters.vad import Boundary, SileroVad
from assistant.bootstrap import build_gateway
from assistant.embedded import build_embedded, http_server
from pipeline.audio_config import AudioConfig, VadConfig
from pipeline.settings import Settings

AUDIO = Path(__file__).resolve().parent / "audio"
#: 20 ms of 16 kHz audio, as a browser's audio worklet hands it over.
FRAME_SAMPLES = 320


def recording(name: str) -> npt.NDArray[np.float32]:
    """One of the real recordings in ``tests/audio`` as 16 kHz mono float32."""
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
        # Frames go out as they are sent, as a browser's do, not held back to fill a segment.
        self.ws.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
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


SECRET = "voice-ws-e2e-secret-" + "w" * 28
#: Where the ``models_dir`` fixture installs the models (the engines come from its fixtures; settings name it).
MODELS = Path(os.environ.get("ASSISTANT_TEST_MODELS_DIR", Path.home() / ".cache" / "assistant" / "test-models"))
ENGLISH = "living_room_light_en.wav"
CHINESE = "living_room_light_zh.wav"
#: 44.1 kHz stereo in the file; decoded to 16 kHz mono before it is streamed.
LAMP = "turn_on_the_living_room_lamp.wav"
#: Seconds a transcript, reply or the end of a spoken reply may take here (2 cores, Whisper base).
DEADLINE = 60.0


def settings_for(data: Path, **changes: Any) -> Settings:
    return Settings(
        data_dir=data,
        config_dir=data / "config",
        database_url=f"sqlite:///{data / 'assistant.db'}",
        jwt_secret=SECRET,
        rate_limit_per_user=None,
        rate_limit_per_ip=None,
        audio=AudioConfig(models_dir=MODELS, **changes),
    )


@dataclass
class Pipeline:
    base: str
    settings: Settings
    adapters: Adapters

    def token(self, subject: str) -> str:
        return issue_token(self.settings, subject, ("user",), 3600)

    def connect(self, subject: str) -> VoiceClient:
        url = self.base.replace("http://", "ws://") + "/audio"
        return VoiceClient(url, headers={"Authorization": f"Bearer {self.token(subject)}"})

    def transcript(self, session_id: str) -> list[TranscriptEntry]:
        """The session's transcript as stored: messages, and replies with their timings and speech."""
        return self.adapters.repository.transcript(session_id)


@contextmanager
def running(settings: Settings, speech: SpeechEngines) -> Iterator[Pipeline]:
    """The embedded pipeline with ``settings`` behind cheroot on a free port."""
    adapters, celery_app, workers = build_embedded(settings, speech=speech)
    app = build_gateway(settings, adapters, celery_app)
    workers.start()
    server = http_server(app, "127.0.0.1", 0)
    server.prepare()
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    try:
        yield Pipeline(f"http://127.0.0.1:{server.bind_addr[1]}", settings, adapters)
    finally:
        server.stop()
        workers.stop()
        adapters.close()


def from_speech_onset(vad: SileroVad, audio: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """``audio`` from where the server's endpointer finds its speech begin."""
    for boundary in vad.endpointer(VadConfig()).feed(audio):
        if boundary.kind == Boundary.SPEECH_START:
            return audio[boundary.sample :]
    raise AssertionError("no speech in the audio")


def speech_end(vad: SileroVad, audio: npt.NDArray[np.float32]) -> float:
    """Seconds into ``audio`` where its (first) utterance's speech ends, as the server's endpointer finds it."""
    endpointer = vad.endpointer(VadConfig())
    for boundary in endpointer.feed(np.concatenate((audio, silence(1.0)))):
        if boundary.kind == Boundary.SPEECH_END:
            return boundary.sample / SAMPLE_RATE
    raise AssertionError("no end of speech in the audio")


def start(client: VoiceClient, **fields: Any) -> None:
    client.send({"type": "start", "sample_rate": SAMPLE_RATE, "format": "pcm16", "reply_audio": True, **fields})
