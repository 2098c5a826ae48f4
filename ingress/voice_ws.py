"""WebSocket ``/audio``: utterances in as PCM frames, transcripts and spoken replies out (docs/voice-websocket.md).

This module reads the client's side: the token, the ``start``/``end``/``text``/``auth`` frames and the audio.
Silero VAD ends each utterance; speech heard while a reply is speaking interrupts it (barge-in), unless it begins
within the echo guard. ``ingress.voice_replies`` sends the server's side.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from flask import Blueprint, Flask, Response, current_app, request
from simple_websocket import ConnectionClosed
from werkzeug.exceptions import Forbidden, HTTPException, NotFound

from adapters.audio import float32_to_pcm16, pcm16_to_float32, resample
from adapters.blobs import inbound_audio_key
from adapters.bundle import Adapters
from adapters.errors import UNAVAILABLE
from adapters.speech import SAMPLE_RATE
from adapters.state import Registration
from adapters.tokens import Identity
from adapters.vad import Boundary, Endpointer, SileroVad
from adapters.voice_events import ENDPOINT, WITHDRAWN
from ingress.auth import TokenRefused, current_identity, require_token
from ingress.messages import MAX_CLIENT_MSG_ID, MAX_TEXT, SESSION_ID, wanted
from ingress.speech_submit import submit, submit_speech
from ingress.voice_replies import Outlet, ReplyOutput
from ingress.websocket import accept, query_token_to_header, taken_over
from pipeline.envelope import Envelope, new_id, storable_text
from pipeline.stages import Channel, Stage
from tasks.forward import Forwarder

if TYPE_CHECKING:
    import numpy.typing as npt

bp = Blueprint("voice_ws", __name__)
logger = logging.getLogger(__name__)

PATH = "/audio"
#: Seconds a connection without a token in its request has to send ``{"type": "auth", "token": ...}``.
AUTH_TIMEOUT_SECONDS = 10.0
#: Largest frame, text or binary, bytes; a larger one closes the connection (1009).
MAX_FRAME_BYTES = 1 << 20
#: Audio kept from before speech is confirmed, seconds: the start of the first word and the padding before it.
PRE_ROLL_SECONDS = 2.0
#: Bytes per sample of each input format.
SAMPLE_WIDTHS = {"pcm16": 2, "f32": 4}
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 8_000, 48_000
LANGUAGE = re.compile(r"^[a-z]{2,3}$")
#: WebSocket close code for a refused token (RFC 6455: policy violation).
POLICY_VIOLATION = 1008
#: A frame later than the stream's clock by more than this, seconds, means the client paused sending.
CLOCK_RESET_SECONDS = 0.25
#: How long one wait for a client frame lasts before the connection's state is looked at again, seconds.
RECEIVE_SLICE_SECONDS = 5.0


def init_app(app: Flask) -> None:
    """Serve ``/audio`` on ``app``; a ``?access_token=`` on it is read as the ``Authorization`` header."""
    app.register_blueprint(bp)
    app.wsgi_app = query_token_to_header(app.wsgi_app, frozenset({PATH}))  # type: ignore[method-assign,assignment]
    app.extensions["voice_ws"] = _LazyVad()


class _LazyVad:
    """The process's VAD model, loaded when the first connection needs it (a gateway without voice never does)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._model: SileroVad | None = None

    def get(self) -> SileroVad:
        with self._lock:
            if self._model is None:
                self._model = SileroVad()
            return self._model


#: The request's token checked as every ``/api`` request's is: signature, type, expiry, revocation, a visitor's
#: bounds, the per-user rate limit. Raises the HTTP error that says why not.
verify_token: Callable[[], Identity] = require_token()(current_identity)


@bp.route(PATH, websocket=True)
def audio() -> Response:
    ext = current_app.extensions["assistant"]
    # A token in the request is checked before the upgrade: refused, the handshake fails with the 401 or 403.
    identity = verify_token() if request.headers.get("Authorization") else None
    ws = accept(request.environ, max_message_size=MAX_FRAME_BYTES)
    outlet = Outlet(ws)
    adapters: Adapters = ext["adapters"]
    output = ReplyOutput(outlet, adapters.voice_events, ext["hub"], adapters.repository.note_reply_interrupted)
    connection = VoiceConnection(ws, outlet, output, adapters, ext["forwarder"], current_app.extensions["voice_ws"])
    try:
        connection.run(identity)
    except ConnectionClosed:
        pass
    finally:
        output.close()
        outlet.close()
    return taken_over()


