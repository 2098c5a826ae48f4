"""The one message type that travels through the stage queues, and the reply it turns into."""

from __future__ import annotations

import json
import math
import time
import uuid
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from pipeline.errors import EnvelopeError

#: Bumped when the JSON form changes in a way old workers cannot read.
ENVELOPE_VERSION = 1


class ReplyKind(StrEnum):
    """What a ``Reply`` is; a web client's event stream names its events after it."""

    #: An answer to show: the assistant's, or the human operator's (``role`` says whose).
    REPLY = "reply"
    #: Who handles the session changed (a human was asked for, took it, gave it back, nobody came in time); the
    #: text tells the visitor.
    HANDOFF = "handoff"
    #: The message went to the human operator who has the session: it is answered, with nothing to show.
    HELD = "held"


class ReplyRole(StrEnum):
    """Who speaks in a ``Reply``."""

    ASSISTANT = "assistant"
    AGENT = "agent"


REPLY_KINDS = tuple(str(kind) for kind in ReplyKind)
REPLY_ROLES = tuple(str(role) for role in ReplyRole)


def new_id() -> str:
    """A fresh random id for messages and sessions."""
    return uuid.uuid4().hex


def storable_text(text: str) -> bool:
    """True when every store and queue keeps ``text`` as it is: no NUL (PostgreSQL text refuses it) and
    no lone surrogate (a JSON ``"\\ud800"`` decodes to one; it has no UTF-8 form)."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def now() -> float:
    """Wall-clock time in seconds, the unit of every timestamp in envelopes and replies."""
    return time.time()


@dataclass(frozen=True, slots=True)
class Envelope:
    """A normalized inbound message, as every edge builds it and every stage reads it."""

    #: Unique id of this message, assigned by the edge that accepted it.
    message_id: str
    #: The conversation this message belongs to; replies are grouped by it.
    session_id: str
    #: The channel it came from (``web``, ``telegram``, ``mqtt``); picks the reply queue.
    channel: str
    #: The authenticated sender (a JWT subject, a Telegram user id, a device id).
    user_id: str
    #: The sender's roles (``user``, ``admin``).
    roles: tuple[str, ...] = ()
    #: The text of the message; empty while an audio message awaits recognition.
    text: str = ""
    #: Blob-storage key of the audio, when the message is speech; audio never rides in a queue.
    audio_key: str | None = None
    #: The client's own id for this message, so a resend is recognised and not answered twice.
    client_msg_id: str | None = None
    #: Where the channel's deliverer sends the reply (a chat id, an MQTT topic); web uses the session.
    reply_to: str | None = None
    #: What the client wants back: ``text`` and/or ``speech``.
    wants: tuple[str, ...] = ("text",)
    #: Language hint (``zh``, ``en``) when the edge knows it; stages detect it otherwise.
    language: str | None = None
    #: Position of this message in its session, assigned by the edge; orders the dispatch stage.
    seq: int = 0
    #: When the edge accepted the message (epoch seconds).
    created_at: float = field(default_factory=now)
    #: Milliseconds spent in each stage so far, in order: ``(("dispatch", 1.2), ...)``.
    timings: tuple[tuple[str, float], ...] = ()
    #: True for an utterance sent to be recognised before its end was confirmed (the speaker only paused): the
    #: ``asr`` stage forwards it once the edge confirms the end, and drops it if the edge withdrew it.
    provisional: bool = False
    #: What the edge knows about where the message was said, for skills to read (``{"area": "卧室"}``: the area of
    #: the device that heard it, or the one a request names). Short strings only.
    context: dict[str, str] = field(default_factory=dict)

    def with_timing(self, stage: str, milliseconds: float) -> Envelope:
        """A copy with one more stage timing appended."""
        return replace(self, timings=(*self.timings, (stage, round(milliseconds, 3))))

    def to_json(self) -> str:
        return json.dumps(
            {
                "v": ENVELOPE_VERSION,
                "message_id": self.message_id,
                "session_id": self.session_id,
                "channel": self.channel,
                "user_id": self.user_id,
                "roles": list(self.roles),
                "text": self.text,
                "audio_key": self.audio_key,
                "client_msg_id": self.client_msg_id,
                "reply_to": self.reply_to,
                "wants": list(self.wants),
                "language": self.language,
                "seq": self.seq,
                "created_at": self.created_at,
                "timings": [list(t) for t in self.timings],
                "provisional": self.provisional,
                "context": dict(self.context),
            },
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> Envelope:
        """Decode ``to_json``'s form; raises ``EnvelopeError`` for anything else, whatever the input."""
        data = _load_versioned(raw, "envelope")
        return cls(
            message_id=_text(data, "message_id"),
            session_id=_text(data, "session_id"),
            channel=_text(data, "channel"),
            user_id=_text(data, "user_id"),
            roles=_texts(data, "roles", ()),
            text=_text(data, "text", ""),
            audio_key=_optional_text(data, "audio_key"),
            client_msg_id=_optional_text(data, "client_msg_id"),
            reply_to=_optional_text(data, "reply_to"),
            wants=_texts(data, "wants", ("text",)),
            language=_optional_text(data, "language"),
            seq=_integer(data, "seq"),
            created_at=_number(data, "created_at"),
            timings=_timings(data),
            provisional=_flag(data, "provisional"),
            context=_string_map(data, "context"),
        )


