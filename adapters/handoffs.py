"""Where web sessions' handoffs live: ``HandoffStore`` and its in-process version (Redis: ``adapters.redis_handoffs``).

Every transition is atomic and checks the status it starts from, so two operators cannot both take one session
and a time-out cannot end a handoff that an operator took (or that was asked for again) meanwhile. Each change
bumps a counter that the operator stream waits on.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Protocol

from pipeline.envelope import now
from pipeline.handoff import HELD, LISTED, Handoff, HandoffStatus

#: Longest last message kept with a handoff, characters (the listing shows it; the transcript has all of it).
LAST_TEXT_CHARS = 500


class TakeOutcome(StrEnum):
    """Answer of ``HandoffStore.take``."""

    #: The session is now this operator's (or was already).
    TAKEN = "taken"
    #: Another operator has it.
    ALREADY_TAKEN = "already_taken"
    #: The session was not handed off (never, or given back to the bot).
    NOT_FOUND = "not_found"


class ReleaseOutcome(StrEnum):
    """Answer of ``HandoffStore.release``."""

    #: The session is the bot's again.
    RELEASED = "released"
    #: Another operator has it.
    NOT_YOURS = "not_yours"
    #: The session was not handed off.
    NOT_FOUND = "not_found"


@dataclass(frozen=True, slots=True)
class Transition:
    """The outcome of a transition, with the handoff as it is afterwards (None when there is none)."""

    outcome: str
    handoff: Handoff | None
    #: True when this call changed the status (False: it was so already, e.g. a repeated take or time-out).
    changed: bool = False
    #: The status before the call (None: no handoff).
    previous: HandoffStatus | None = None


class HandoffStore(Protocol):
    def get(self, session_id: str) -> Handoff | None:
        """The session's handoff, whatever its status; None when it never had one (or it expired)."""
        ...

    def request(
        self, session_id: str, handoff_id: str, user_id: str, language: str, text: str, ttl: int
    ) -> Handoff | None:
        """The visitor asked for a person: ``waiting``, under ``handoff_id`` (the asking message's id). None when the
        session is ``waiting`` or ``active`` already (its message is held instead) or ``timed_out`` (it is a left
        message); the same request again (a redelivered message) gets its handoff back, unchanged."""
        ...

    def take(self, session_id: str, agent: str, ttl: int) -> Transition:
        """An operator takes the session: ``active`` with ``agent``, from ``waiting``, ``timed_out`` or
        ``message_left``. Two operators racing: exactly one gets ``taken``, the other ``already_taken``."""
        ...

    def release(self, session_id: str, agent: str | None, ttl: int) -> Transition:
        """Back to the bot: the operator who has it hands it back (``agent`` None: whoever has it, for admins), or
        a ``waiting``, ``timed_out`` or ``message_left`` session is dismissed."""
        ...

    def time_out(self, session_id: str, handoff_id: str, ttl: int) -> Transition:
        """``waiting`` → ``timed_out``, only while ``handoff_id`` is still the session's and nobody took it; straight
        to ``message_left`` when the visitor wrote while waiting (that held message is the left one, and stays
        listed). ``timed_out`` or ``message_left`` already for this id: the handoff back, unchanged, outcome
        ``timed_out`` (a repeated time-out sends its reply again)."""
        ...

    def leave_message(self, session_id: str, text: str, ttl: int) -> Handoff | None:
        """``timed_out`` → ``message_left`` with ``text`` as the left message; None from any other status."""
        ...

    def note(self, session_id: str, text: str, ttl: int) -> Handoff | None:
        """Keep the visitor's latest message (a held one) for the listing; None when the session is not listed."""
        ...

    def listed(self, limit: int | None = None) -> list[Handoff]:
        """The ``waiting``, ``active`` and ``message_left`` sessions, the most recently changed first; ``limit``: the
        latest ``limit`` of them at most."""
        ...

    def version(self) -> int:
        """A counter bumped by every change of a listed session (or of a session leaving the list)."""
        ...

    def wait_for_change(self, seen: int, timeout: float) -> int:
        """The version once it differs from ``seen``, or after ``timeout`` seconds (then it may equal ``seen``)."""
        ...


def take_transition(current: Handoff | None, agent: str, at: float) -> Transition:
    """The rule of ``take``, shared by both stores (Redis runs it in Lua)."""
    if current is None or current.status is HandoffStatus.BOT:
        return Transition(TakeOutcome.NOT_FOUND, current, previous=None if current is None else current.status)
    if current.status is HandoffStatus.ACTIVE:
        outcome = TakeOutcome.TAKEN if current.agent == agent else TakeOutcome.ALREADY_TAKEN
        return Transition(outcome, current, previous=current.status)
    taken = replace(current, status=HandoffStatus.ACTIVE, agent=agent, since=at, updated_at=at)
    return Transition(TakeOutcome.TAKEN, taken, changed=True, previous=current.status)


