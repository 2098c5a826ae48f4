"""Dialogue state of a session: the open follow-up question, interrupted tasks, recent turns."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

#: Turns of history kept in the state (for skills and inference), oldest dropped first.
HISTORY_TURNS = 10


@dataclass(frozen=True, slots=True)
class PendingTask:
    """A skill waiting for the answer to its follow-up question."""

    #: Name of the skill that asked.
    skill: str
    #: The question, offered again after an interruption.
    question: str
    #: The slot the answer fills.
    slot: str | None = None
    #: Slots collected so far.
    slots: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"skill": self.skill, "question": self.question, "slot": self.slot, "slots": dict(self.slots)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PendingTask:
        return cls(
            skill=str(data["skill"]),
            question=str(data.get("question", "")),
            slot=data.get("slot"),
            slots={str(k): str(v) for k, v in dict(data.get("slots", {})).items()},
        )


@dataclass(frozen=True, slots=True)
class Turn:
    """One exchange: what the user said and what the assistant answered."""

    user: str
    assistant: str
    skill: str | None = None


@dataclass(frozen=True, slots=True)
class DialogueState:
    """Everything the dispatch stage remembers about a session between messages."""

    #: The question the session's next message answers, if any.
    pending: PendingTask | None = None
    #: Tasks put aside when the user changed the subject; the last one is offered again first.
    interrupted: tuple[PendingTask, ...] = ()
    #: The last few turns, oldest first.
    history: tuple[Turn, ...] = ()
    #: Language of the last message (``zh`` or ``en``).
    language: str = "zh"
    #: Sequence number of the last message handled, so a redelivered message is recognised.
    last_seq: int = 0

    def remember(self, turn: Turn) -> DialogueState:
        return replace(self, history=(*self.history, turn)[-HISTORY_TURNS:])

    def to_json(self) -> str:
        return json.dumps(
            {
                "pending": self.pending.to_dict() if self.pending else None,
                "interrupted": [task.to_dict() for task in self.interrupted],
                "history": [[t.user, t.assistant, t.skill] for t in self.history],
                "language": self.language,
                "last_seq": self.last_seq,
            },
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, raw: str | bytes | None) -> DialogueState:
        """Decode a stored state; an empty or unreadable one starts afresh rather than failing the message."""
        if not raw:
            return cls()
        try:
            data = json.loads(raw)
            return cls(
                pending=PendingTask.from_dict(data["pending"]) if data.get("pending") else None,
                interrupted=tuple(PendingTask.from_dict(t) for t in data.get("interrupted", ())),
                history=tuple(Turn(str(u), str(a), s) for u, a, s in data.get("history", ())),
                language=str(data.get("language", "zh")),
                last_seq=int(data.get("last_seq", 0)),
            )
        except (ValueError, KeyError, TypeError):
            return cls()
