"""The ``asr`` and ``tts`` stages on real Celery worker threads (embedded layout) with the real models.

Utterances go in through ``submit_speech``, the function the HTTP and WebSocket edges call; the tests read what a
client reads: the voice events, the reply, the stored WAV and the transcript. Whisper costs about a second of CPU
per call here, so only one test runs it on speech; silence never reaches it (VAD finds nothing).
"""

from __future__ import annotations

import io
import json
import threading
import wave
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support import eventually

from adapters.audio import decode_audio, float32_to_pcm16
from adapters.blobs import spoken_reply_key
from adapters.bundle import SpeechEngines
from adapters.piper import PiperSynthesizer
from adapters.speech import SpeechChunk
from adapters.voice_events import VoiceEvent
from adapters.whisper import WhisperRecognizer
from assistant.embedded import build_embedded
from ingress.speech_submit import submit, submit_speech
from pipeline.audio_config import AudioConfig
from pipeline.envelope import Envelope, Reply, new_id
from pipeline.settings import Settings
from pipeline.stages import WANTS_SPEECH, WANTS_TEXT, Stage
from tasks.asr import NOT_HEARD, NOT_HEARD_CODE
from tasks.forward import Forwarder
from tasks.stage import APOLOGY

DEADLINE = 30.0
SPEECH = (WANTS_TEXT, WANTS_SPEECH)
HELP_TEXT_SENTENCES = 2  # the help skill's reply has several sentences; the barge-in test needs two at least


class Controlled:
    """The real engines, which a test can make fail, or hold between two sentences."""

    def __init__(self, recognizer: WhisperRecognizer, synthesizer: PiperSynthesizer) -> None:
        self.recognizer = recognizer
        self.synthesizer = synthesizer
        self.recognizer_fails = False
        self.synthesizer_fails = False
        self.recognitions = 0
        #: Set: the synthesizer waits after its first sentence until the event is set.
        self.hold_after_first: threading.Event | None = None
        self.holding = threading.Event()

    def transcribe(self, samples: Any, language: str | None = None, on_partial: Any = None) -> Any:
        self.recognitions += 1
        if self.recognizer_fails:
            raise RuntimeError("the model crashed")
        return self.recognizer.transcribe(samples, language, on_partial)

    def voice_for(self, language: str) -> str | None:
        return self.synthesizer.voice_for(language)

    def sample_rate(self, language: str) -> int:
        return self.synthesizer.sample_rate(language)

    def speak(self, text: str, language: str) -> Iterator[SpeechChunk]:
        if self.synthesizer_fails:
            raise RuntimeError("the voice crashed")
        for index, chunk in enumerate(self.synthesizer.speak(text, language)):
            yield chunk
            if index == 0 and self.hold_after_first is not None:
                self.holding.set()
                self.hold_after_first.wait(DEADLINE)

    def warm_up(self) -> None:
        pass


@dataclass
class Pipeline:
    adapters: Any
    forwarder: Forwarder
    engines: Controlled
    settings: Settings

    def speak(self, pcm16: bytes, session_id: str | None = None, wants: tuple[str, ...] = SPEECH,
              language: str | None = None) -> str:  # fmt: skip
        registration = submit_speech(self.adapters, self.forwarder, user_id="vera", roles=("user",), pcm16=pcm16,
                                     session_id=session_id, client_msg_id=None, wants=wants, language=language,
                                     timings=(("decode", 1.5),))  # fmt: skip
        assert registration.status == "ok"
        return registration.message_id

    def say(self, text: str, session_id: str | None = None, wants: tuple[str, ...] = (WANTS_TEXT,)) -> Envelope:
        draft = Envelope(message_id=new_id(), session_id=session_id or new_id(), channel="web", user_id="vera",
                         roles=("user",), text=text, wants=wants)  # fmt: skip
        registration = submit(self.adapters, self.forwarder, draft, session_id is None, Stage.DISPATCH)
        return replace(draft, seq=registration.seq)

    def reply(self, message_id: str) -> Reply:
        found = eventually(lambda: self.adapters.replies.reply_for(message_id), DEADLINE, what="the reply")
        reply: Reply = found[1]
        return reply

    def events(self, message_id: str, until: str) -> list[VoiceEvent]:
        seen: list[VoiceEvent] = []

        def more() -> bool:
            seen.extend(self.adapters.voice_events.read(message_id, seen[-1].cursor if seen else None, 0.2))
            return any(e.event["type"] == until for e in seen)

        eventually(more, DEADLINE, what=f"a {until} event")
        return seen


