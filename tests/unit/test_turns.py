"""The order rules of a session (``pipeline.turns``); both stores follow them (see test_redis_state.py)."""

from __future__ import annotations

import itertools

import pytest

from pipeline.turns import (
    TURN_RETRY_FIRST_SECONDS,
    TURN_RETRY_MAX_SECONDS,
    TURN_WAIT_LIMIT_SECONDS,
    Turn,
    decide_turn,
    may_deliver,
    past_skipped,
    retry_delay,
)


@pytest.mark.parametrize(
    ("mark", "skipped", "moved"),
    [(0, set(), 0), (0, {1}, 1), (0, {1, 2, 4}, 2), (3, {1, 2}, 3), (3, {4, 5}, 5), (3, {5}, 3)],
)
def test_past_skipped_moves_over_consecutive_skipped_numbers_only(mark: int, skipped: set[int], moved: int) -> None:
    assert past_skipped(mark, skipped) == moved


@pytest.mark.parametrize(
    ("seq", "done", "skipped", "locked", "force", "turn"),
    [
        (1, 0, set(), False, False, Turn.GO),  # the first message of a session
        (2, 1, set(), False, False, Turn.GO),  # the next one
        (3, 1, set(), False, False, Turn.WAIT),  # message 2 still in flight
        (3, 1, {2}, False, False, Turn.GO),  # message 2 withdrawn or given up
        (3, 1, set(), False, True, Turn.GO),  # waited past the limit: message 2 taken for lost
        (2, 1, set(), True, False, Turn.WAIT),  # the lock is held
        (2, 1, set(), True, True, Turn.WAIT),  # ... even when forced: one turn at a time
        (1, 1, set(), False, False, Turn.STALE),  # a redelivery of a finished message
        (1, 3, set(), False, True, Turn.STALE),
        (0, 5, set(), False, False, Turn.GO),  # a message without a place needs only the lock
    ],
)
def test_decide_turn(seq: int, done: int, skipped: set[int], locked: bool, force: bool, turn: Turn) -> None:
    assert decide_turn(seq, done, skipped, locked, force) is turn


@pytest.mark.parametrize(
    ("seq", "delivered", "skipped", "force", "may"),
    [(1, 0, set(), False, True), (2, 0, set(), False, False), (2, 0, {1}, False, True), (2, 0, set(), True, True),
     (1, 5, set(), False, True), (0, 0, set(), False, True)],
)  # fmt: skip
def test_may_deliver(seq: int, delivered: int, skipped: set[int], force: bool, may: bool) -> None:
    assert may_deliver(seq, delivered, skipped, force) is may


def test_a_waiting_message_backs_off_then_goes_past_the_limit() -> None:
    delays = [retry_delay(attempt, 0.0, TURN_WAIT_LIMIT_SECONDS) for attempt in range(12)]
    assert delays[0] == TURN_RETRY_FIRST_SECONDS
    assert all(a is not None and b is not None and a <= b for a, b in itertools.pairwise(delays))
    assert delays[-1] == TURN_RETRY_MAX_SECONDS
    assert retry_delay(3, TURN_WAIT_LIMIT_SECONDS, TURN_WAIT_LIMIT_SECONDS) is None
