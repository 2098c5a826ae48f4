"""``/api/audio`` and the spoken replies: accept an utterance, answer like ``/api/messages``, serve reply WAVs."""

from __future__ import annotations

import re
import time
from contextlib import ExitStack
from typing import Any

from flask import Blueprint, Response, request
from werkzeug.exceptions import BadRequest, NotFound, RequestEntityTooLarge, UnsupportedMediaType

from adapters.audio import AudioTooLong, UndecodableAudio, decode_audio, float32_to_pcm16
from adapters.blobs import spoken_reply_key
from ingress.auth import current_identity, require_token
from ingress.messages import (
    authorized_session,
    await_answer,
    checked_client_msg_id,
    checked_session_id,
    edge_parts,
    wait_param,
    wanted,
)
from ingress.speech_submit import submit_speech
from pipeline.envelope import new_id

bp = Blueprint("audio", __name__)

#: Content types of a raw audio body (``audio/*`` in general); anything PyAV decodes is accepted.
RAW_AUDIO = "application/octet-stream"
#: Languages a client may fix for recognition; ``auto`` (or none) detects it.
LANGUAGES = ("zh", "en")
MESSAGE_ID = re.compile(r"[A-Za-z0-9]{1,64}")
TRUE, FALSE = ("true", "1", "yes"), ("false", "0", "no")


@bp.post("/api/audio")
@require_token()
def post_audio() -> tuple[dict[str, Any], int]:
    """An utterance as a multipart ``file`` or a raw audio body, decoded here, recognised by the ``asr`` stage."""
    adapters, hub, forwarder = edge_parts()
    audio = adapters.settings.audio
    identity = current_identity()
    session_id = checked_session_id(request.args.get("session_id"))
    client_msg_id = checked_client_msg_id(request.args.get("client_msg_id"))
    wait = wait_param(adapters.settings.default_wait_seconds, adapters.settings.max_wait_seconds)
    language = _language_param(request.args.get("language"))
    reply_audio = _flag_param("reply_audio")
    data = _upload(audio.max_audio_bytes)
    started = time.perf_counter()
    try:
        samples = decode_audio(data, audio.max_audio_seconds)
    except UndecodableAudio as exc:
        raise UnsupportedMediaType(str(exc)) from None
    except AudioTooLong:
        raise RequestEntityTooLarge(
            f"the audio is longer than {audio.max_audio_seconds:g} seconds (MAX_AUDIO_SECONDS)"
        ) from None
    pcm16 = float32_to_pcm16(samples)
    decoded_ms = (time.perf_counter() - started) * 1000
    message_id = new_id()
    with ExitStack() as stack:
        # Waiting is registered before the message is submitted, so no look-up for an early reply is needed.
        waiter = stack.enter_context(hub.expect(message_id)) if wait > 0 else None
        registration = submit_speech(
            adapters,
            forwarder,
            user_id=identity.subject,
            roles=identity.roles,
            pcm16=pcm16,
            session_id=session_id,
            client_msg_id=client_msg_id,
            wants=wanted(reply_audio),
            language=language,
            timings=(("decode", decoded_ms),),
            message_id=message_id,
        )
        answer, status, reply = await_answer(registration, waiter, wait)
    if reply is not None and reply.heard is not None:
        answer["transcript"] = {"text": reply.heard.get("text", ""), "language": reply.heard.get("language")}
    return answer, status


@bp.get("/api/sessions/<session_id>/audio/<message_id>.wav")
@require_token()
def get_reply_audio(session_id: str, message_id: str) -> Response:
    """A spoken reply as ``audio/wav``, to its session's owner, until it expires."""
    adapters, _, _ = edge_parts()
    authorized_session(adapters, session_id)
    if not MESSAGE_ID.fullmatch(message_id):
        raise NotFound(f"no audio for message '{message_id}'")
    wav = adapters.blobs.get(spoken_reply_key(session_id, message_id))
    if wav is None:
        raise NotFound(f"no audio for message '{message_id}': it was never made, or it expired")
    return Response(wav, mimetype="audio/wav", headers={"Cache-Control": "private, no-store"})


def _upload(max_bytes: int) -> bytes:
    """The request's audio: a multipart ``file``, or the whole body when it has an audio content type."""
    # Raised from the app-wide limit (sized for JSON) for this request only; werkzeug answers 413 above it, also
    # for a body sent without a length.
    request.max_content_length = max_bytes
    if request.content_length is not None and request.content_length > max_bytes:
        raise RequestEntityTooLarge(f"the audio is larger than {max_bytes} bytes (MAX_AUDIO_BYTES)")
    mimetype = request.mimetype
    if mimetype == "multipart/form-data":
        upload = request.files.get("file")
        if upload is None:
            raise BadRequest("the form needs the audio in a part named 'file'")
        data = upload.read()
    elif mimetype.startswith("audio/") or mimetype == RAW_AUDIO:
        data = request.get_data(cache=False)
    else:
        raise UnsupportedMediaType(
            "send the audio as a multipart 'file', or as the body with an audio Content-Type (audio/wav, audio/ogg, "
            "audio/mpeg, audio/webm, application/octet-stream)"
        )
    if not data:
        raise BadRequest("the audio is empty")
    return data


def _language_param(raw: str | None) -> str | None:
    if raw is None or raw == "auto":
        return None
    if raw not in LANGUAGES:
        raise BadRequest(f"'language' must be auto, {' or '.join(LANGUAGES)}")
    return raw


def _flag_param(name: str) -> bool:
    raw = request.args.get(name)
    if raw is None or raw.lower() in FALSE:
        return False
    if raw.lower() in TRUE:
        return True
    raise BadRequest(f"'{name}' must be true or false")
