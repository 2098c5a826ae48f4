"""WebSocket ``/audio`` end to end on the embedded server: real recordings streamed at real time, real Whisper and
Piper, the whole pipeline (asr → dispatch → inference → tts → reply) in between.

Each test checks the order of what comes back: partial and transcript before reply, reply before audio_start,
binary frames only between audio_start and audio_end, audio_end last.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import requests
from support import eventually
from voice_ws_client import Received, VoiceClient, assert_spoken_in_order, kinds, of_message, recording, silence

from adapters.audio import decode_audio, resample
from adapters.bundle import Adapters, SpeechEngines
from adapters.db import TranscriptEntry
from adapters.speech import SAMPLE_RATE
from adapters.tokens import issue_token
from adapters.vad import Boundary, SileroVad
from assistant.bootstrap import build_gateway, build_speech
from assistant.embedded import build_embedded, http_server
from ingress.voice_replies import LEAD_SECONDS
from pipeline.audio_config import AsrConfig, AudioConfig, VadConfig
from pipeline.settings import Settings

SECRET = "voice-ws-e2e-secret-" + "w" * 28
MODELS = Path(os.environ.get("ASSISTANT_TEST_MODELS_DIR", Path.home() / ".cache" / "assistant" / "test-models"))
ENGLISH = "living_room_light_en.wav"
CHINESE = "living_room_light_zh.wav"
#: 44.1 kHz stereo in the file; decoded to 16 kHz mono before it is streamed.
LAMP = "turn_on_the_living_room_lamp.wav"
#: Seconds a transcript, reply or the end of a spoken reply may take here (2 cores, Whisper base).
DEADLINE = 60.0


@pytest.fixture(scope="module")
def speech() -> SpeechEngines:
    """Whisper base and Piper's en_US-joe-medium, loaded and warmed once for the module."""
    if not (MODELS / "whisper-base" / "model.bin").exists():
        pytest.skip(f"no models in {MODELS}: run `assistant models install` into it")
    engines = build_speech(settings_for(Path("unused")))
    engines.warm_up()
    return engines


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


@pytest.fixture(scope="module")
def pipeline(speech: SpeechEngines, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    with running(settings_for(tmp_path_factory.mktemp("voice-ws")), speech) as started:
        yield started


@pytest.fixture(scope="module")
def vad() -> SileroVad:
    return SileroVad()


def espeak(text: str, tmp_path: Path) -> npt.NDArray[np.float32]:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install -y espeak-ng)")
    wav = tmp_path / "espeak.wav"
    subprocess.run(["espeak-ng", "-s", "150", "-w", str(wav), text], check=True, capture_output=True)
    audio = decode_audio(wav.read_bytes(), 60)
    loud = np.flatnonzero(np.abs(audio) > 0.01)
    return audio[loud[0] : loud[-1] + 1]  # the words, without espeak's own silence around them


def speech_end(vad: SileroVad, audio: npt.NDArray[np.float32]) -> float:
    """Seconds into ``audio`` where its (first) utterance's speech ends, as the server's endpointer finds it."""
    endpointer = vad.endpointer(VadConfig())
    for boundary in endpointer.feed(np.concatenate((audio, silence(1.0)))):
        if boundary.kind == Boundary.SPEECH_END:
            return boundary.sample / SAMPLE_RATE
    raise AssertionError("no end of speech in the audio")


def start(client: VoiceClient, **fields: Any) -> None:
    client.send({"type": "start", "sample_rate": SAMPLE_RATE, "format": "pcm16", "reply_audio": True, **fields})


def assert_paced(frames: list[Received], sample_rate: int) -> float:
    """The frames came at about real time: not all at once; returns the seconds of audio in them."""
    seconds = sum(len(frame.audio) for frame in frames) / 2 / sample_rate
    spread = frames[-1].at - frames[0].at
    assert spread >= seconds - LEAD_SECONDS - 0.15, (spread, seconds)
    assert all(len(frame.audio) % 2 == 0 for frame in frames)
    return seconds