@dataclass(frozen=True, slots=True)
class Reply:
    """What the assistant answers to one envelope; goes back on the reply queue of its channel."""

    #: The message this answers; at most one reply per message goes out.
    message_id: str
    #: The session it belongs to.
    session_id: str
    #: The channel whose deliverer sends it.
    channel: str
    #: The answer's text.
    text: str
    #: Name of the skill that answered (``inference`` or ``fallback`` when none matched).
    skill: str | None = None
    #: True when the reply asks the user something and the next message answers it.
    expects_reply: bool = False
    #: Structured actions for the client (device commands, links), as plain JSON objects.
    actions: tuple[dict[str, Any], ...] = ()
    #: Set when the reply is an apology for a failure; a short machine-readable code.
    error: str | None = None
    #: Where the deliverer sends it, copied from the envelope.
    reply_to: str | None = None
    #: The user the reply is for, copied from the envelope.
    user_id: str = ""
    #: When the reply was made (epoch seconds).
    created_at: float = field(default_factory=now)
    #: The envelope's stage timings plus the stage that answered.
    timings: tuple[tuple[str, float], ...] = ()
    #: When the edge accepted the answered message (its envelope's ``created_at``; 0: unknown), for the
    #: end-to-end latency the deliverers measure.
    accepted_at: float = 0.0
    #: The answered message's place in its session (0: none), so a session's replies go out in order.
    seq: int = 0
    #: True when the stage that made the reply stored it in the transcript already; the deliverer then doesn't.
    recorded: bool = False
    #: What the client wants back, copied from the envelope: with ``speech`` the reply goes through ``tts``.
    wants: tuple[str, ...] = ("text",)
    #: The reply's language (``zh``, ``en``), which picks the voice that speaks it.
    language: str | None = None
    #: What was heard, when the message was speech: ``{"text", "language"}``.
    heard: dict[str, Any] | None = None
    #: The spoken reply once ``tts`` ran: ``{"status": "ready", "key", "sample_rate", "duration_seconds",
    #: "interrupted"}``, or ``{"status": "missing", "reason"}`` when it could not be spoken (no voice for the
    #: language, synthesis failed). Never the audio itself: that lives in blob storage under ``key``.
    audio: dict[str, Any] | None = None
    #: What it is (``ReplyKind``): an answer to show, a change of who handles the session (``handoff``), or the
    #: acknowledgment that a message went to the human operator who has the session (``held``, no text).
    kind: str = "reply"
    #: Who speaks (``ReplyRole``): the assistant, or the human operator (``agent``) who has the session.
    role: str = "assistant"
    #: With ``kind`` ``handoff``: ``{"status": "waiting" | "active" | "bot" | "timed_out" | "message_left",
    #: "agent": the operator's display name or None}``.
    handoff: dict[str, Any] | None = None
    #: The answered sender's roles, copied from the envelope: a reply to a website's visitor switches no device.
    roles: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": ENVELOPE_VERSION,
            "message_id": self.message_id,
            "session_id": self.session_id,
            "seq": self.seq,
            "recorded": self.recorded,
            "kind": self.kind,
            "role": self.role,
            "handoff": self.handoff,
            "channel": self.channel,
            "text": self.text,
            "skill": self.skill,
            "expects_reply": self.expects_reply,
            "actions": list(self.actions),
            "error": self.error,
            "reply_to": self.reply_to,
            "user_id": self.user_id,
            "created_at": self.created_at,
            "accepted_at": self.accepted_at,
            "timings": [list(t) for t in self.timings],
            "wants": list(self.wants),
            "language": self.language,
            "heard": self.heard,
            "audio": self.audio,
            "roles": list(self.roles),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Reply:
        """Decode ``to_dict``'s form; raises ``EnvelopeError`` for anything else."""
        actions = data.get("actions")
        if actions is not None and not (isinstance(actions, list) and all(isinstance(a, dict) for a in actions)):
            raise EnvelopeError("field 'actions' must be a list of JSON objects")
        return cls(
            message_id=_text(data, "message_id"),
            session_id=_text(data, "session_id"),
            channel=_text(data, "channel"),
            text=_text(data, "text"),
            skill=_optional_text(data, "skill"),
            expects_reply=_flag(data, "expects_reply"),
            actions=tuple(actions or ()),
            error=_optional_text(data, "error"),
            reply_to=_optional_text(data, "reply_to"),
            user_id=_text(data, "user_id", ""),
            created_at=_number(data, "created_at"),
            accepted_at=_number(data, "accepted_at"),
            timings=_timings(data),
            seq=_integer(data, "seq"),
            recorded=_flag(data, "recorded"),
            wants=_texts(data, "wants", ("text",)),
            language=_optional_text(data, "language"),
            heard=_optional_object(data, "heard"),
            audio=_optional_object(data, "audio"),
            kind=_choice(data, "kind", REPLY_KINDS),
            role=_choice(data, "role", REPLY_ROLES),
            handoff=_optional_object(data, "handoff"),
            roles=_texts(data, "roles", ()),
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> Reply:
        return cls.from_dict(_load_versioned(raw, "reply"))

    @classmethod
    def answering(cls, envelope: Envelope, text: str, **fields: Any) -> Reply:
        """A reply to ``envelope``, addressed the way it came in, in its language, spoken if it wants speech."""
        fields.setdefault("language", envelope.language)
        if envelope.audio_key is not None:
            fields.setdefault("heard", {"text": envelope.text, "language": envelope.language})
        return cls(
            message_id=envelope.message_id,
            session_id=envelope.session_id,
            channel=envelope.channel,
            text=text,
            reply_to=envelope.reply_to,
            user_id=envelope.user_id,
            timings=envelope.timings,
            accepted_at=envelope.created_at,
            seq=envelope.seq,
            wants=envelope.wants,
            roles=envelope.roles,
            **fields,
        )


# Field readers: an absent or null field takes the default; a field of another JSON type is refused,
# rather than coerced into nonsense (``str(None)``, ``int(1.9)``) or failing with another exception.


def _text(data: dict[str, Any], name: str, default: str | None = None) -> str:
    value = data.get(name)
    if value is None:
        if default is None:
            raise EnvelopeError(f"field {name!r} is required")
        return default
    if not isinstance(value, str):
        raise EnvelopeError(f"field {name!r} must be a string, got {type(value).__name__}")
    return value


def _choice(data: dict[str, Any], name: str, allowed: tuple[str, ...]) -> str:
    """One of ``allowed``; absent or null: the first (replies written before the field existed)."""
    value = _text(data, name, allowed[0])
    if value not in allowed:
        raise EnvelopeError(f"field '{name}' must be one of {', '.join(allowed)}")
    return value


def _optional_text(data: dict[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is not None and not isinstance(value, str):
        raise EnvelopeError(f"field {name!r} must be a string or null, got {type(value).__name__}")
    return value


def _texts(data: dict[str, Any], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    value = data.get(name)
    if value is None:
        return default
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise EnvelopeError(f"field {name!r} must be a list of strings")
    return tuple(value)


def _optional_object(data: dict[str, Any], name: str) -> dict[str, Any] | None:
    value = data.get(name)
    if value is not None and not isinstance(value, dict):
        raise EnvelopeError(f"field {name!r} must be a JSON object or null, got {type(value).__name__}")
    return value


def _flag(data: dict[str, Any], name: str) -> bool:
    value = data.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise EnvelopeError(f"field {name!r} must be true or false, got {type(value).__name__}")
    return value


def _integer(data: dict[str, Any], name: str) -> int:
    value = data.get(name)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise EnvelopeError(f"field {name!r} must be an integer, got {type(value).__name__}")
    return value


def _finite(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise EnvelopeError(f"field {name!r} must be a number, got {type(value).__name__}")
    try:
        number = float(value)
    except OverflowError as exc:  # an integer beyond any float
        raise EnvelopeError(f"field {name!r} is out of range") from exc
    if not math.isfinite(number):
        raise EnvelopeError(f"field {name!r} must be a finite number")
    return number


def _number(data: dict[str, Any], name: str) -> float:
    value = data.get(name)
    return 0.0 if value is None else _finite(value, name)


def _string_map(data: dict[str, Any], key: str) -> dict[str, str]:
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise EnvelopeError(f"'{key}' must be an object of strings")
    return dict(value)


def _timings(data: dict[str, Any]) -> tuple[tuple[str, float], ...]:
    value = data.get("timings")
    if value is None:
        return ()
    if not isinstance(value, list):
        raise EnvelopeError("field 'timings' must be a list of [stage, milliseconds]")
    timings = []
    for item in value:
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)):
            raise EnvelopeError("field 'timings' must be a list of [stage, milliseconds]")
        timings.append((item[0], _finite(item[1], "timings")))
    return tuple(timings)


def _load_versioned(raw: str | bytes, what: str) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except (TypeError, ValueError, RecursionError) as exc:  # RecursionError: nested deeper than the parser goes
        raise EnvelopeError(f"{what} is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise EnvelopeError(f"{what} must be a JSON object")
    version = data.get("v")
    if version != ENVELOPE_VERSION:
        raise EnvelopeError(f"unsupported {what} version {version!r}, expected {ENVELOPE_VERSION}")
    return data
