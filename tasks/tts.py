"""The tts stage: a reply the client wants spoken is synthesized sentence by sentence, then goes to its channel.

Each sentence's audio is published as a voice event as soon as it is made, so a WebSocket client hears the first
sentence while the rest is synthesized; the whole reply is stored as one WAV file for HTTP clients. A reply that
cannot be spoken (no voice for its language, a synthesis failure) goes out with its text and says why.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from adapters.audio import wav_bytes
from adapters.blobs import spoken_reply_key
from adapters.speech import SpeechChunk
from adapters.voice_events import VoiceEvents
from pipeline.envelope import Reply
from pipeline.language import detect_language
from pipeline.stages import TASK_NAMES, Stage
from tasks.runtime import StageRuntime
from tasks.stage import StageSpec, Waiting, stage_task

logger = logging.getLogger(__name__)

SYNTHESIS_FAILED = "speech synthesis failed"


def missing(reason: str) -> dict[str, Any]:
    """``Reply.audio`` of a reply that is not spoken, and why."""
    return {"status": "missing", "reason": reason}


class SynthesisFailed(Exception):
    """The synthesizer raised; the reply goes out unspoken."""


@dataclass
class Speech:
    """The reply's audio as it is made."""

    sample_rate: int = 0
    pcm16: bytearray = field(default_factory=bytearray)
    sentences: int = 0
    interrupted: bool = False
    #: Milliseconds from the start of the stage to the first sentence's audio.
    first_audio_ms: float | None = None


def speak_reply(reply: Reply, runtime: StageRuntime, waiting: Waiting) -> None:
    """Synthesize ``reply``, publish its audio as it comes, store the whole, and forward the reply to its channel."""
    started = time.perf_counter()
    adapters = runtime.adapters
    language = detect_language(reply.text, reply.language)
    reply = replace(reply, language=language)
    try:
        synthesizer = adapters.speech.synthesizer()
        voice = synthesizer.voice_for(language)
    except Exception as exc:
        logger.error("message %s: the speech synthesizer could not be loaded: %s", reply.message_id,
                     type(exc).__name__)  # fmt: skip
        finish(reply, runtime, missing(SYNTHESIS_FAILED))
        return
    if voice is None:
        # Not an error: the reply goes out as text, and says why it is not spoken.
        finish(reply, runtime, missing(f"no voice installed for {language} (assistant models install)"))
        return
    try:
        speech = synthesize(reply, runtime, synthesizer.speak(reply.text, language), language, started)
    except SynthesisFailed as exc:
        logger.error("message %s: speech synthesis failed: %s", reply.message_id, exc)
        finish(reply, runtime, missing(SYNTHESIS_FAILED))
        return
    if not speech.pcm16:
        finish(reply, runtime, missing("interrupted before any speech"))
        return
    key = spoken_reply_key(reply.session_id, reply.message_id)
    wav = wav_bytes(bytes(speech.pcm16), speech.sample_rate)
    adapters.blobs.put(key, wav, runtime.settings.audio.audio_ttl_seconds)
    audio = {
        "status": "ready",
        "key": key,
        "sample_rate": speech.sample_rate,
        "duration_seconds": round(len(speech.pcm16) / 2 / speech.sample_rate, 3),
        "interrupted": speech.interrupted,
    }
    timings = (("tts_first_audio", round(speech.first_audio_ms or 0.0, 3)),
               ("tts", round((time.perf_counter() - started) * 1000, 3)))  # fmt: skip
    finish(replace(reply, timings=(*reply.timings, *timings)), runtime, audio)


