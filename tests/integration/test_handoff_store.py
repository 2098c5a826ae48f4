"""The handoff stores, in-process and on the real Redis, held to the same transitions; racing operators."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest
import redis

from adapters.handoffs import HandoffStore, MemoryHandoffs, ReleaseOutcome, TakeOutcome
from adapters.redis_handoffs import RedisHandoffs
from adapters.redis_state import connect
from pipeline.handoff import HandoffStatus

REDIS_URL = "redis://127.0.0.1:6379/12"
TTL = 3600


def _flush() -> None:
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    client.close()


@pytest.fixture(scope="module")
def redis_clients() -> Iterator[list[redis.Redis]]:
    _flush()
    clients = [connect(REDIS_URL, name=f"handoff-test-{i}") for i in range(2)]
    yield clients
    for client in clients:
        client.close()
    _flush()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.servers)])
def stores(request: pytest.FixtureRequest) -> list[HandoffStore]:
    """Two views of one store, as two gateways would have: the same object in memory, two clients on Redis."""
    if request.param == "memory":
        store = MemoryHandoffs()
        return [store, store]
    clients: list[redis.Redis] = request.getfixturevalue("redis_clients")
    return [RedisHandoffs(client) for client in clients]


def session() -> str:
    return f"s-{uuid.uuid4().hex}"


def asked(store: HandoffStore, session_id: str, handoff_id: str = "h1") -> None:
    handoff = store.request(session_id, handoff_id, "visitor:demo:v1", "zh", "转人工", TTL)
    assert handoff is not None and handoff.status is HandoffStatus.WAITING


class TestTransitions:
    def test_request_take_release(self, stores: list[HandoffStore]) -> None:
        store = stores[0]
        sid = session()
        assert store.get(sid) is None
        assert store.take(sid, "op1", TTL).outcome == TakeOutcome.NOT_FOUND
        asked(store, sid)
        handoff = store.get(sid)
        assert handoff is not None
        assert (handoff.status, handoff.handoff_id, handoff.agent) == (HandoffStatus.WAITING, "h1", None)
        assert (handoff.user_id, handoff.language, handoff.last_text) == ("visitor:demo:v1", "zh", "转人工")
        # Asked again while waiting: held, not a second request; the same request (a redelivery) is given back.
        assert store.request(sid, "h2", "visitor:demo:v1", "zh", "人工客服", TTL) is None
        again = store.request(sid, "h1", "visitor:demo:v1", "zh", "转人工", TTL)
        assert again is not None and again.handoff_id == "h1"

        taken = store.take(sid, "op1", TTL)
        assert (taken.outcome, taken.changed, taken.previous) == (TakeOutcome.TAKEN, True, HandoffStatus.WAITING)
        assert taken.handoff is not None
        assert (taken.handoff.status, taken.handoff.agent) == (HandoffStatus.ACTIVE, "op1")
        # Taking it again is harmless for its operator, refused for another.
        assert (store.take(sid, "op1", TTL).outcome, store.take(sid, "op1", TTL).changed) == (TakeOutcome.TAKEN, False)
        refused = store.take(sid, "op2", TTL)
        assert refused.outcome == TakeOutcome.ALREADY_TAKEN and refused.handoff is not None
        assert refused.handoff.agent == "op1"
        assert store.release(sid, "op2", TTL).outcome == ReleaseOutcome.NOT_YOURS

        released = store.release(sid, "op1", TTL)
        assert (released.outcome, released.previous) == (ReleaseOutcome.RELEASED, HandoffStatus.ACTIVE)
        assert released.handoff is not None and released.handoff.status is HandoffStatus.BOT
        assert store.release(sid, "op1", TTL).outcome == ReleaseOutcome.NOT_FOUND
        # Back with the bot, the visitor may ask again.
        asked(store, sid, "h3")

    def test_an_admin_releases_whoever_has_it(self, stores: list[HandoffStore]) -> None:
        store = stores[0]
        sid = session()
        asked(store, sid)
        store.take(sid, "op1", TTL)
        assert store.release(sid, None, TTL).outcome == ReleaseOutcome.RELEASED

    def test_time_out_only_ends_its_own_waiting_handoff(self, stores: list[HandoffStore]) -> None:
        store = stores[0]
        sid = session()
        asked(store, sid, "h1")
        assert store.time_out(sid, "other", TTL).changed is False
        first = store.time_out(sid, "h1", TTL)
        assert first.changed and first.handoff is not None and first.handoff.status is HandoffStatus.TIMED_OUT
        # Again (a redelivered task): the same handoff back, unchanged, so its reply can be sent again.
        repeat = store.time_out(sid, "h1", TTL)
        assert not repeat.changed and repeat.handoff is not None and repeat.handoff.status is HandoffStatus.TIMED_OUT
        # Timed out, a request is not a new handoff: the message is the left one.
        assert store.request(sid, "h2", "visitor:demo:v1", "zh", "转人工", TTL) is None
        left = store.leave_message(sid, "请回电话", TTL)
        assert left is not None and (left.status, left.last_text) == (HandoffStatus.MESSAGE_LEFT, "请回电话")
        assert store.leave_message(sid, "again", TTL) is None
        assert [h.session_id for h in store.listed() if h.session_id == sid] == [sid]
        # An operator may take a left message, and hand it back.
        assert store.take(sid, "op1", TTL).outcome == TakeOutcome.TAKEN
        assert store.release(sid, "op1", TTL).outcome == ReleaseOutcome.RELEASED

        taken = session()
        asked(store, taken, "h9")
        store.take(taken, "op1", TTL)
        assert store.time_out(taken, "h9", TTL).handoff.status is HandoffStatus.ACTIVE  # type: ignore[union-attr]

    def test_listing_and_version(self, stores: list[HandoffStore]) -> None:
        store, other = stores
        a, b, c = session(), session(), session()
        before = store.version()
        asked(store, a)
        assert other.version() > before
        asked(store, b)
        asked(store, c)
        store.take(b, "op1", TTL)
        store.release(c, "op1", TTL)  # a dismissed waiting session leaves the list
        mine = [h for h in other.listed() if h.session_id in (a, b, c)]
        assert [(h.session_id, h.status) for h in mine] == [(b, HandoffStatus.ACTIVE), (a, HandoffStatus.WAITING)]
        # A held message moves its session to the top, with its text.
        seen = other.version()
        noted = store.note(a, "在吗？", TTL)
        assert noted is not None and noted.last_text == "在吗？"
        assert other.wait_for_change(seen, 2.0) != seen
        assert [h.session_id for h in other.listed() if h.session_id in (a, b)] == [a, b]
        assert store.note(c, "not listed", TTL) is None
        # Waiting for a change that does not come returns the same version after the timeout.
        quiet = other.version()
        assert other.wait_for_change(quiet, 0.3) == quiet


class TestRacingOperators:
    def test_two_operators_taking_one_session_exactly_one_wins(self, stores: list[HandoffStore]) -> None:
        rounds = 50
        sessions = [session() for _ in range(rounds)]
        for sid in sessions:
            asked(stores[0], sid)
        outcomes: dict[str, list[str]] = {sid: [] for sid in sessions}
        barrier = threading.Barrier(2)

        def operator(index: int) -> None:
            store = stores[index]
            for sid in sessions:
                barrier.wait(5)  # both go for the same session at the same moment
                outcomes[sid].append(f"{store.take(sid, f'op{index}', TTL).outcome}:op{index}")

        threads = [threading.Thread(target=operator, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        for sid, results in outcomes.items():
            winners = [r for r in results if r.startswith("taken:")]
            assert len(winners) == 1, (sid, results)
            assert len([r for r in results if r.startswith("already_taken:")]) == 1, (sid, results)
            handoff = stores[0].get(sid)
            assert handoff is not None and handoff.agent == winners[0].split(":")[1]


class TestHeldWhileWaiting:
    def test_a_message_held_while_waiting_is_the_left_one_at_the_time_out(self, stores: list[HandoffStore]) -> None:
        store = stores[0]
        sid = session()
        asked(store, sid, "h1")
        assert store.note(sid, "我的订单还没到", TTL) is not None
        first = store.time_out(sid, "h1", TTL)
        assert first.outcome == "timed_out" and first.changed and first.handoff is not None
        assert (first.handoff.status, first.handoff.last_text) == (HandoffStatus.MESSAGE_LEFT, "我的订单还没到")
        assert [h.session_id for h in store.listed() if h.session_id == sid] == [sid]
        # Again (a redelivered task): unchanged, so its reply can be sent again.
        repeat = store.time_out(sid, "h1", TTL)
        assert (repeat.outcome, repeat.changed) == ("timed_out", False)
        assert repeat.handoff is not None and repeat.handoff.status is HandoffStatus.MESSAGE_LEFT
        # A new request after the session went back to the bot starts with nothing held.
        assert store.release(sid, None, TTL).outcome == ReleaseOutcome.RELEASED
        asked(store, sid, "h2")
        assert store.time_out(sid, "h2", TTL).handoff.status is HandoffStatus.TIMED_OUT  # type: ignore[union-attr]
