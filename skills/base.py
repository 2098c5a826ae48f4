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

Who may use a skill: ``roles``, the token roles it serves. By default a skill serves the household: people with a
``user`` or ``admin`` token and its own devices (``device``, the MQTT voice satellites). Anonymous website visitors
(role ``visitor``, whose tokens anyone with a site's public key can get) reach a skill only when it opts in, with
``visitors=True`` (or ``roles=(..., "visitor")``); a skill that switches devices or reads the home's state never
should. A message from someone a skill does not serve is dispatched as if the skill did not exist: neither its
triggers, nor the intent classifier, nor an open question of it select it, and inference answers instead.

    class OpeningHoursSkill(BaseSkill):
        visitors = True  # harmless: anyone on the website may ask

        def __init__(self):
            super().__init__(name="hours", description="营业时间", triggers=["营业时间", "opening hours"])
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


#: The roles a skill serves unless it says otherwise: the household's people and devices, never a visitor.
HOUSEHOLD_ROLES: tuple[str, ...] = ("user", "admin", "device")
#: The role of an anonymous website visitor (a widget's token).
VISITOR = "visitor"


class BaseSkill:
    """A capability the assistant selects by trigger words. Subclasses implement ``execute``."""

    #: The token roles this skill serves (see the module's docstring); ``roles=`` overrides it per instance.
    roles: tuple[str, ...] = HOUSEHOLD_ROLES
    #: True: website visitors may use it too (adds ``visitor`` to ``roles``).
    visitors: bool = False

    def __init__(
        self,
        name: str,
        description: str = "",
        triggers: Iterable[str] = (),
        examples: Iterable[str] = (),
        roles: Iterable[str] | None = None,
        visitors: bool | None = None,
    ) -> None:
        if not name:
            raise ValueError("a skill needs a name")
        if isinstance(roles, str):
            roles = [roles]
        served = tuple(dict.fromkeys(roles if roles is not None else type(self).roles))
        if visitors is None:
            visitors = type(self).visitors
        # ``visitors`` only ever opens a skill; ``roles=(..., "visitor")`` opens it the same way.
        if visitors and VISITOR not in served:
            served = (*served, VISITOR)
        self.roles = served
        self.visitors = VISITOR in served
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

    def serves(self, roles: Iterable[str]) -> bool:
        """True when a sender with token ``roles`` may use this skill (one of them is among the skill's)."""
        return any(role in self.roles for role in roles)

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
            "roles": list(self.roles),
            "visitors": self.visitors,
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