def test_an_utterance_ended_by_the_server_vad(pipeline: Pipeline) -> None:
    client = pipeline.connect("ada")
    try:
        start(client)
        client.send_audio(np.concatenate((silence(0.3), recording(ENGLISH), silence(1.2))))  # no "end": VAD ends it
        transcript = client.event("transcript", DEADLINE)
        assert "living room" in transcript["text"].lower()
        assert transcript["language"] == "en"
        audio_start = client.event("audio_start", DEADLINE)
        assert audio_start["sample_rate"] == 22050
        client.event("audio_end", DEADLINE)
        message_id = transcript["message_id"]
        frames = assert_spoken_in_order(client, message_id)
        seconds = assert_paced(frames, audio_start["sample_rate"])
        reply = next(item.event for item in client.received if item.kind == "reply")
        assert reply["text"] and reply["session_id"] == transcript["session_id"]
        entries = eventually(lambda: pipeline.transcript(transcript["session_id"]), 10, "the transcript")
        assert [e.kind for e in entries] == ["message", "reply"]
        assert "living room" in entries[0].text.lower()
        stored = entries[1].audio
        assert stored is not None and stored["status"] == "ready" and stored["interrupted"] is False
        assert abs(stored["duration_seconds"] - seconds) < 0.05
        assert {"decode", "vad", "asr"} <= {name for name, _ in entries[1].timings}
    finally:
        client.close()


def test_end_frame_ends_an_utterance_and_input_at_another_rate_is_resampled(pipeline: Pipeline) -> None:
    """Push to talk: the client says when the utterance is over. 44.1 kHz f32 comes in, 16 kHz goes on."""
    client = pipeline.connect("bo")
    try:
        start(client, sample_rate=44100, format="f32", reply_audio=False)
        audio = resample(np.concatenate((silence(0.2), recording(ENGLISH)[: int(1.7 * SAMPLE_RATE)])), 16000, 44100)
        for offset in range(0, len(audio), 882):  # 20 ms at 44.1 kHz, at real time
            client.ws.send(audio[offset : offset + 882].astype("<f4").tobytes())
            time.sleep(0.02)
        client.send({"type": "end"})
        transcript = client.event("transcript", DEADLINE)
        assert "living room" in transcript["text"].lower()
        reply = client.event("reply", DEADLINE)
        assert reply["message_id"] == transcript["message_id"]
        time.sleep(1.0)
        assert not any(item.kind in ("audio_start", "binary") for item in client.received)  # reply_audio false
        client.ws.send(b"\x00\x00" * 320)
        assert client.event("error", 10)["code"] == "not_started"  # the stream ended with "end"
    finally:
        client.close()


def test_two_utterances_on_one_connection(pipeline: Pipeline) -> None:
    """English, then Mandarin, on one stream that the server's VAD cuts in two: two messages in one session. No
    Chinese voice is installed here, so the second reply comes as text only, and says why."""
    client = pipeline.connect("cy")
    try:
        start(client)
        client.send_audio(np.concatenate((recording(ENGLISH), silence(1.2))))
        first = client.event("transcript", DEADLINE)
        client.event("audio_end", DEADLINE)
        client.send_audio(np.concatenate((silence(0.5), recording(CHINESE), silence(1.2))))  # the same stream
        second = client.event("transcript", DEADLINE)
        assert "living room" in first["text"].lower()
        assert "客厅" in second["text"] and second["language"] == "zh"
        assert first["session_id"] == second["session_id"] and first["message_id"] != second["message_id"]
        reply = client.event("reply", DEADLINE)
        reply = client.event("reply", DEADLINE)
        assert reply["message_id"] == second["message_id"]
        assert reply["audio"]["status"] == "missing" and "zh" in reply["audio"]["reason"]
        time.sleep(0.5)
        assert_spoken_in_order(client, first["message_id"])
        unspoken = of_message(client, second["message_id"])
        assert [kind for kind in kinds(unspoken) if kind != "partial"] == ["transcript", "reply"], client.summary()
    finally:
        client.close()