@pytest.fixture(scope="module")
def pipeline(
    tmp_path_factory: pytest.TempPathFactory, models_dir: Path, recognizer: WhisperRecognizer,
    synthesizer: PiperSynthesizer, open_meteo: Any,
) -> Iterator[Pipeline]:  # fmt: skip
    root = tmp_path_factory.mktemp("voice-stages")
    settings = Settings.from_env({
        "ASSISTANT_DATA_DIR": str(root / "data"),
        "ASSISTANT_CONFIG_DIR": str(root / "config"),
        "WEATHER_GEOCODING_URL": open_meteo.geocoding_url,
        "WEATHER_FORECAST_URL": open_meteo.forecast_url,
    })  # fmt: skip
    settings = replace(settings, audio=AudioConfig(models_dir=models_dir))
    engines = Controlled(recognizer, synthesizer)
    speech = SpeechEngines(lambda workers: engines, lambda: engines)
    adapters, celery_app, workers = build_embedded(settings, speech=speech)
    workers.start()
    try:
        yield Pipeline(adapters, Forwarder(celery_app), engines, settings)
    finally:
        workers.stop()
        adapters.close()


@pytest.fixture(autouse=True)
def healthy_engines(pipeline: Pipeline) -> Iterator[None]:
    yield
    pipeline.engines.recognizer_fails = pipeline.engines.synthesizer_fails = False
    pipeline.engines.hold_after_first = None
    pipeline.engines.holding.clear()


def recording(folder: Path, name: str) -> bytes:
    return float32_to_pcm16(decode_audio((folder / name).read_bytes(), 60))


def silence(seconds: float = 1.5) -> bytes:
    noise = np.random.default_rng(7).normal(0.0, 0.0005, int(16000 * seconds)).astype(np.float32)
    return float32_to_pcm16(noise)


def wav_frames(wav: bytes) -> tuple[int, int, int]:
    with wave.open(io.BytesIO(wav)) as reader:
        return reader.getframerate(), reader.getnchannels(), reader.getnframes()


def test_speech_is_recognised_answered_and_spoken(pipeline: Pipeline, shared_audio: Path) -> None:
    message_id = pipeline.speak(recording(shared_audio, "living_room_light_en.wav"))
    reply = pipeline.reply(message_id)
    assert reply.heard is not None and "living room" in reply.heard["text"].lower()
    assert reply.heard["language"] == "en"
    assert reply.text == pipeline.settings.fallback_reply_en  # no skill turns on lights yet: inference answers
    stages = [stage for stage, _ in reply.timings]
    assert stages == ["decode", "vad", "asr", "dispatch", "tts_first_audio", "tts"], reply.timings
    # The voice events a WebSocket client reads: partials, the transcript, then the reply's speech in order.
    events = pipeline.events(message_id, until="audio_end")
    kinds = [e.event["type"] for e in events]
    assert kinds[0] == "partial" and "transcript" in kinds
    transcript = events[kinds.index("transcript")].event
    assert transcript == {"type": "transcript", "message_id": message_id, "text": reply.heard["text"],
                          "language": "en"}  # fmt: skip
    after = kinds[kinds.index("transcript") + 1 :]
    assert after[0] == "audio_start" and after[-1] == "audio_end" and set(after[1:-1]) == {"chunk"}
    start = events[kinds.index("audio_start")].event
    assert (start["text"], start["sample_rate"], start["language"]) == (reply.text, 22050, "en")
    chunks = [e for e in events if e.event["type"] == "chunk"]
    assert [c.event["index"] for c in chunks] == list(range(len(chunks)))
    assert all(c.audio for c in chunks) and events[-1].event["interrupted"] is False
    # The whole reply as one WAV, the same audio as the chunks.
    assert reply.audio is not None and reply.audio["status"] == "ready" and reply.audio["interrupted"] is False
    wav = pipeline.adapters.blobs.get(reply.audio["key"])
    assert reply.audio["key"] == spoken_reply_key(reply.session_id, message_id)
    rate, channels, frames = wav_frames(wav)
    assert (rate, channels, frames * 2) == (22050, 1, sum(len(c.audio or b"") for c in chunks))
    assert reply.audio["duration_seconds"] == pytest.approx(frames / rate, abs=0.001)
    # The transcript: what was heard, and the reply with its speech and every stage's time.
    entries = pipeline.adapters.repository.transcript(reply.session_id)
    assert [(e.kind, e.text) for e in entries] == [("message", reply.heard["text"]), ("reply", reply.text)]
    assert entries[1].heard == reply.heard and entries[1].audio == reply.audio
    assert [stage for stage, _ in entries[1].timings] == stages


