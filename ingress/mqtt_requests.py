"""What a device may publish to the MQTT edge: its text requests and state reports, checked, and the error answers."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from pipeline.envelope import storable_text

#: A device id: one topic level, and short and plain enough to sit in a session id (``mqtt:<device>``).
DEVICE_ID = re.compile(r"^[A-Za-z0-9_.-]{1,48}$")
#: A request's ``session_id``: what ``/api/messages`` accepts.
SESSION_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
#: Longest request ``id``: what fits the transcript's client message id.
MAX_REQUEST_ID = 128
#: Longest request text, as on ``/api/messages``.
MAX_TEXT = 4000
#: Longest ``context.area``.
MAX_AREA = 64
#: Languages a request may name; otherwise the text's own language is used.
LANGUAGES = ("zh", "en")
#: Longest session id the transcript stores.
MAX_SESSION_ID = 64


class RequestRejected(Exception):
    """A request answered on the device's error topic, with a code a device can act on."""

    def __init__(self, code: str, message: str, request_id: str | None = None) -> None:
        super().__init__(message)
        #: ``unknown_device``, ``payload_too_large``, ``not_utf8``, ``not_json``, ``bad_request``, ...
        self.code = code
        #: What the device is told; never the request's text.
        self.message = message
        #: The request's ``id`` when it could be read.
        self.request_id = request_id

    def payload(self) -> bytes:
        """The JSON published on ``<prefix>/<device>/error``: ``{"id"?, "error": {"code", "message"}}``."""
        body: dict[str, Any] = {"error": {"code": self.code, "message": self.message}}
        if self.request_id is not None:
            body = {"id": self.request_id, **body}
        return json.dumps(body, ensure_ascii=False).encode("utf-8")


@dataclass(frozen=True, slots=True)
class TextRequest:
    """A checked request from ``<prefix>/<device>/request``."""

    #: The device's id for the request; the reply carries it, and a second request with it is not answered again.
    id: str
    #: What was said or typed.
    text: str
    #: The device's own conversation id, when it keeps several; None: the device's one conversation.
    session_id: str | None = None
    #: The area the request is about (``context.area``), when it names one.
    area: str | None = None
    #: ``zh`` or ``en`` when the device says which; None: found from the text.
    language: str | None = None


def session_of(device_id: str, session_id: str | None) -> str:
    """The session of a device's conversation: ``mqtt:<device>``, or ``mqtt:<device>:<session_id>``."""
    session = f"mqtt:{device_id}" if session_id is None else f"mqtt:{device_id}:{session_id}"
    if len(session) > MAX_SESSION_ID:
        raise RequestRejected("bad_request", f"'session_id' is too long for this device id (at most "
                              f"{MAX_SESSION_ID - len(device_id) - 6} characters)")  # fmt: skip
    return session


def check_size(payload: bytes, max_bytes: int) -> None:
    """Refuses a payload above ``max_bytes`` before anything reads it."""
    if len(payload) > max_bytes:
        raise RequestRejected("payload_too_large", f"the payload is larger than {max_bytes} bytes")


def utf8(payload: bytes) -> str:
    """The payload as text; refused when it is not UTF-8."""
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        raise RequestRejected("not_utf8", "the payload is not UTF-8 text") from None


def parse_request(payload: bytes, max_bytes: int) -> TextRequest:
    """A request payload, ``{"text", "id", "session_id"?, "context"?: {"area"}, "language"?}``, checked."""
    check_size(payload, max_bytes)
    raw = utf8(payload)
    try:
        body = json.loads(raw)
    except ValueError:
        raise RequestRejected("not_json", 'the payload is not JSON; send {"id": "...", "text": "..."}') from None
    if not isinstance(body, dict):
        raise RequestRejected("not_json", 'the payload must be a JSON object such as {"id": "1", "text": "开灯"}')
    request_id = body.get("id")
    if not isinstance(request_id, str) or not request_id or len(request_id) > MAX_REQUEST_ID:
        raise RequestRejected("bad_request", f"'id' is required: a non-empty string of at most {MAX_REQUEST_ID} "
                              "characters")  # fmt: skip
    if not storable_text(request_id):
        raise RequestRejected("bad_request", "'id' must not contain NUL characters or unpaired surrogates")
    text = body.get("text")
    if not isinstance(text, str) or not text.strip():
        raise RequestRejected("bad_request", "'text' is required and must be a non-empty string", request_id)
    if len(text) > MAX_TEXT:
        raise RequestRejected("bad_request", f"'text' is longer than {MAX_TEXT} characters", request_id)
    if not storable_text(text):
        raise RequestRejected("bad_request", "'text' must not contain NUL characters or unpaired surrogates",
                              request_id)  # fmt: skip
    session_id = body.get("session_id")
    if session_id is not None and (not isinstance(session_id, str) or not SESSION_ID.fullmatch(session_id)):
        raise RequestRejected("bad_request", "'session_id' must be 1-64 letters, digits or _ . : -", request_id)
    language = body.get("language")
    if language is not None and language not in LANGUAGES:
        raise RequestRejected("bad_request", f"'language' must be {' or '.join(LANGUAGES)}", request_id)
    return TextRequest(request_id, text.strip(), session_id, _area(body.get("context"), request_id), language)


def _area(context: Any, request_id: str) -> str | None:
    if context is None:
        return None
    if not isinstance(context, dict):
        raise RequestRejected("bad_request", '\'context\' must be an object such as {"area": "卧室"}', request_id)
    area = context.get("area")
    if area is None:
        return None
    if not isinstance(area, str) or not area.strip() or len(area) > MAX_AREA or not storable_text(area):
        raise RequestRejected("bad_request", f"'context.area' must be a name of at most {MAX_AREA} characters",
                              request_id)  # fmt: skip
    return area.strip()


def parse_state(payload: bytes, max_bytes: int) -> tuple[str, dict[str, Any] | None]:
    """A state report: a plain state (``on``, ``21.5``) or ``{"state", "attributes"?}``; ``(state, attributes)``.

    Attributes None: the report carried none (the entity's remembered ones are replaced by an empty set anyway,
    as Home Assistant's MQTT state topics do).
    """
    check_size(payload, max_bytes)
    raw = utf8(payload).strip()
    if raw.startswith("{"):
        try:
            body = json.loads(raw)
        except ValueError:
            raise RequestRejected("not_json", "the state payload starts with '{' but is not JSON") from None
        state = body.get("state") if isinstance(body, dict) else None
        if isinstance(state, bool):
            state = "on" if state else "off"
        if not isinstance(state, str | int | float) or (isinstance(state, str) and not state.strip()):
            raise RequestRejected("bad_request", "a JSON state payload needs a 'state' string or number")
        attributes = body.get("attributes")
        if attributes is not None and not isinstance(attributes, dict):
            raise RequestRejected("bad_request", "'attributes' must be an object")
        return str(state).strip(), attributes
    if not raw or not storable_text(raw) or len(raw) > 255:
        raise RequestRejected("bad_request", "a plain state payload must be 1-255 characters of text")
    return raw, None