def test_a_text_message_on_the_same_socket(pipeline: Pipeline) -> None:
    client = pipeline.connect("di")
    try:
        start(client)
        client.send_audio(np.concatenate((recording(ENGLISH), silence(1.2))))
        heard = client.event("transcript", DEADLINE)
        client.event("audio_end", DEADLINE)
        assert client.event("reply", DEADLINE)["message_id"] == heard["message_id"]
        client.send({"type": "text", "text": "what time is it"})
        reply = client.event("reply", DEADLINE)
        assert reply["skill"] == "time" and reply["actions"] == [] and reply["expects_reply"] is False
        assert reply["text"].startswith("It is")
        assert reply["session_id"] == heard["session_id"]
        client.event("audio_end", DEADLINE)
        assert_spoken_in_order(client, reply["message_id"], speech_in=False)
        entries = pipeline.transcript(heard["session_id"])
        assert [e.kind for e in entries] == ["message", "reply"] * 2
        assert entries[2].text == "what time is it"
    finally:
        client.close()


def barge_in(client: VoiceClient, interruption: npt.NDArray[np.float32], after_first_frame: float) -> dict[str, Any]:
    """Wait for the reply's speech, then speak over it ``after_first_frame`` seconds after its first frame."""
    client.event("audio_start", DEADLINE)
    first = client.next("binary", DEADLINE)
    time.sleep(max(0.0, first.at + after_first_frame - time.monotonic()))
    client.send_audio(np.concatenate((interruption, silence(1.2))))
    return client.event("audio_end", 10)


def interrupted_reply_audio(pipeline: Pipeline, session_id: str, message_id: str) -> dict[str, Any]:
    """The stored reply's speech, once the transcript notes it was interrupted."""

    def noted() -> dict[str, Any] | None:
        entries = pipeline.transcript(session_id)
        replies = [e for e in entries if e.kind == "reply" and e.message_id == message_id]
        audio = replies[0].audio if replies else None
        return audio if audio and audio.get("interrupted") else None

    found: dict[str, Any] = eventually(noted, 20, "the transcript noting the interruption", interval=0.2)
    return found


def assert_cut_off_then_heard(client: VoiceClient, first: str, after_first_frame: float) -> float:
    """The reply of ``first`` ends interrupted, nothing of it follows, the interruption is heard and answered;
    returns the seconds of the interrupted reply's speech sent."""
    ended = barge_in(client, recording(LAMP), after_first_frame)
    assert ended["message_id"] == first and ended["interrupted"] is True
    second = client.event("transcript", DEADLINE)
    assert "lamp" in second["text"].lower()
    client.event("audio_end", DEADLINE)  # the second reply is spoken in full
    items = of_message(client, first)
    assert kinds(items)[-3:] == ["audio_start", "binary", "audio_end"], client.summary()  # nothing after it
    assert_spoken_in_order(client, second["message_id"])
    return sum(len(item.audio) for item in items if item.kind == "binary") / 2 / 22050


def test_barge_in_after_the_reply_was_synthesized(pipeline: Pipeline) -> None:
    """Speech over a short reply: tts made all of it long before, so the edge notes the interruption itself."""
    client = pipeline.connect("eve")
    try:
        start(client)
        client.send_audio(np.concatenate((recording(ENGLISH), silence(1.2))))
        first = client.event("transcript", DEADLINE)
        spoken = assert_cut_off_then_heard(client, first["message_id"], after_first_frame=0.8)
        # Cut off early: the interruption came 0.8 s in, its speech a fraction of a second later.
        assert spoken < 2.5
        audio = interrupted_reply_audio(pipeline, first["session_id"], first["message_id"])
        assert audio["duration_seconds"] > spoken + 1  # synthesized in full, heard in part
    finally:
        client.close()