@dataclass
class AudioStream:
    """One started stream of audio: its format, its endpointer, and the audio of the utterance being heard."""

    #: ``pcm16`` or ``f32``.
    format: str
    #: The client's sample rate; resampled to 16 kHz on arrival.
    sample_rate: int
    #: True: replies to its utterances are spoken.
    reply_audio: bool
    #: The language asked for (None: detect).
    language: str | None
    #: None when VAD is off (``vad: false``): only ``end`` ends an utterance, and nothing interrupts a reply.
    endpointer: Endpointer | None
    #: Longest utterance, samples at 16 kHz.
    max_samples: int
    #: Audio kept on each side of the speech, samples.
    pad: int
    #: The audio kept, as (position of its first sample, samples) in stream order.
    chunks: deque[tuple[int, npt.NDArray[np.float32]]] = field(default_factory=deque)
    #: The stream's clock: ``time.monotonic()`` at which its sample 0 would have arrived, had every frame come
    #: at real time without delay (None before the first frame). See ``arrival_of``.
    clock_origin: float | None = None
    #: Stream position where the utterance being heard begins (None: no speech now).
    utterance_from: int | None = None
    #: The speech now going on is not heard (the echo of a reply, or past the length limit).
    ignoring: bool = False
    #: An utterance of this stream was submitted already.
    submitted: bool = False
    #: The utterance sent at a pause, before its end was confirmed (``Envelope.provisional``): confirmed at the
    #: end of speech, withdrawn when speech resumes first.
    provisional: Registration | None = None
    #: Whose it is (the token subject it was registered for), to withdraw it.
    provisional_user: str = ""
    #: Milliseconds spent on the utterance being heard: VAD, and converting and resampling its frames.
    vad_ms: float = 0.0
    decode_ms: float = 0.0

    #: Samples received so far (16 kHz): the stream position of the next one.
    position: int = 0

    def append(self, samples: npt.NDArray[np.float32], arrived: float) -> None:
        self.chunks.append((self.position, samples))
        self.position += len(samples)
        # A delay on the way (a busy server, a network hiccup) makes a frame late, never early: the earliest
        # origin seen is the truest. A client that paused (a gap well beyond any delay) starts a new clock.
        origin = arrived - self.position / SAMPLE_RATE
        if self.clock_origin is None or origin < self.clock_origin or origin - self.clock_origin > CLOCK_RESET_SECONDS:
            self.clock_origin = origin

    def arrival_of(self, sample: int) -> float:
        """When stream position ``sample`` reached the server (``time.monotonic()``), by the stream's own clock:
        a client streams at real time, so its samples count time, free of the delays of processing them (to the
        sample, where arrival stamps would be to the frame)."""
        origin = self.clock_origin if self.clock_origin is not None else time.monotonic()
        return origin + (sample + 1) / SAMPLE_RATE

    def cut(self, start: int, end: int) -> npt.NDArray[np.float32]:
        """The samples from stream position ``start`` to ``end`` that are still kept."""
        pieces = [chunk[max(0, start - at) : max(0, end - at)] for at, chunk in self.chunks if at < end]
        return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)

    def forget_before(self, position: int) -> None:
        while self.chunks and self.chunks[0][0] + len(self.chunks[0][1]) <= position:
            self.chunks.popleft()

    def trim(self) -> None:
        """Between utterances, keep only the pre-roll."""
        if self.utterance_from is None:
            self.forget_before(self.position - int(PRE_ROLL_SECONDS * SAMPLE_RATE))

    def kept_start(self) -> int:
        return self.chunks[0][0] if self.chunks else self.position


