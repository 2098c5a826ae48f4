"""WebSocket ``/audio`` end to end on the embedded server: real recordings streamed at real time, real Whisper and
Piper, the whole pipeline (asr → dispatch → inference → tts → reply) in between.

Each test checks the order of what comes back: partial and transcript before reply, reply before audio_start,
binary frames only between audio_start and audio_end, audio_end last.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import requests
from support import eventually
from voice_ws_support import (
    CHINESE,
    DEADLINE,
    ENGLISH,
    LAMP,
    Pipeline,
    Received,
    VoiceClient,
    assert_spoken_in_order,
    kinds,
    of_message,
    recording,
    running,
    settings_for,
    silence,
    speech_end,
    start,
)

from adapters.audio import resample
from adapters.bundle import SpeechEngines
from adapters.speech import SAMPLE_RATE
from adapters.tokens import issue_token
from adapters.vad import SileroVad
from ingress.voice_replies import LEAD_SECONDS


@pytest.fixture(scope="module")
def pipeline(speech: SpeechEngines, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    with running(settings_for(tmp_path_factory.mktemp("voice-ws")), speech) as started:
        yield started


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
    # The `end` client sends 0.2 s after the speech; the server's VAD waits 0.6 s of silence, but recognition starts
    # after 0.25 s of it (speculate_ms). Without that head start the VAD figure would trail by about 0.4 s.
    assert statistics.median(figures["vad"]) < statistics.median(figures["end"]) + 0.25
    assert all(value > 0 for value in figures["end"] + figures["vad"])
