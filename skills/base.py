"""The public plugin API: subclass ``BaseSkill``, give it triggers, implement ``execute``.

    from skills.base import BaseSkill

    class WeatherSkill(BaseSkill):
        def __init__(self):
            super().__init__(name="weather", description="获取实时天气信息", triggers=["天气", "气温"])

        def execute(self, context):
            location = context.get("location", "北京")
            return f"{location}当前气温：25℃"

``context`` is a dict: ``message`` (the text), ``language`` (``zh`` or ``en``), ``session_id``,
``user_id``, ``roles``, ``channel``, ``message_id``, ``slots``, ``answering`` (the slot the message
answers, or None), ``history`` (recent turns) and ``area`` (where the request was said: the area its device
stands in or the one it names, or None). ``slots`` holds what the message names (``location``:
"上海气温" → "上海"; ``day``: ``today``, ``tomorrow``, ``weekend``, ... as ``pipeline.slots.DAYS`` lists),
the answers to follow-up questions, and slots kept while a question is open. Each slot is also a key
of ``context`` itself, unless it has one of the names above.
``execute`` returns a string, or a ``SkillResult`` to ask a follow-up question, send actions, or hand the
conversation to a person: ``SkillResult(text, handoff=True)`` on the web channel puts the session in the
operators' queue (the visitor reads ``text``, then that a person is coming; see docs/handoff.md); on other
channels the flag is ignored and ``text`` is the answer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline.language import is_cjk, normalize


@dataclass(frozen=True, slots=True)
class SkillResult:
    """A richer answer than a string."""

    #: What the user reads (or hears).
    text: str
    #: A follow-up question: when set, the session's next message comes back to this skill.
    ask: str | None = None
    #: The slot the answer to ``ask`` fills, found in ``context["slots"]`` next time.
    slot: str | None = None
    #: Slots collected so far, kept while the question is open.
    slots: Mapping[str, str] = field(default_factory=dict)
    #: Structured actions for the client or devices (plain JSON objects).
    actions: tuple[dict[str, Any], ...] = ()
    #: Hand the conversation to a human operator (web channel only): the bot stays silent until one gives it back.
    handoff: bool = False

    @classmethod
    def question(cls, text: str, slot: str, slots: Mapping[str, str] | None = None) -> SkillResult:
        """Ask ``text`` and route the answer back into ``slot``."""
        return cls(text=text, ask=text, slot=slot, slots=dict(slots or {}))


class BaseSkill:
    """A capability the assistant selects by trigger words. Subclasses implement ``execute``."""

    def __init__(
        self, name: str, description: str = "", triggers: Iterable[str] = (), examples: Iterable[str] = ()
    ) -> None:
        if not name:
            raise ValueError("a skill needs a name")
        if isinstance(triggers, str):
            # A bare string would otherwise become one trigger per character.
            triggers = [triggers]
        self.name = name
        self.description = description
        # Blank triggers are dropped: an empty pattern would match every message.
        self.triggers = [t.strip() for t in triggers if t and t.strip()]
        self._patterns = [_trigger_pattern(t) for t in self.triggers]
        if isinstance(examples, str):
            examples = [examples]
        #: Whole sentences that should reach this skill; the intent classifier learns from them and the triggers.
        self.examples = [e.strip() for e in examples if e and e.strip()]
        self._lengths = [len(normalize(t)) for t in self.triggers]

    def execute(self, context: dict[str, Any]) -> str | SkillResult:
        """Answer the message in ``context``; raise or hang and the user gets an apology."""
        raise NotImplementedError(f"skill {self.name!r} does not implement execute()")

    def match(self, text: str) -> int:
        """How well ``text`` selects this skill: the length of the longest trigger found, 0 for none.

        Chinese triggers match anywhere (Chinese has no spaces); English ones match whole words.
        """
        folded = normalize(text)
        return max((n for n, p in zip(self._lengths, self._patterns, strict=True) if p.search(folded)), default=0)

    def describe(self) -> dict[str, Any]:
        """The skill as ``GET /api/skills`` lists it."""
        return {
            "name": self.name,
            "description": self.description,
            "triggers": list(self.triggers),
            "examples": list(self.examples),
        }

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


def _trigger_pattern(trigger: str) -> re.Pattern[str]:
    # Any run of spaces in the message matches a space in the trigger ("what  day" still says "what day").
    folded = r"\s+".join(re.escape(word) for word in normalize(trigger).split())
    if not folded:
        return re.compile(r"(?!)")  # folds to nothing: never matches rather than always
    if any(is_cjk(ch) for ch in trigger):
        return re.compile(folded)
    # Whole words for Latin triggers, so "time" does not fire on "sometimes".
    return re.compile(rf"(?<![a-z0-9]){folded}(?![a-z0-9])")