def test_barge_in_while_the_reply_is_synthesized(pipeline: Pipeline) -> None:
    """Speech over a long reply (a registered skill's): tts stops between sentences and notes it."""
    story = " ".join(f"This is sentence number {n} of a very long story." for n in range(1, 61))
    admin = issue_token(pipeline.settings, "root", ("admin",), 600)
    response = requests.post(f"{pipeline.base}/api/skills", headers={"Authorization": f"Bearer {admin}"},
                             json={"name": "saga", "description": "a long story", "triggers": ["saga"],
                                   "response": story}, timeout=10)  # fmt: skip
    assert response.status_code in (200, 201), response.text
    client = pipeline.connect("eli")
    try:
        start(client)
        client.send({"type": "text", "text": "saga"})
        reply = client.event("reply", DEADLINE)
        assert reply["skill"] == "saga"
        assert_cut_off_then_heard(client, reply["message_id"], after_first_frame=0.5)
        audio = interrupted_reply_audio(pipeline, reply["session_id"], reply["message_id"])
        # All of it would be some two minutes of speech; tts stopped after the sentences made by then.
        assert audio["duration_seconds"] < 60
    finally:
        client.close()


def test_echo_guard(pipeline: Pipeline, tmp_path: Path) -> None:
    """Speech that begins within echo_guard_ms of the reply's first frame is taken for its echo: the reply plays
    to its end and that speech is not heard as an utterance."""
    client = pipeline.connect("fay")
    echo = espeak("Sorry I do not understand", tmp_path)
    try:
        start(client)
        client.send_audio(np.concatenate((recording(ENGLISH), silence(1.2))))
        first = client.event("transcript", DEADLINE)
        client.event("audio_start", DEADLINE)
        client.next("binary", DEADLINE)
        client.send_audio(np.concatenate((echo, silence(1.2))))  # at once: inside the 300 ms guard
        ended = client.event("audio_end", DEADLINE)
        assert ended["message_id"] == first["message_id"] and ended["interrupted"] is False
        assert_spoken_in_order(client, first["message_id"])
        time.sleep(3.0)  # time enough for a transcript if the echo had been taken for an utterance
        assert [item.event["message_id"] for item in client.received if item.kind == "transcript"] == [
            first["message_id"]
        ], client.summary()
    finally:
        client.close()


def test_end_of_speech_to_first_reply_audio(pipeline: Pipeline, vad: SileroVad) -> None:
    """The figure users ask for: from the end of the speech to the first frame of the spoken reply, measured at
    the client; with the server's VAD ending the utterance (which waits end_of_speech_ms of silence), and with the
    client's ``end``."""
    audio = recording(ENGLISH)
    ends = speech_end(vad, audio)
    figures: dict[str, list[float]] = {"vad": [], "end": []}
    client = pipeline.connect("gus")
    try:
        for _ in range(3):
            for mode in ("vad", "end"):
                count = len([item for item in client.received if item.kind == "audio_start"])
                start(client)
                if mode == "vad":
                    sent = client.send_audio(np.concatenate((audio, silence(1.2))))
                else:
                    sent = client.send_audio(audio[: int((ends + 0.2) * SAMPLE_RATE)])
                    client.send({"type": "end"})
                client.event("audio_end", DEADLINE)
                starts = [i for i, item in enumerate(client.received) if item.kind == "audio_start"]
                assert len(starts) == count + 1
                first_frame = next(item for item in client.received[starts[-1] :] if item.kind == "binary")
                figures[mode].append(first_frame.at - (sent + ends))
    finally:
        client.close()
    for mode, values in figures.items():
        print(f"\nend of speech → first reply audio ({mode}): p50 {statistics.median(values) * 1000:.0f} ms, "
              f"runs {[round(v * 1000) for v in values]} ms")  # fmt: skip
    assert statistics.median(figures["end"]) < statistics.median(figures["vad"])
    assert all(value > 0 for value in figures["end"] + figures["vad"])


def test_with_vad_off_only_end_ends_an_utterance(speech: SpeechEngines, tmp_path: Path) -> None:
    settings = settings_for(tmp_path, asr=AsrConfig(vad=VadConfig(enabled=False)))
    with running(settings, speech) as pipeline:
        client = pipeline.connect("hal")
        try:
            start(client, reply_audio=False)
            client.send_audio(np.concatenate((recording(ENGLISH), silence(1.5))))
            time.sleep(1.0)
            assert client.received == []  # the silence ended nothing
            client.send({"type": "end"})
            assert "living room" in client.event("transcript", DEADLINE)["text"].lower()
            client.event("reply", DEADLINE)
        finally:
            client.close()