def test_a_long_reply_is_spoken_sentence_by_sentence_and_its_first_audio_comes_early(pipeline: Pipeline) -> None:
    sent = pipeline.say("help", wants=SPEECH)
    reply = pipeline.reply(sent.message_id)
    chunks = [e for e in pipeline.events(sent.message_id, until="audio_end") if e.event["type"] == "chunk"]
    assert len(chunks) >= HELP_TEXT_SENTENCES
    timings = dict(reply.timings)
    assert 0 < timings["tts_first_audio"] < timings["tts"]
    assert reply.audio is not None and reply.audio["status"] == "ready"


def test_talking_over_a_reply_stops_it_between_sentences(pipeline: Pipeline) -> None:
    pipeline.engines.hold_after_first = threading.Event()
    sent = pipeline.say("help", wants=SPEECH)
    assert pipeline.engines.holding.wait(DEADLINE)
    pipeline.adapters.voice_events.cancel(sent.message_id)  # what the WebSocket edge does on barge-in
    pipeline.engines.hold_after_first.set()
    reply = pipeline.reply(sent.message_id)
    events = pipeline.events(sent.message_id, until="audio_end")
    assert [e.event["type"] for e in events] == ["audio_start", "chunk", "audio_end"]
    assert events[-1].event["interrupted"] is True
    assert reply.audio is not None and reply.audio["interrupted"] is True
    _, _, frames = wav_frames(pipeline.adapters.blobs.get(reply.audio["key"]))
    assert frames * 2 == len(events[1].audio or b"")
    entries = pipeline.adapters.repository.transcript(reply.session_id)
    assert entries[-1].audio is not None and entries[-1].audio["interrupted"] is True  # the transcript notes it


def test_a_reply_in_a_language_without_a_voice_goes_out_as_text(pipeline: Pipeline) -> None:
    sent = pipeline.say("现在几点", wants=SPEECH)
    reply = pipeline.reply(sent.message_id)
    assert reply.text.startswith("现在是") and reply.error is None
    assert reply.audio == {"status": "missing", "reason": "no voice installed for zh (assistant models install)"}
    assert pipeline.adapters.voice_events.read(sent.message_id, None, 0) == []


def test_a_synthesis_failure_delivers_the_text_and_the_worker_goes_on(pipeline: Pipeline) -> None:
    pipeline.engines.synthesizer_fails = True
    sent = pipeline.say("what time is it", wants=SPEECH)
    reply = pipeline.reply(sent.message_id)
    assert reply.text.startswith("It is") and reply.error is None
    assert reply.audio == {"status": "missing", "reason": "speech synthesis failed"}
    pipeline.engines.synthesizer_fails = False
    again = pipeline.reply(pipeline.say("what time is it", sent.session_id, wants=SPEECH).message_id)
    assert again.audio is not None and again.audio["status"] == "ready"


def test_silence_gets_a_polite_reply_and_keeps_the_conversation(pipeline: Pipeline) -> None:
    # A question is open: the silence must neither answer it nor drop it.
    asked = pipeline.say("天气")
    assert pipeline.reply(asked.message_id).text == "哪个城市？"
    calls = pipeline.engines.recognitions
    message_id = pipeline.speak(silence(), asked.session_id, wants=(WANTS_TEXT,), language="zh")
    reply = pipeline.reply(message_id)
    assert (reply.text, reply.error) == (NOT_HEARD["zh"], NOT_HEARD_CODE)
    assert reply.heard == {"text": "", "language": "zh"}
    assert [stage for stage, _ in reply.timings] == ["decode", "vad"]  # Whisper never ran
    events = pipeline.events(message_id, until="transcript")
    assert events[-1].event == {"type": "transcript", "message_id": message_id, "text": "", "language": "zh"}
    # The session's next message is answered at once, by the question that was open.
    answer = pipeline.reply(pipeline.say("上海", asked.session_id).message_id)
    assert answer.skill == "weather" and "上海" in answer.text
    assert pipeline.engines.recognitions == calls + 1
    entries = [(e.kind, e.text) for e in pipeline.adapters.repository.transcript(asked.session_id)]
    assert entries[2:4] == [("message", ""), ("reply", NOT_HEARD["zh"])]


def test_silence_in_an_unknown_language_is_answered_in_english(pipeline: Pipeline) -> None:
    reply = pipeline.reply(pipeline.speak(silence(0.8), wants=(WANTS_TEXT,)))
    assert reply.text == NOT_HEARD["en"] == "Sorry, I didn't catch that. Please say it again."
    assert reply.heard == {"text": "", "language": None}


