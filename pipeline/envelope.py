"""The one message type that travels through the stage queues, and the reply it turns into."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

from pipeline.errors import EnvelopeError

#: Bumped when the JSON form changes in a way old workers cannot read.
ENVELOPE_VERSION = 1


def new_id() -> str:
    """A fresh random id for messages and sessions."""
    return uuid.uuid4().hex


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
            },
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> Envelope:
        data = _load_versioned(raw, "envelope")
        _check_types(data, {"roles": list, "wants": list, "text": str, "timings": list})
        try:
            return cls(
                message_id=str(data["message_id"]),
                session_id=str(data["session_id"]),
                channel=str(data["channel"]),
                user_id=str(data["user_id"]),
                roles=tuple(data.get("roles", ())),
                text=str(data.get("text", "")),
                audio_key=data.get("audio_key"),
                client_msg_id=data.get("client_msg_id"),
                reply_to=data.get("reply_to"),
                wants=tuple(data.get("wants", ("text",))),
                language=data.get("language"),
                seq=int(data.get("seq", 0)),
                created_at=float(data.get("created_at", 0.0)),
                timings=tuple((str(s), float(ms)) for s, ms in data.get("timings", ())),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise EnvelopeError(f"malformed envelope: {exc!r}") from exc


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
    #: The answered message's place in its session (0: none), so a session's replies go out in order.
    seq: int = 0
    #: True when the stage that made the reply stored it in the transcript already; the deliverer then doesn't.
    recorded: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": ENVELOPE_VERSION,
            "message_id": self.message_id,
            "session_id": self.session_id,
            "seq": self.seq,
            "recorded": self.recorded,
            "channel": self.channel,
            "text": self.text,
            "skill": self.skill,
            "expects_reply": self.expects_reply,
            "actions": list(self.actions),
            "error": self.error,
            "reply_to": self.reply_to,
            "user_id": self.user_id,
            "created_at": self.created_at,
            "timings": [list(t) for t in self.timings],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Reply:
        _check_types(data, {"text": str, "actions": list, "timings": list})
        try:
            return cls(
                message_id=str(data["message_id"]),
                session_id=str(data["session_id"]),
                channel=str(data["channel"]),
                text=str(data["text"]),
                skill=data.get("skill"),
                expects_reply=bool(data.get("expects_reply", False)),
                actions=tuple(data.get("actions", ())),
                error=data.get("error"),
                reply_to=data.get("reply_to"),
                user_id=str(data.get("user_id", "")),
                created_at=float(data.get("created_at", 0.0)),
                timings=tuple((str(s), float(ms)) for s, ms in data.get("timings", ())),
                seq=int(data.get("seq", 0)),
                recorded=bool(data.get("recorded", False)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise EnvelopeError(f"malformed reply: {exc!r}") from exc

    @classmethod
    def from_json(cls, raw: str | bytes) -> Reply:
        return cls.from_dict(_load_versioned(raw, "reply"))

    @classmethod
    def answering(cls, envelope: Envelope, text: str, **fields: Any) -> Reply:
        """A reply to ``envelope``, addressed the way it came in."""
        return cls(
            message_id=envelope.message_id,
            session_id=envelope.session_id,
            channel=envelope.channel,
            text=text,
            reply_to=envelope.reply_to,
            user_id=envelope.user_id,
            timings=envelope.timings,
            seq=envelope.seq,
            **fields,
        )


def _check_types(data: dict[str, Any], expected: dict[str, type]) -> None:
    """Reject fields of the wrong JSON type, which would otherwise be coerced into nonsense."""
    for name, kind in expected.items():
        if name in data and data[name] is not None and not isinstance(data[name], kind):
            raise EnvelopeError(f"field {name!r} must be a JSON {kind.__name__}, got {type(data[name]).__name__}")


def _load_versioned(raw: str | bytes, what: str) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except (TypeError, ValueError) as exc:
        raise EnvelopeError(f"{what} is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise EnvelopeError(f"{what} must be a JSON object")
    version = data.get("v")
    if version != ENVELOPE_VERSION:
        raise EnvelopeError(f"unsupported {what} version {version!r}, expected {ENVELOPE_VERSION}")
    return data
