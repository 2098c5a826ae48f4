"""The asr stage: a message's audio becomes its text, which goes on to dispatch; silence gets a polite reply."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any

from adapters.audio import pcm16_to_float32
from adapters.voice_events import await_endpoint
from pipeline.envelope import Envelope, Reply
from pipeline.stages import TASK_NAMES, Stage
from tasks.runtime import StageRuntime
from tasks.stage import GiveUp, StageSpec, Waiting, stage_task

logger = logging.getLogger(__name__)

#: The reply to an utterance in which no speech was found.
NOT_HEARD = {
    "zh": "抱歉，我没听清，请再说一遍。",
    "en": "Sorry, I didn't catch that. Please say it again.",
}
#: ``Reply.error`` of that reply: not a failure, but a client may want to tell it apart.
NOT_HEARD_CODE = "no_speech"
#: Seconds a recognised provisional utterance waits for the edge to confirm or withdraw it. The edge decides
#: within ``end_of_speech_ms`` of sending it; past this it is taken for gone, and the utterance goes on.
ENDPOINT_WAIT_SECONDS = 5.0


def handle_audio(envelope: Envelope, runtime: StageRuntime, waiting: Waiting) -> None:
    """Recognise the message's audio, publish what was heard, and forward it to dispatch as text."""
    started = time.perf_counter()
    adapters = runtime.adapters
    if envelope.audio_key is None or envelope.text:
        runtime.forward.to_stage(Stage.DISPATCH, envelope)  # recognised already (a rescued copy): nothing to do
        return
    events = adapters.voice_events
    message_id = envelope.message_id
    if envelope.provisional and events.cancelled(message_id):
        logger.debug("message %s was withdrawn before it was recognised", message_id)
        return
    pcm16 = adapters.blobs.get(envelope.audio_key)
    if pcm16 is None:
        raise GiveUp("the audio expired or was deleted before it was recognised")

    def partial(text: str) -> None:
        # Best effort: a client that misses a partial transcript still gets the whole one.
        try:
            events.publish(message_id, {"type": "partial", "message_id": message_id, "text": text})
        except Exception as exc:
            logger.warning("message %s: could not publish a partial transcript: %s", message_id, type(exc).__name__)

    try:
        recognizer = adapters.speech.recognizer()
        with adapters.metrics.model_call("whisper"):
            heard = recognizer.transcribe(pcm16_to_float32(pcm16), envelope.language, on_partial=partial)
    except Exception as exc:
        # A model that fails on this audio fails the same way again: no retries, which would hold the session's
        # later messages up for a minute and a half and spend a core on each. The user gets an apology.
        raise GiveUp(f"speech recognition failed: {type(exc).__name__}") from exc
    timings = heard.timings or (("asr", (time.perf_counter() - started) * 1000),)
    if envelope.provisional and not await_endpoint(events, message_id, ENDPOINT_WAIT_SECONDS):
        # The speaker went on after a pause: the edge withdrew this message (its place in the session with it) and
        # sends the whole utterance again when it ends. Nothing of this one is recorded or answered.
        logger.debug("message %s was withdrawn: the utterance went on", message_id)
        return
    text = heard.text.strip()
    if not text:
        not_heard(envelope, runtime, heard.language, timings)
        return
    language = heard.language or envelope.language
    events.publish(message_id, {"type": "transcript", "message_id": message_id, "text": text, "language": language})
    recognised = replace(envelope, text=text, language=language, timings=(*envelope.timings, *timings))
    runtime.forward.to_stage(Stage.DISPATCH, recognised)


def not_heard(
    envelope: Envelope, runtime: StageRuntime, detected: str | None, timings: tuple[tuple[str, float], ...]
) -> None:
    """No speech in the audio: the polite reply, straight from here; dispatch never sees an empty message.

    The message's place in the session is passed over, as for a message given up on: the session's next message
    does not wait for a turn this one will never take, and the dialogue state (an open question) is left as it
    was. Its reply still goes out after the reply to the message before it. The message and the reply are
    recorded together, as dispatch records them, so the transcript shows that nothing was heard.
    """
    adapters = runtime.adapters
    language = envelope.language or (detected if detected in NOT_HEARD else "en")
    heard: dict[str, Any] = {"text": "", "language": detected or None}
    unheard = replace(envelope, language=language, timings=(*envelope.timings, *timings))
    reply = Reply.answering(unheard, NOT_HEARD[language], error=NOT_HEARD_CODE, heard=heard)
    recorded = adapters.repository.record_message(unheard, None, reply)
    adapters.coordination.pass_over(envelope.session_id, envelope.seq, runtime.settings.session_ttl_seconds)
    adapters.voice_events.publish(
        envelope.message_id, {"type": "transcript", "message_id": envelope.message_id, "text": "", "language": language}
    )
    runtime.forward.reply(replace(reply, recorded=recorded))


asr_task = stage_task(StageSpec(TASK_NAMES[Stage.ASR], str(Stage.ASR), Envelope.from_json, handle_audio))
