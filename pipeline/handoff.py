"""Human handoff: who answers a web session (the bot or a person), asking for a person, what the visitor is told."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from enum import StrEnum

from pipeline.envelope import Reply, ReplyKind, new_id, now
from pipeline.stages import Channel

#: The task that ends a handoff nobody took in time (``HANDOFF_WAIT_SECONDS``); it runs on the dispatch queue.
HANDOFF_TIMEOUT_TASK = "assistant.handoff.timeout"


class HandoffStatus(StrEnum):
    """Who handles a session."""

    #: The assistant answers (no handoff, or it ended).
    BOT = "bot"
    #: The visitor asked for a person; no operator has taken the session yet. The bot is silent.
    WAITING = "waiting"
    #: An operator has the session and answers; the bot is silent.
    ACTIVE = "active"
    #: Nobody took the session in time; the visitor's next message is left for the operators.
    TIMED_OUT = "timed_out"
    #: The visitor left a message (after the time-out, or held while waiting before it): the bot answers again,
    #: operators still see it listed.
    MESSAGE_LEFT = "message_left"


#: The statuses operators see listed (``GET /api/operator/sessions``).
LISTED = (HandoffStatus.WAITING, HandoffStatus.ACTIVE, HandoffStatus.MESSAGE_LEFT)
#: The statuses in which the bot stays silent and a visitor's message goes to the operators (``held``).
HELD = (HandoffStatus.WAITING, HandoffStatus.ACTIVE)

#: What the visitor is told at each change, by language; ``{agent}`` is the operator's name.
VISITOR_TEXTS: dict[str, dict[HandoffStatus, str]] = {
    "zh": {
        HandoffStatus.WAITING: "正在为您转接人工客服，请稍候。",
        HandoffStatus.ACTIVE: "客服{agent}已接入，正在为您服务。",
        HandoffStatus.BOT: "人工客服已结束服务，接下来由智能助手继续为您服务。",
        HandoffStatus.TIMED_OUT: "暂时没有人工客服有空。请留言，客服会尽快回复您。",
        HandoffStatus.MESSAGE_LEFT: "已收到您的留言，客服会尽快回复您。",
    },
    "en": {
        HandoffStatus.WAITING: "Connecting you to a person. Please wait a moment.",
        HandoffStatus.ACTIVE: "{agent} from our team has joined the chat.",
        HandoffStatus.BOT: "The agent has left. The assistant is back to help you.",
        HandoffStatus.TIMED_OUT: "No one is available right now. Leave a message and we'll get back to you.",
        HandoffStatus.MESSAGE_LEFT: "Thanks, we've got your message and will get back to you.",
    },
}

#: What the visitor is told when nobody came in time but they wrote while waiting: that message is the left one.
LEFT_WHILE_WAITING_TEXTS: dict[str, str] = {
    "zh": "暂时没有人工客服有空。已收到您的留言，客服会尽快回复您。",
    "en": "No one is available right now. We've got your message and will get back to you.",
}

# Phrases asking for a person, folded (NFKC, lower case) with punctuation and spaces taken out: "转 人工！",
# "Talk to a person, please" and "HUMAN PLEASE" all match.
_CHINESE = ("转人工", "人工客服", "找人工", "真人客服", "人工服务")
_ENGLISH = re.compile(
    r"\b(?:talk|speak|chat)(?: to| with) (?:a |an |the )?(?:human|person|agent|real person|operator)\b"
    r"|\bhuman,? please\b|\b(?:a )?(?:real )?(?:human|person|agent),? please\b"
)


def asks_for_human(text: str) -> bool:
    """True when ``text`` asks to talk to a person ("转人工", "人工客服", "talk to a person", "human please")."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    squeezed = "".join(ch for ch in folded if not _is_filler(ch))
    if any(phrase in squeezed for phrase in _CHINESE):
        return True
    words = " ".join("".join(ch if ch.isalnum() or ch == "," else " " for ch in folded).split())
    return _ENGLISH.search(words.replace(" ,", ",")) is not None


def _is_filler(char: str) -> bool:
    """Spaces and punctuation, which a request for a person may carry anywhere."""
    return char.isspace() or unicodedata.category(char)[0] in "PZS"


def visitor_text(status: HandoffStatus, language: str | None, agent: str | None = None) -> str:
    """What the visitor is told when the session changes to ``status``, in their language (Chinese by default)."""
    texts = VISITOR_TEXTS.get(language or "zh", VISITOR_TEXTS["zh"])
    return texts[status].format(agent=agent or ("" if language == "zh" else "Someone"))


def timed_out_text(handoff: Handoff) -> str:
    """What the visitor is told when nobody took ``handoff`` in time: leave a message, or (``message_left``: they
    wrote while waiting) that their message was kept."""
    if handoff.status is HandoffStatus.MESSAGE_LEFT:
        return LEFT_WHILE_WAITING_TEXTS.get(handoff.language, LEFT_WHILE_WAITING_TEXTS["zh"])
    return visitor_text(HandoffStatus.TIMED_OUT, handoff.language)


@dataclass(frozen=True, slots=True)
class Handoff:
    """A web session's handoff, as the store keeps it."""

    #: The session handed off.
    session_id: str
    #: Who handles it now.
    status: HandoffStatus
    #: Id of this request for a person; a time-out ends only the request it was scheduled for.
    handoff_id: str
    #: The operator who has (or last had) the session; None while nobody took it.
    agent: str | None
    #: When it entered ``status`` (epoch seconds).
    since: float
    #: The visitor (the session's owner).
    user_id: str
    #: The visitor's language (``zh``, ``en``): what they are told is in it.
    language: str
    #: The visitor's latest message (the left message after a time-out).
    last_text: str
    #: When anything last changed: a status or a message (epoch seconds).
    updated_at: float
    #: The visitor's messages held since the request: a time-out with any takes the latest for the left message.
    held: int = 0


def handoff_reply(handoff: Handoff, message_id: str | None = None, text: str | None = None) -> Reply:
    """The ``handoff`` reply telling the visitor of ``handoff``'s status: a fresh message id unless given, no place in
    the session's order (seq 0), spoken by the assistant."""
    status = handoff.status
    return Reply(
        message_id=message_id or new_id(),
        session_id=handoff.session_id,
        channel=str(Channel.WEB),
        text=visitor_text(status, handoff.language, handoff.agent) if text is None else text,
        skill="handoff",
        user_id=handoff.user_id,
        created_at=now(),
        language=handoff.language,
        kind=str(ReplyKind.HANDOFF),
        handoff={"status": str(status), "agent": handoff.agent},
    )