def release_transition(current: Handoff | None, agent: str | None, at: float) -> Transition:
    """The rule of ``release``."""
    if current is None or current.status is HandoffStatus.BOT:
        return Transition(ReleaseOutcome.NOT_FOUND, current, previous=None if current is None else current.status)
    if current.status is HandoffStatus.ACTIVE and agent is not None and current.agent != agent:
        return Transition(ReleaseOutcome.NOT_YOURS, current, previous=current.status)
    released = replace(current, status=HandoffStatus.BOT, since=at, updated_at=at)
    return Transition(ReleaseOutcome.RELEASED, released, changed=True, previous=current.status)


class MemoryHandoffs:
    """``HandoffStore`` for the embedded mode: a dictionary under one condition variable.

    A handoff is dropped ``ttl`` seconds after its last change, as the Redis keys expire with the session.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._handoffs: dict[str, tuple[Handoff, float]] = {}
        self._version = 0

    def _current(self, session_id: str) -> Handoff | None:
        kept = self._handoffs.get(session_id)
        if kept is None:
            return None
        if kept[1] <= time.monotonic():
            del self._handoffs[session_id]
            return None
        return kept[0]

    def _store(self, handoff: Handoff, ttl: int, listed_before: bool) -> None:
        self._handoffs[handoff.session_id] = (handoff, time.monotonic() + ttl)
        if listed_before or handoff.status in LISTED:
            self._version += 1
            self._changed.notify_all()

    def get(self, session_id: str) -> Handoff | None:
        with self._changed:
            return self._current(session_id)

    def request(
        self, session_id: str, handoff_id: str, user_id: str, language: str, text: str, ttl: int
    ) -> Handoff | None:
        with self._changed:
            current = self._current(session_id)
            if current is not None and current.handoff_id == handoff_id and current.status is HandoffStatus.WAITING:
                return current
            if current is not None and current.status in (*HELD, HandoffStatus.TIMED_OUT):
                return None
            at = now()
            handoff = Handoff(session_id, HandoffStatus.WAITING, handoff_id, None, at, user_id, language,
                              text[:LAST_TEXT_CHARS], at)  # fmt: skip
            self._store(handoff, ttl, current is not None and current.status in LISTED)
            return handoff

    def take(self, session_id: str, agent: str, ttl: int) -> Transition:
        with self._changed:
            current = self._current(session_id)
            result = take_transition(current, agent, now())
            if result.changed and result.handoff is not None:
                self._store(result.handoff, ttl, True)
            return result

    def release(self, session_id: str, agent: str | None, ttl: int) -> Transition:
        with self._changed:
            current = self._current(session_id)
            result = release_transition(current, agent, now())
            if result.changed and result.handoff is not None:
                self._store(result.handoff, ttl, True)
            return result

    def time_out(self, session_id: str, handoff_id: str, ttl: int) -> Transition:
        with self._changed:
            current = self._current(session_id)
            if current is None or current.handoff_id != handoff_id:
                return Transition("stale", current)
            if current.status in (HandoffStatus.TIMED_OUT, HandoffStatus.MESSAGE_LEFT):
                return Transition("timed_out", current, previous=current.status)
            if current.status is not HandoffStatus.WAITING:
                return Transition("stale", current, previous=current.status)
            at = now()
            status = HandoffStatus.MESSAGE_LEFT if current.held else HandoffStatus.TIMED_OUT
            timed_out = replace(current, status=status, since=at, updated_at=at)
            self._store(timed_out, ttl, True)
            return Transition("timed_out", timed_out, changed=True, previous=current.status)

    def leave_message(self, session_id: str, text: str, ttl: int) -> Handoff | None:
        with self._changed:
            current = self._current(session_id)
            if current is None or current.status is not HandoffStatus.TIMED_OUT:
                return None
            at = now()
            left = replace(current, status=HandoffStatus.MESSAGE_LEFT, since=at, updated_at=at,
                           last_text=text[:LAST_TEXT_CHARS])  # fmt: skip
            self._store(left, ttl, True)
            return left

    def note(self, session_id: str, text: str, ttl: int) -> Handoff | None:
        with self._changed:
            current = self._current(session_id)
            if current is None or current.status not in LISTED:
                return None
            noted = replace(current, last_text=text[:LAST_TEXT_CHARS], updated_at=now(), held=current.held + 1)
            self._store(noted, ttl, True)
            return noted

    def listed(self, limit: int | None = None) -> list[Handoff]:
        with self._changed:
            found = [h for key in list(self._handoffs) if (h := self._current(key)) is not None and h.status in LISTED]
        return sorted(found, key=lambda h: h.updated_at, reverse=True)[:limit]

    def version(self) -> int:
        with self._changed:
            return self._version

    def wait_for_change(self, seen: int, timeout: float) -> int:
        with self._changed:
            self._changed.wait_for(lambda: self._version != seen, timeout)
            return self._version