def synthesize(
    reply: Reply, runtime: StageRuntime, chunks: Iterator[SpeechChunk], language: str, started: float
) -> Speech:
    """Pull the sentences' audio one at a time, publishing each; stop when the listener talked over the reply
    (``VoiceEvents.cancel``), before making the next sentence and before sending one made meanwhile. Raises
    ``SynthesisFailed`` when the synthesizer raises."""
    message_id = reply.message_id
    events = runtime.adapters.voice_events
    stream = SpeechStream(events, message_id)
    speech = Speech()
    try:
        while True:
            if events.cancelled(message_id):
                speech.interrupted = True
                break
            try:
                with runtime.adapters.metrics.model_call("piper"):  # one sentence's synthesis
                    chunk = next(chunks, None)
            except Exception as exc:
                raise SynthesisFailed(type(exc).__name__) from exc
            if chunk is None:
                break
            if speech.sentences and events.cancelled(message_id):
                # Talked over while this sentence was made: it is not sent either.
                speech.interrupted = True
                break
            if speech.first_audio_ms is None:
                speech.first_audio_ms = (time.perf_counter() - started) * 1000
                speech.sample_rate = chunk.sample_rate
                # The reply's own fields too: the WebSocket edge sends its reply event from this when it comes first.
                stream.start({"type": "audio_start", "message_id": message_id, "text": reply.text,
                              "sample_rate": chunk.sample_rate, "language": language, "skill": reply.skill,
                              "expects_reply": reply.expects_reply, "actions": list(reply.actions),
                              "error": reply.error})  # fmt: skip
            stream.chunk(speech.sentences, {"type": "chunk", "message_id": message_id, "index": speech.sentences,
                                            "text": chunk.text}, chunk.pcm16)  # fmt: skip
            speech.pcm16 += chunk.pcm16
            speech.sentences += 1
    except SynthesisFailed:
        if speech.first_audio_ms is not None:
            stream.end({"type": "audio_end", "message_id": message_id, "interrupted": True, "error": SYNTHESIS_FAILED})
        raise
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()  # a generator stopped early (barge-in) frees what it holds now
    if speech.first_audio_ms is not None:
        stream.end({"type": "audio_end", "message_id": message_id, "interrupted": speech.interrupted})
    return speech


class SpeechStream:
    """A reply's speech events, each sent once. A redelivered reply (its worker died while speaking it) is spoken
    again in full for the WAV file, but its stream goes on where it stopped: a listener never hears a sentence
    twice, nor a second ``audio_start``."""

    def __init__(self, events: VoiceEvents, message_id: str) -> None:
        self._events = events
        self._message_id = message_id
        # Nearly always empty of speech: one short read per reply, for the rare redelivery.
        sent = [e.event.get("type") for e in events.read(message_id, None, 0)]
        self._started = "audio_start" in sent
        self._chunks = sent.count("chunk")
        self._ended = "audio_end" in sent

    def start(self, event: dict[str, Any]) -> None:
        if not self._started:
            self._events.publish(self._message_id, event)
            self._started = True

    def chunk(self, index: int, event: dict[str, Any], pcm16: bytes) -> None:
        if index >= self._chunks and not self._ended:
            self._events.publish(self._message_id, event, pcm16)

    def end(self, event: dict[str, Any]) -> None:
        if not self._ended:
            self._events.publish(self._message_id, event)
            self._ended = True


def finish(reply: Reply, runtime: StageRuntime, audio: dict[str, Any]) -> None:
    """Forward the reply, with its ``audio``, to its channel; keep the transcript's copy up to date."""
    spoken = replace(reply, audio=audio)
    if reply.recorded:
        # Recorded with its message before it came here: the stored copy gets the audio and the timings now.
        runtime.adapters.repository.update_reply(spoken)
    runtime.forward.reply(spoken)


def unspoken(body: str) -> Reply | None:
    """The reply to send when this stage gives a message up: the reply itself, with its text and without speech."""
    return replace(Reply.from_json(body), audio=missing(SYNTHESIS_FAILED))


tts_task = stage_task(StageSpec(TASK_NAMES[Stage.TTS], str(Stage.TTS), Reply.from_json, speak_reply, salvage=unspoken))