class VoiceConnection:
    """One client on ``/audio``: reads its frames until it leaves, submits what it says and types."""

    def __init__(
        self, ws: Any, outlet: Outlet, output: ReplyOutput, adapters: Adapters, forwarder: Forwarder, vad: _LazyVad
    ) -> None:
        self._ws = ws
        self._outlet = outlet
        self._output = output
        self._adapters = adapters
        self._forwarder = forwarder
        self._vad = vad
        self._audio_config = adapters.settings.audio
        self._session_id: str | None = None
        self._stream: AudioStream | None = None
        self._last_reply_audio = True

    def run(self, identity: Identity | None) -> None:
        if identity is None:
            identity = self._first_frame_auth()
            if identity is None:
                return
        while not self._outlet.closed.is_set():
            frame = self._ws.receive(timeout=RECEIVE_SLICE_SECONDS)
            if frame is None:
                continue
            if isinstance(frame, bytes | bytearray):
                self._on_audio(bytes(frame))
            else:
                self._on_command(frame)

    # --- the token -------------------------------------------------------------------------------------------

    def _first_frame_auth(self) -> Identity | None:
        frame = self._ws.receive(timeout=AUTH_TIMEOUT_SECONDS)
        message = _json_object(frame) if isinstance(frame, str) else None
        token = message.get("token") if message is not None and message.get("type") == "auth" else None
        if not isinstance(token, str) or not token:
            self._refuse("missing_token", 'send the token first: {"type": "auth", "token": "..."}, the '
                                          "Authorization header, or ?access_token=")  # fmt: skip
            return None
        return self._verify(token)

    def _verify(self, token: str | None = None) -> Identity | None:
        """The identity of the connection's token (``token`` replaces it), checked now; None when refused."""
        if token is not None:
            # The same check as an HTTP request's, on the same request: the token goes where that check reads it.
            request.environ["HTTP_AUTHORIZATION"] = f"Bearer {token}"
        try:
            identity = verify_token()
        except (TokenRefused, Forbidden) as exc:
            self._refuse(_error_code(exc), exc.description or "")
            return None
        except HTTPException as exc:  # rate limited, or the revocations cannot be read: this message only
            self._error(_error_code(exc), exc.description or "", retry_after=getattr(exc, "retry_after", None))
            return None
        return identity

    def _refuse(self, code: str, message: str) -> None:
        """Say why the token is refused and close the connection."""
        self._error(code, message)
        self._outlet.close(POLICY_VIOLATION, code)

    # --- commands --------------------------------------------------------------------------------------------

    def _on_command(self, frame: str) -> None:
        message = _json_object(frame)
        if message is None:
            self._error("bad_json", 'a text frame must be a JSON object such as {"type": "start"}')
            return
        kind = message.get("type")
        handlers = {"auth": self._on_auth, "start": self._on_start, "end": self._on_end, "text": self._on_text}
        handler = handlers.get(kind) if isinstance(kind, str) else None
        if handler is None:
            self._error("unknown_type", f"unknown frame type {kind!r}: expected one of {', '.join(handlers)}")
            return
        handler(message)

    def _on_auth(self, message: dict[str, Any]) -> None:
        token = message.get("token")
        if not isinstance(token, str) or not token:
            self._error("bad_frame", "'token' must be a non-empty string")
            return
        self._verify(token)  # a fresh token for a long connection; a refused one closes it

    def _on_start(self, message: dict[str, Any]) -> None:
        audio_format = message.get("format", "pcm16")
        rate = message.get("sample_rate", SAMPLE_RATE)
        reply_audio = message.get("reply_audio", True)
        problem = None
        if audio_format not in SAMPLE_WIDTHS:
            problem = "'format' must be 'pcm16' or 'f32'"
        elif isinstance(rate, bool) or not isinstance(rate, int) or not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
            problem = f"'sample_rate' must be a whole number of Hz from {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE}"
        elif not isinstance(reply_audio, bool):
            problem = "'reply_audio' must be true or false"
        problem = problem or self._session_problem(message) or _language_problem(message)
        if problem is not None:
            self._error("bad_start", problem)
            return
        self._finish_stream()
        self._session_id = message.get("session_id") or self._session_id
        config = self._audio_config
        self._stream = AudioStream(
            format=audio_format,
            sample_rate=rate,
            reply_audio=reply_audio,
            language=_language(message),
            endpointer=self._vad.get().endpointer(config.asr.vad) if config.asr.vad.enabled else None,
            max_samples=int(config.max_audio_seconds * SAMPLE_RATE),
            pad=int(config.asr.vad.speech_pad_ms * SAMPLE_RATE / 1000),
        )
        if self._stream.endpointer is None:
            self._stream.utterance_from = 0  # everything up to "end" is the utterance
        self._last_reply_audio = reply_audio

    def _on_end(self, _message: dict[str, Any]) -> None:
        if self._stream is None:
            self._error("not_started", 'nothing to end: send {"type": "start"} and audio first')
            return
        stream = self._stream
        if not self._finish_stream() and not stream.submitted:
            self._error("no_audio", "no audio came between start and end")
        self._stream = None

    def _finish_stream(self) -> bool:
        """The open stream's audio not yet submitted goes as one utterance (``end``, or a new ``start``).

        Speech in progress is submitted; so is the pre-roll of a stream in which nothing was heard yet, so the
        client hears that nothing was caught. False when there was nothing to submit.
        """
        stream = self._stream
        if stream is None:
            return False
        if stream.provisional is not None:
            # Sent at the pause, and nothing was said since: that was the whole utterance.
            if stream.endpointer is not None:
                stream.endpointer.end_speech()
            stream.utterance_from = None
            self._confirm(stream)
            return True
        if stream.utterance_from is not None and not stream.ignoring:
            samples = stream.cut(stream.utterance_from, stream.position)
        elif not stream.submitted and not stream.ignoring:
            samples = stream.cut(stream.kept_start(), stream.position)
        else:
            return False
        if stream.endpointer is not None:
            stream.endpointer.end_speech()
        stream.utterance_from = None
        if len(samples) == 0:
            return False
        self._submit_utterance(stream, samples)
        return True

    def _on_text(self, message: dict[str, Any]) -> None:
        text = message.get("text")
        reply_audio = message.get("reply_audio", self._last_reply_audio)
        client_msg_id = message.get("client_msg_id")
        problem = None
        if not isinstance(text, str) or not text.strip():
            problem = "'text' is required and must be a non-empty string"
        elif len(text) > MAX_TEXT:
            problem = f"'text' is longer than {MAX_TEXT} characters"
        elif not storable_text(text):
            problem = "'text' must not contain NUL characters or unpaired surrogates"
        elif not isinstance(reply_audio, bool):
            problem = "'reply_audio' must be true or false"
        elif client_msg_id is not None and (
            not isinstance(client_msg_id, str)
            or not client_msg_id
            or len(client_msg_id) > MAX_CLIENT_MSG_ID
            or not storable_text(client_msg_id)
        ):
            problem = f"'client_msg_id' must be a non-empty string of at most {MAX_CLIENT_MSG_ID} characters"
        problem = problem or self._session_problem(message) or _language_problem(message)
        if problem is not None:
            self._error("bad_text", problem)
            return
        assert isinstance(text, str)
        identity = self._verify()
        if identity is None:
            return
        session_id = message.get("session_id") or self._session_id
        draft = Envelope(
            message_id=new_id(),
            session_id=session_id or new_id(),
            channel=str(Channel.WEB),
            user_id=identity.subject,
            roles=identity.roles,
            text=text.strip(),
            client_msg_id=client_msg_id,
            wants=wanted(reply_audio),
            language=_language(message),
        )
        self._submitted(
            lambda: submit(self._adapters, self._forwarder, draft, session_id is None, Stage.DISPATCH),
            speech_in=False,
            wants_speech=reply_audio,
        )

    @staticmethod
    def _session_problem(message: dict[str, Any]) -> str | None:
        session_id = message.get("session_id")
        if session_id is not None and (not isinstance(session_id, str) or not SESSION_ID.fullmatch(session_id)):
            return "'session_id' must be 1-64 letters, digits or _ . : -"
        return None

    # --- audio -----------------------------------------------------------------------------------------------

    def _on_audio(self, frame: bytes) -> None:
        stream = self._stream
        if stream is None:
            self._error("not_started", 'audio before {"type": "start", ...}: send start first')
            return
        width = SAMPLE_WIDTHS[stream.format]
        if len(frame) % width:
            message = f"a {stream.format} frame holds whole {width}-byte samples; this one has {len(frame)} bytes"
            self._error("bad_audio", message)
            return
        arrived = time.monotonic()
        began = time.perf_counter()
        if stream.format == "pcm16":
            samples = pcm16_to_float32(frame)
        else:
            samples = np.clip(np.nan_to_num(np.frombuffer(frame, dtype="<f4")), -1.0, 1.0).astype(np.float32)
        if stream.sample_rate != SAMPLE_RATE:
            samples = resample(samples, stream.sample_rate, SAMPLE_RATE)
        heard = time.perf_counter()
        stream.decode_ms += (heard - began) * 1000
        stream.append(samples, arrived)
        boundaries = stream.endpointer.feed(samples) if stream.endpointer is not None else []
        stream.vad_ms += (time.perf_counter() - heard) * 1000
        for boundary in boundaries:
            if boundary.kind == Boundary.SPEECH_START:
                stream.ignoring = not self._speech_started(stream.arrival_of(boundary.sample))
                if not stream.ignoring:
                    stream.utterance_from = max(stream.kept_start(), boundary.sample - stream.pad)
                    stream.decode_ms = stream.vad_ms = 0.0  # the utterance's timings count from its speech
            elif boundary.kind == Boundary.PAUSE:
                if not stream.ignoring and stream.utterance_from is not None:
                    self._speculate(stream, stream.cut(stream.utterance_from, boundary.sample + stream.pad))
            elif boundary.kind == Boundary.RESUME:
                self._withdraw(stream)
            elif stream.ignoring:
                stream.ignoring = False
                stream.utterance_from = None
            elif stream.utterance_from is not None:
                samples = stream.cut(stream.utterance_from, boundary.sample + stream.pad)
                stream.utterance_from = None
                if stream.provisional is not None:
                    self._confirm(stream)  # sent at the pause already: the same audio
                else:
                    self._submit_utterance(stream, samples)
        if stream.utterance_from is not None and stream.position - stream.utterance_from > stream.max_samples:
            seconds = self._audio_config.max_audio_seconds
            self._error("utterance_too_long", f"an utterance may last at most {seconds:g} s; this one was dropped")
            if stream.endpointer is None:
                stream.utterance_from = stream.position  # no VAD: a new utterance starts here
            else:
                stream.utterance_from = None
                stream.ignoring = True  # until this speech ends
        stream.trim()

    def _speech_started(self, onset: float) -> bool:
        """Speech began at ``onset``: True when it is heard (interrupting a reply that is speaking), False when it
        is taken for the echo of a reply that began speaking less than the echo guard before."""
        speaking = self._output.floor.speaking
        if speaking is None:
            return True
        started = speaking.audio_started_at
        guard = self._audio_config.echo_guard_ms / 1000
        if started is not None and started <= onset < started + guard:
            logger.debug("speech %.0f ms into the reply's speech taken for its echo", (onset - started) * 1000)
            return False
        if speaking.interrupt():
            into = "before" if started is None else f"{(onset - started) * 1000:.0f} ms into"
            logger.debug("speech %s the reply's speech interrupts it", into)
        return True

    def _submit_utterance(self, stream: AudioStream, samples: npt.NDArray[np.float32]) -> None:
        timings = (("decode", round(stream.decode_ms, 3)), ("vad", round(stream.vad_ms, 3)))
        stream.decode_ms = stream.vad_ms = 0.0
        stream.submitted = True
        identity = self._verify()
        if identity is None:
            return
        pcm16 = float32_to_pcm16(samples)
        session_id = self._session_id
        self._submitted(
            lambda: submit_speech(
                self._adapters,
                self._forwarder,
                user_id=identity.subject,
                roles=identity.roles,
                pcm16=pcm16,
                session_id=session_id,
                client_msg_id=None,
                wants=wanted(stream.reply_audio),
                language=stream.language,
                timings=timings,
            ),
            speech_in=True,
            wants_speech=stream.reply_audio,
        )

    def _speculate(self, stream: AudioStream, samples: npt.NDArray[np.float32]) -> None:
        """A pause: send the utterance to be recognised now, so the model works while the end is confirmed.

        Nothing is sent to the client until ``_confirm``. If it cannot be sent, the end of speech sends it as usual.
        """
        identity = self._verify()
        if identity is None or len(samples) == 0:
            return
        timings = (("decode", round(stream.decode_ms, 3)), ("vad", round(stream.vad_ms, 3)))
        try:
            registration = submit_speech(
                self._adapters, self._forwarder, user_id=identity.subject, roles=identity.roles,
                pcm16=float32_to_pcm16(samples), session_id=self._session_id, client_msg_id=None,
                wants=wanted(stream.reply_audio), language=stream.language, timings=timings, provisional=True,
            )  # fmt: skip
        except HTTPException as exc:  # an unknown session, a broker that refused: the end says so
            logger.debug("an utterance could not be sent at its pause: %s", type(exc).__name__)
            return
        except UNAVAILABLE as exc:
            logger.debug("an utterance could not be sent at its pause: %s", type(exc).__name__)
            return
        if registration.status == "ok":
            stream.provisional, stream.provisional_user = registration, identity.subject
            self._session_id = registration.session_id

    def _confirm(self, stream: AudioStream) -> None:
        """The utterance sent at the pause did end there: follow it, and let the asr stage forward it."""
        registration = stream.provisional
        if registration is None:
            return
        stream.provisional = None
        stream.submitted = True
        stream.decode_ms = stream.vad_ms = 0.0
        self._output.follow(registration.message_id, registration.session_id, True, stream.reply_audio)
        try:
            self._adapters.voice_events.publish(registration.message_id, {"type": ENDPOINT})
        except UNAVAILABLE as exc:  # the asr stage goes on by itself after a few seconds
            logger.warning("could not confirm message %s: %s", registration.message_id, type(exc).__name__)

    def _withdraw(self, stream: AudioStream) -> None:
        """Speech resumed after the pause: the utterance sent then is not the whole one. It is withdrawn (its place
        in the session with it), and the whole utterance goes when it ends."""
        registration = stream.provisional
        if registration is None:
            return
        stream.provisional = None
        adapters = self._adapters
        try:
            adapters.voice_events.cancel(registration.message_id)
            adapters.voice_events.publish(registration.message_id, {"type": WITHDRAWN})
            ttl = adapters.settings.session_ttl_seconds
            adapters.coordination.withdraw_message(stream.provisional_user, registration, None, ttl)
            adapters.blobs.delete(inbound_audio_key(registration.message_id))
        except UNAVAILABLE as exc:
            logger.warning("could not withdraw message %s: %s", registration.message_id, type(exc).__name__)

    def _submitted(self, send: Callable[[], Any], speech_in: bool, wants_speech: bool) -> None:
        try:
            registration = send()
        except NotFound:
            self._error("unknown_session", f"unknown session '{self._session_id}'")
            self._session_id = None
            return
        except HTTPException as exc:  # the broker refused it
            self._error(_error_code(exc), exc.description or "")
            return
        except UNAVAILABLE as exc:
            logger.warning("a voice message could not be accepted: %s", type(exc).__name__)
            self._error("service_unavailable", "a server the assistant needs is unreachable; try again")
            return
        self._session_id = registration.session_id
        self._output.follow(registration.message_id, registration.session_id, speech_in, wants_speech)

    def _error(self, code: str, message: str, **extra: Any) -> None:
        payload = {"type": "error", "code": code, "message": message, "session_id": self._session_id,
                   "message_id": None, **{k: v for k, v in extra.items() if v is not None}}  # fmt: skip
        self._outlet.event(payload)


def _json_object(frame: str) -> dict[str, Any] | None:
    try:
        message = json.loads(frame)
    except (ValueError, RecursionError):
        return None
    return message if isinstance(message, dict) else None


def _language_problem(message: dict[str, Any]) -> str | None:
    language = message.get("language")
    if language is None or language == "auto" or (isinstance(language, str) and LANGUAGE.fullmatch(language)):
        return None
    return "'language' must be a language code such as 'zh' or 'en', or 'auto'"


def _language(message: dict[str, Any]) -> str | None:
    language = message.get("language")
    return None if language in (None, "auto") else str(language)


def _error_code(exc: HTTPException) -> str:
    code = getattr(exc, "error", None)
    return code if isinstance(code, str) else (exc.name or "error").lower().replace(" ", "_")