def test_a_redelivered_utterance_is_answered_once(pipeline: Pipeline) -> None:
    message_id = pipeline.speak(silence(), wants=(WANTS_TEXT,))
    first = pipeline.reply(message_id)
    envelope = Envelope(message_id=message_id, session_id=first.session_id, channel="web", user_id="vera",
                        audio_key=f"audio/in/{message_id}", seq=first.seq)  # fmt: skip
    pipeline.forwarder.to_stage(Stage.ASR, envelope)  # the broker hands it out once more
    follow_up = pipeline.say("what time is it", first.session_id)
    pipeline.reply(follow_up.message_id)
    cursor_replies = pipeline.adapters.replies.read_after(first.session_id, None, 10)
    assert [r.message_id for _, r in cursor_replies] == [message_id, follow_up.message_id]


def test_a_model_that_crashes_gets_an_apology_at_once_spoken_and_the_worker_goes_on(
    pipeline: Pipeline, shared_audio: Path
) -> None:
    pipeline.engines.recognizer_fails = True
    calls = pipeline.engines.recognitions
    message_id = pipeline.speak(recording(shared_audio, "living_room_light_en.wav"))
    reply = pipeline.reply(message_id)
    assert (reply.text, reply.error) == (APOLOGY["en"], "stage_error")
    assert pipeline.engines.recognitions == calls + 1  # no retries
    # Asked for speech: the apology is spoken too.
    assert reply.audio is not None and reply.audio["status"] == "ready"
    letters = [d for d in pipeline.adapters.repository.dead_letters() if d.message_id == message_id]
    assert [(d.task, d.error, d.deliveries) for d in letters] == [
        ("assistant.asr", "speech recognition failed: RuntimeError", 1)
    ]
    assert json.loads(letters[0].body)["audio_key"] == f"audio/in/{message_id}"
    pipeline.engines.recognizer_fails = False
    assert pipeline.reply(pipeline.say("what time is it", reply.session_id).message_id).text.startswith("It is")


def test_audio_that_expired_before_recognition_gets_an_apology(pipeline: Pipeline) -> None:
    sent = pipeline.say("what time is it")
    pipeline.reply(sent.message_id)
    registration = pipeline.adapters.coordination.register_message("vera", sent.session_id, new_id(), None, 600)
    lost = Envelope(message_id=registration.message_id, session_id=sent.session_id, channel="web", user_id="vera",
                    audio_key="audio/in/gone", seq=registration.seq)  # fmt: skip
    pipeline.forwarder.to_stage(Stage.ASR, lost)
    reply = pipeline.reply(lost.message_id)
    assert (reply.text, reply.error) == (APOLOGY["en"], "stage_error")
    (letter,) = [d for d in pipeline.adapters.repository.dead_letters() if d.message_id == lost.message_id]
    assert letter.error == "the audio expired or was deleted before it was recognised"
    # The session goes on: its next message does not wait for the lost one's turn.
    assert pipeline.reply(pipeline.say("what time is it", sent.session_id).message_id).skill == "time"


def test_a_reply_spoken_again_after_its_worker_died_goes_on_where_its_stream_stopped(pipeline: Pipeline) -> None:
    sent = pipeline.say("help")
    reply = pipeline.reply(sent.message_id)
    events = pipeline.adapters.voice_events
    # The first worker to speak it sent the start and one sentence, then died.
    events.publish(sent.message_id, {"type": "audio_start", "message_id": sent.message_id, "text": reply.text,
                                     "sample_rate": 22050, "language": "en"})  # fmt: skip
    events.publish(sent.message_id, {"type": "chunk", "message_id": sent.message_id, "index": 0}, b"\0\0" * 100)
    pipeline.forwarder.reply(replace(reply, wants=SPEECH, audio=None))  # the broker hands it to another worker
    stream = pipeline.events(sent.message_id, until="audio_end")
    kinds = [e.event["type"] for e in stream]
    assert kinds.count("audio_start") == 1 and kinds[-1] == "audio_end" and kinds.count("audio_end") == 1
    indexes = [e.event["index"] for e in stream if e.event["type"] == "chunk"]
    assert indexes == list(range(len(indexes))) and len(indexes) >= HELP_TEXT_SENTENCES
    # The reply itself went out once, before.
    assert [r.message_id for _, r in pipeline.adapters.replies.read_after(reply.session_id, None, 10)] == [
        sent.message_id
    ]
