"""The order rules of a session: whose turn it is, when a reply may go out, how long a message waits.

Each message of a session carries its place (``seq``, 1, 2, ...). The dispatch stage handles a session's
messages one at a time and in that order; the deliverer sends its replies in the same order. Numbers of
messages that never reached the queue (withdrawn) or that were given up on (dead-lettered) are *skipped*:
nothing waits for them. The in-process stores call these functions; the Redis stores run the same rules
in Lua, so that each step stays one round trip, and one contract test holds both to these rules.
"""

from __future__ import annotations

from collections.abc import Container
from enum import StrEnum

#: Seconds a turn's lock lives unless its holder renews it. Short, so a worker that died holding it
#: delays its session by at most this long; a live holder renews it every ``LEASE_RENEW_SECONDS``.
TURN_LOCK_SECONDS = 10.0
#: How often a turn's holder renews its lock (and a worker its broker deliveries) while it works.
LEASE_RENEW_SECONDS = 2.0
#: First pause before a message whose turn has not come is tried again, seconds; it doubles up to
#: ``TURN_RETRY_MAX_SECONDS``. The message is re-queued for that long: it holds no worker thread meanwhile.
TURN_RETRY_FIRST_SECONDS = 0.01
TURN_RETRY_MAX_SECONDS = 0.5
#: How long a message waits for the earlier messages of its session before it goes anyway. Above the
#: time a dead worker's message takes to come back (the broker's visibility timeout plus its restore
#: sweep), so the order holds through a worker's death, and bounded, so a lost message holds nobody up.
TURN_WAIT_LIMIT_SECONDS = 40.0
#: How long a reply waits for the reply to its session's previous message before it goes out anyway.
#: Several deliverers drain a reply queue at once; the earlier reply is nearly always milliseconds away.
REPLY_ORDER_WAIT_SECONDS = 2.0


class Turn(StrEnum):
    """Whether a message may take its session's turn now."""

    GO = "go"  # the lock is taken and it is this message's turn
    WAIT = "wait"  # an earlier message of the session is still in flight
    STALE = "stale"  # this message was handled already (a redelivery)


def past_skipped(mark: int, skipped: Container[int]) -> int:
    """``mark`` (the last number done or delivered) moved past the skipped numbers that follow it."""
    while mark + 1 in skipped:
        mark += 1
    return mark


def decide_turn(seq: int, done: int, skipped: Container[int], locked: bool, force: bool) -> Turn:
    """May message ``seq`` take the turn, given the last number ``done`` and whether the lock is held?

    ``force`` lets a message that waited past ``TURN_WAIT_LIMIT_SECONDS`` pass earlier numbers, never the lock.
    A message without a place (``seq`` 0) only needs the lock.
    """
    if locked:
        return Turn.WAIT
    if seq and seq <= done:
        return Turn.STALE
    if seq and not force and seq > past_skipped(done, skipped) + 1:
        return Turn.WAIT
    return Turn.GO


def may_deliver(seq: int, delivered: int, skipped: Container[int], force: bool) -> bool:
    """May the reply to message ``seq`` go out, given the last number ``delivered`` in its session?"""
    return force or not seq or seq <= past_skipped(delivered, skipped) + 1


def retry_delay(attempt: int, waited_seconds: float, limit_seconds: float) -> float | None:
    """Seconds until a waiting message (or reply) tries again, or None once it has waited ``limit_seconds``."""
    if waited_seconds >= limit_seconds:
        return None
    return min(TURN_RETRY_FIRST_SECONDS * 2**attempt, TURN_RETRY_MAX_SECONDS)
