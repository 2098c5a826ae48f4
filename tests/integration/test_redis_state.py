"""One contract for ``Coordination`` and ``ReplyStream``: the in-process versions and the Redis ones.

Every test here runs against both ``MemoryCoordination``/``MemoryReplyStream`` and
``RedisCoordination``/``RedisReplyStream`` on the real local Redis (database 13, flushed first).
"""

from __future__ import annotations

import itertools
import os
import queue
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from unittest.mock import ANY

import pytest
import redis
from support import eventually

from adapters.redis_state import RedisCoordination, RedisReplyStream, connect
from adapters.state import (
    Coordination,
    EarlierReplyPending,
    MemoryCoordination,
    MemoryReplyStream,
    Registration,
    ReplyStream,
    SkippedNumbers,
    Stalled,
    Turn,
    cursor_key,
)
from pipeline.envelope import Reply, new_id

REDIS_URL = os.environ.get("TEST_REDIS_STATE_URL", "redis://127.0.0.1:6379/13")
TTL = 600
LOCK_MS = 60_000
DEADLINE = 10.0


@dataclass
class Stores:
    kind: str
    coordination: Coordination
    replies: ReplyStream
    client: redis.Redis | None = None


def _redis_stores() -> Iterator[Stores]:
    client = connect(REDIS_URL)
    subscriber = connect(REDIS_URL, max_connections=2)
    client.flushdb()
    try:
        yield Stores("redis", RedisCoordination(client), RedisReplyStream(client, subscriber), client)
    finally:
        client.flushdb()
        client.close()
        subscriber.close()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.servers)])
def stores(request: pytest.FixtureRequest) -> Iterator[Stores]:
    if request.param == "memory":
        # Sweeping on every call, so expiry shows at once as it does on Redis.
        skipped = SkippedNumbers()
        yield Stores(
            "memory", MemoryCoordination(skipped, sweep_seconds=0), MemoryReplyStream(skipped, sweep_seconds=0)
        )
    else:
        yield from _redis_stores()


@pytest.fixture
def redis_stores() -> Iterator[Stores]:
    yield from _redis_stores()


def reply(session_id: str, text: str = "好的", message_id: str | None = None, seq: int = 0) -> Reply:
    return Reply(message_id=message_id or new_id(), session_id=session_id, channel="web", text=text, skill="time",
                 user_id="alice", actions=({"type": "open", "url": "https://example.org/文档"},), seq=seq)  # fmt: skip


def session() -> str:
    return f"s-{uuid.uuid4().hex[:12]}"


# -- registering messages -------------------------------------------------------------------------------------------


def test_register_message_assigns_increasing_sequence_numbers(stores: Stores) -> None:
    c, s = stores.coordination, session()
    first = c.register_message("alice", s, "m1", None, TTL)
    assert first == Registration("ok", "m1", s, 1)
    second = c.register_message("alice", s, "m2", "c-2", TTL)
    assert second == Registration("ok", "m2", s, 2)
    assert c.register_message("alice", s, "m3", None, TTL).seq == 3
    assert c.session_owner(s) == "alice"
    # Another session counts on its own.
    other = session()
    assert c.register_message("alice", other, "m4", None, TTL) == Registration("ok", "m4", other, 1)


def test_duplicate_client_msg_id_returns_the_first_ids(stores: Stores) -> None:
    c, s = stores.coordination, session()
    assert c.register_message("alice", s, "m1", "client-1", TTL).status == "ok"
    again = c.register_message("alice", s, "m1-resent", "client-1", TTL)
    assert again == Registration("duplicate", "m1", s, 0)
    # The resend took no sequence number.
    assert c.register_message("alice", s, "m2", "client-2", TTL).seq == 2
    # Keyed per user, not per session: a resend naming another session still finds the first message.
    elsewhere = c.register_message("alice", session(), "m1-elsewhere", "client-1", TTL)
    assert (elsewhere.status, elsewhere.message_id, elsewhere.session_id) == ("duplicate", "m1", s)


def test_client_msg_ids_of_different_users_do_not_collide(stores: Stores) -> None:
    c = stores.coordination
    a, b = session(), session()
    assert c.register_message("alice", a, "ma", "same-id", TTL).status == "ok"
    bob = c.register_message("bob", b, "mb", "same-id", TTL)
    assert bob == Registration("ok", "mb", b, 1)


@pytest.mark.parametrize(("first", "second"), [(("a:b", "c"), ("a", "b:c")), (("telegram:1", "2"), ("telegram", "1:2")),
                                              (("a%3Ab", "c"), ("a:b", "c"))])  # fmt: skip
def test_client_msg_ids_of_subjects_with_colons_do_not_collide(
    stores: Stores, first: tuple[str, str], second: tuple[str, str]
) -> None:
    c = stores.coordination
    a, b = session(), session()
    assert c.register_message(first[0], a, "m-first", first[1], TTL).status == "ok"
    other = c.register_message(second[0], b, "m-second", second[1], TTL)
    assert other == Registration("ok", "m-second", b, 1)
    # And each still finds its own message on a resend.
    again = c.register_message(second[0], session(), "m-again", second[1], TTL)
    assert (again.status, again.message_id) == ("duplicate", "m-second")


def test_a_withdrawn_last_message_gives_its_number_and_client_msg_id_back(stores: Stores) -> None:
    c, s = stores.coordination, session()
    assert c.register_message("alice", s, "m1", None, TTL).seq == 1
    refused = c.register_message("alice", s, "m2", "cm-w", TTL)
    c.withdraw_message("alice", refused, "cm-w", TTL)
    again = c.register_message("alice", s, "m3", "cm-w", TTL)
    assert (again.status, again.message_id, again.seq) == ("ok", "m3", 2)


def test_a_withdrawn_number_a_later_message_passed_holds_nothing_up(stores: Stores) -> None:
    c, r, s = stores.coordination, stores.replies, session()
    first = c.register_message("alice", s, "m1", None, TTL)
    refused = c.register_message("alice", s, "m2", None, TTL)
    later = c.register_message("alice", s, "m3", None, TTL)
    c.withdraw_message("alice", refused, None, TTL)
    assert c.acquire_turn(s, first.seq, "t1", LOCK_MS, False).turn is Turn.GO
    c.finish_turn(s, first.seq, "t1", TTL)
    r.append(reply(s, message_id="m1", seq=first.seq), TTL, force=False)
    # Number 2 never reached the queue: 3 goes next, without waiting for a deadline.
    assert c.acquire_turn(s, later.seq, "t3", LOCK_MS, False).turn is Turn.GO
    assert r.append(reply(s, message_id="m3", seq=later.seq), TTL, force=False)


def test_another_users_session_is_forbidden(stores: Stores) -> None:
    c, s = stores.coordination, session()
    c.register_message("alice", s, "m1", None, TTL)
    assert c.register_message("mallory", s, "m2", None, TTL) == Registration("forbidden")
    assert c.register_message("mallory", s, "m3", "c-1", TTL).status == "forbidden"
    # Nothing changed: still alice's, and her next message is number 2.
    assert c.session_owner(s) == "alice"
    assert c.register_message("alice", s, "m4", None, TTL).seq == 2


def test_unknown_session_has_no_owner(stores: Stores) -> None:
    assert stores.coordination.session_owner(session()) is None


# -- dialogue state -------------------------------------------------------------------------------------------------


def test_state_is_saved_and_loaded(stores: Stores) -> None:
    c, s = stores.coordination, session()
    assert c.load_state(s) is None
    c.save_state(s, '{"pending": {"skill": "weather", "question": "哪个城市？"}}', TTL)
    assert c.load_state(s) == '{"pending": {"skill": "weather", "question": "哪个城市？"}}'
    c.save_state(s, "{}", TTL)
    assert c.load_state(s) == "{}"


# -- turns ------------------------------------------------------------------------------------------------------------


def test_turns_go_in_sequence_order(stores: Stores) -> None:
    c, s = stores.coordination, session()
    # Message 2 arrived first: it waits for message 1.
    assert c.acquire_turn(s, 2, "t2", LOCK_MS, False).turn is Turn.WAIT
    assert c.acquire_turn(s, 1, "t1", LOCK_MS, False).turn is Turn.GO
    # While 1 holds the turn, nobody else gets it, not even a redelivery of 1.
    assert c.acquire_turn(s, 2, "t2", LOCK_MS, False).turn is Turn.WAIT
    assert c.acquire_turn(s, 1, "t1-again", LOCK_MS, False).turn is Turn.WAIT
    c.finish_turn(s, 1, "t1", TTL)
    assert c.acquire_turn(s, 2, "t2", LOCK_MS, False).turn is Turn.GO
    c.finish_turn(s, 2, "t2", TTL)
    assert c.acquire_turn(s, 3, "t3", LOCK_MS, False).turn is Turn.GO
    c.finish_turn(s, 3, "t3", TTL)


def test_a_finished_message_is_stale(stores: Stores) -> None:
    c, s = stores.coordination, session()
    assert c.acquire_turn(s, 1, "t1", LOCK_MS, False).turn is Turn.GO
    c.finish_turn(s, 1, "t1", TTL)
    assert c.acquire_turn(s, 1, "redelivered", LOCK_MS, False).turn is Turn.STALE
    assert c.acquire_turn(s, 1, "redelivered", LOCK_MS, True).turn is Turn.STALE
    # Finishing an older message later does not move "done" back.
    assert c.acquire_turn(s, 2, "t2", LOCK_MS, False).turn is Turn.GO
    c.finish_turn(s, 2, "t2", TTL)
    c.finish_turn(s, 1, "late", TTL)
    assert c.acquire_turn(s, 2, "again", LOCK_MS, False).turn is Turn.STALE
    assert c.acquire_turn(s, 3, "t3", LOCK_MS, False).turn is Turn.GO


def test_force_skips_a_lost_earlier_message_but_not_a_held_lock(stores: Stores) -> None:
    c, s = stores.coordination, session()
    assert c.acquire_turn(s, 3, "t3", LOCK_MS, False).turn is Turn.WAIT
    assert c.acquire_turn(s, 3, "t3", LOCK_MS, True).turn is Turn.GO
    # A held lock is respected even when forced: two workers never run one session at once.
    assert c.acquire_turn(s, 4, "t4", LOCK_MS, True).turn is Turn.WAIT
    c.finish_turn(s, 3, "t3", TTL)
    assert c.acquire_turn(s, 1, "t1", LOCK_MS, False).turn is Turn.STALE
    assert c.acquire_turn(s, 4, "t4", LOCK_MS, False).turn is Turn.GO


def test_finishing_with_seq_zero_releases_without_marking_done(stores: Stores) -> None:
    c, s = stores.coordination, session()
    assert c.acquire_turn(s, 1, "t1", LOCK_MS, False).turn is Turn.GO
    c.finish_turn(s, 0, "t1", TTL)  # the handling failed: the retry must not be "stale"
    assert c.acquire_turn(s, 1, "retry", LOCK_MS, False).turn is Turn.GO
    c.finish_turn(s, 1, "retry", TTL)
    assert c.acquire_turn(s, 1, "again", LOCK_MS, False).turn is Turn.STALE


def test_only_the_holder_releases_the_lock(stores: Stores) -> None:
    c, s = stores.coordination, session()
    assert c.acquire_turn(s, 1, "holder", LOCK_MS, False).turn is Turn.GO
    c.finish_turn(s, 0, "someone-else", TTL)
    assert c.acquire_turn(s, 1, "other", LOCK_MS, False).turn is Turn.WAIT
    c.finish_turn(s, 0, "holder", TTL)
    assert c.acquire_turn(s, 1, "other", LOCK_MS, False).turn is Turn.GO


def test_a_turn_that_outlived_its_lock_does_not_overwrite_the_next_turns_state(stores: Stores) -> None:
    c, s = stores.coordination, session()
    assert c.acquire_turn(s, 1, "slow", 50, False).turn is Turn.GO
    # The slow turn's lock runs out; its redelivery takes the turn and saves its state.
    eventually(lambda: c.acquire_turn(s, 1, "redelivery", LOCK_MS, False).turn is Turn.GO, DEADLINE, what="the lock")
    assert c.finish_turn(s, 1, "redelivery", TTL, '{"by": "redelivery"}') is True
    # The slow turn finishes late: it still marks the message done, but its state is dropped.
    assert c.finish_turn(s, 1, "slow", TTL, '{"by": "slow"}') is False
    assert c.load_state(s) == '{"by": "redelivery"}'
    assert c.acquire_turn(s, 1, "again", LOCK_MS, False).turn is Turn.STALE


def test_the_holder_renews_its_lock_and_nobody_else_can(stores: Stores) -> None:
    c, s = stores.coordination, session()
    assert c.acquire_turn(s, 1, "holder", 300, False).turn is Turn.GO
    assert c.renew_turn(s, "someone-else", LOCK_MS) is False
    assert c.renew_turn(s, "holder", LOCK_MS) is True
    time.sleep(0.4)  # past the first lifetime: only the renewal keeps it
    assert c.acquire_turn(s, 1, "other", LOCK_MS, False).turn is Turn.WAIT
    assert c.finish_turn(s, 1, "holder", TTL) is True
    assert c.renew_turn(s, "holder", LOCK_MS) is False


def test_a_number_passed_over_holds_no_turn_and_no_reply_up(stores: Stores) -> None:
    c, r, s = stores.coordination, stores.replies, session()
    assert c.acquire_turn(s, 1, "t1", LOCK_MS, False).turn is Turn.GO
    c.finish_turn(s, 1, "t1", TTL)
    # Message 2 was given up on (dead-lettered): message 3 goes at once, and so does its reply.
    assert c.acquire_turn(s, 3, "t3", LOCK_MS, False).turn is Turn.WAIT
    c.pass_over(s, 2, TTL)
    assert c.acquire_turn(s, 3, "t3", LOCK_MS, False).turn is Turn.GO
    r.append(reply(s, "一", seq=1), TTL)
    assert r.append(reply(s, "三", seq=3), TTL, force=False) is not None


def test_a_lost_workers_lock_expires(stores: Stores) -> None:
    c, s = stores.coordination, session()
    assert c.acquire_turn(s, 1, "lost", 50, False).turn is Turn.GO
    # Nobody finishes it; the lock runs out and the redelivery gets the turn.
    eventually(
        lambda: c.acquire_turn(s, 1, "redelivery", LOCK_MS, False).turn is Turn.GO, DEADLINE, what="the lock to expire"
    )


def test_turns_of_different_sessions_are_independent(stores: Stores) -> None:
    c, a, b = stores.coordination, session(), session()
    assert c.acquire_turn(a, 1, "a1", LOCK_MS, False).turn is Turn.GO
    assert c.acquire_turn(b, 1, "b1", LOCK_MS, False).turn is Turn.GO


def test_delivery_counter_counts_per_key(stores: Stores) -> None:
    c = stores.coordination
    key = f"assistant.dispatch:{new_id()}"
    assert [c.count_delivery(key, 60) for _ in range(3)] == [1, 2, 3]
    assert c.count_delivery(f"assistant.dispatch:{new_id()}", 60) == 1


# -- skills ---------------------------------------------------------------------------------------------------------


def test_skills_version_bumps(stores: Stores) -> None:
    c = stores.coordination
    assert c.skills_version() == 0
    assert c.bump_skills_version() == 1
    assert c.bump_skills_version() == 2
    assert c.skills_version() == 2


def test_catalog_round_trip(stores: Stores) -> None:
    c = stores.coordination
    assert c.catalog() is None
    c.set_catalog('[{"name": "time", "description": "查询当前时间"}]')
    assert c.catalog() == '[{"name": "time", "description": "查询当前时间"}]'
    c.set_catalog("[]")
    assert c.catalog() == "[]"


def test_ping(stores: Stores) -> None:
    stores.coordination.ping()
    stores.replies.ping()


# -- replies ----------------------------------------------------------------------------------------------------------


def test_append_delivers_each_message_at_most_once(stores: Stores) -> None:
    r, s = stores.replies, session()
    first = reply(s, "第一次")
    cursor = r.append(first, TTL)
    assert cursor
    # A redelivered reply to the same message is dropped, even with other text.
    assert r.append(reply(s, "第二次", message_id=first.message_id), TTL) is None
    assert r.read_after(s, None, 100) == [(cursor, first)]
    assert r.reply_for(first.message_id) == (cursor, first)


def test_read_after_returns_replies_in_order_after_the_cursor(stores: Stores) -> None:
    r, s = stores.replies, session()
    sent = [reply(s, f"回复 {i}") for i in range(5)]
    cursors = [r.append(x, TTL) for x in sent]
    assert all(cursors)
    assert [cursor_key(c) for c in cursors] == sorted({cursor_key(c) for c in cursors})  # type: ignore[arg-type]

    assert r.read_after(s, None, 100) == list(zip(cursors, sent, strict=True))
    assert r.read_after(s, cursors[1], 100) == list(zip(cursors[2:], sent[2:], strict=True))
    assert r.read_after(s, cursors[-1], 100) == []
    assert r.read_after(s, cursors[0], 2) == list(zip(cursors[1:3], sent[1:3], strict=True))
    # A cursor from before everything reads everything.
    assert [x for _, x in r.read_after(s, "0-0", 100)] == sent


def test_many_quick_appends_get_strictly_increasing_cursors(stores: Stores) -> None:
    r, s = stores.replies, session()
    cursors = [r.append(reply(s, str(i)), TTL) for i in range(200)]
    keys = [cursor_key(c) for c in cursors]  # type: ignore[arg-type]
    assert all(a < b for a, b in itertools.pairwise(keys))
    assert [x.text for _, x in r.read_after(s, None, 1000)] == [str(i) for i in range(200)]


def test_sessions_have_separate_streams(stores: Stores) -> None:
    r, a, b = stores.replies, session(), session()
    ra, rb = reply(a, "给 A"), reply(b, "给 B")
    ca, cb = r.append(ra, TTL), r.append(rb, TTL)
    assert r.read_after(a, None, 100) == [(ca, ra)]
    assert r.read_after(b, None, 100) == [(cb, rb)]
    assert r.read_after(session(), None, 100) == []


def test_a_reply_waits_for_the_reply_to_the_previous_message_unless_forced(stores: Stores) -> None:
    r, s = stores.replies, session()
    first, second, third, fourth = (reply(s, f"第{i}条", seq=i) for i in (1, 2, 3, 4))
    with pytest.raises(EarlierReplyPending):
        r.append(second, TTL, force=False)
    assert r.read_after(s, None, 100) == []
    r.append(first, TTL, force=False)
    r.append(second, TTL, force=False)
    # Forced past a lost reply: the one after it need not wait, and the late one still goes out once.
    r.append(fourth, TTL, force=True)
    assert r.append(third, TTL, force=False)
    assert r.append(third, TTL, force=False) is None
    assert [x.seq for _, x in r.read_after(s, None, 100)] == [1, 2, 4, 3]
    # Replies without a place in a session (seq 0) never wait.
    assert r.append(reply(session(), seq=0), TTL, force=False)


def test_a_session_whose_counter_expired_starts_its_order_again(redis_stores: Stores) -> None:
    stores = redis_stores
    assert stores.client is not None
    c, r, s = stores.coordination, stores.replies, session()
    for i in (1, 2):
        assert c.register_message("alice", s, f"m{i}", None, TTL).seq == i
        assert c.acquire_turn(s, i, "t", LOCK_MS, False).turn is Turn.GO
        c.finish_turn(s, i, "t", TTL)
        r.append(reply(s, message_id=f"m{i}", seq=i), TTL, force=False)
    stores.client.delete(f"sess:{s}:seq")
    # The counter begins at 1 again; the new first message is neither stale nor kept waiting.
    assert c.register_message("alice", s, "m3", None, TTL).seq == 1
    assert c.acquire_turn(s, 1, "t", LOCK_MS, False).turn is Turn.GO
    c.finish_turn(s, 1, "t", TTL)
    assert r.append(reply(s, message_id="m3", seq=1), TTL, force=False)


def test_everything_of_an_idle_session_expires_with_its_ttl(stores: Stores) -> None:
    c, r, s = stores.coordination, stores.replies, session()
    first = c.register_message("alice", s, "m-exp", "cm-exp", ttl=1)
    assert c.acquire_turn(s, 1, "t", LOCK_MS, False).turn is Turn.GO
    c.finish_turn(s, 1, "t", 1, "{}")
    c.count_delivery("k-exp", ttl=1)
    answer = reply(s, message_id="m-exp", seq=1)
    r.append(answer, 1)
    assert (c.session_owner(s), c.load_state(s), r.reply_for("m-exp")) == ("alice", "{}", (ANY, answer))
    time.sleep(1.3)
    assert (c.session_owner(s), c.load_state(s), r.reply_for("m-exp"), r.read_after(s, None, 10)) == (
        None, None, None, [])  # fmt: skip
    # The client_msg_id and the counter are forgotten too; the session starts again from its first message.
    again = c.register_message("alice", s, "m-new", "cm-exp", TTL)
    assert (first.status, again.status, again.seq) == ("ok", "ok", 1)
    assert c.count_delivery("k-exp", TTL) == 1


def test_reply_for_an_unanswered_message_is_none(stores: Stores) -> None:
    assert stores.replies.reply_for(new_id()) is None


def _wait_until_subscribed(stores: Stores, received: queue.Queue[tuple[str, Reply]]) -> None:
    """Append probes until one comes through: a Redis subscription is live only once the server has it.

    Probes go to a session of their own; the tests look only at their own session's replies.
    """
    probe_session = f"probe-{session()}"
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        stores.replies.append(reply(probe_session, "probe"), TTL)
        try:
            received.get(timeout=0.2)
            return
        except queue.Empty:
            continue
    raise AssertionError("the subscription never received anything")


def _of_session(received: queue.Queue[tuple[str, Reply]], session_id: str) -> list[tuple[str, Reply]]:
    """What is in the queue now for ``session_id``."""
    found = []
    while not received.empty():
        cursor, item = received.get_nowait()
        if item.session_id == session_id:
            found.append((cursor, item))
    return found


def _next_of_session(received: queue.Queue[tuple[str, Reply]], session_id: str) -> tuple[str, Reply]:
    deadline = time.monotonic() + DEADLINE
    while True:
        cursor, item = received.get(timeout=max(0.0, deadline - time.monotonic()))
        if item.session_id == session_id:
            return cursor, item


def test_subscribers_receive_appended_replies(stores: Stores) -> None:
    r, s = stores.replies, session()
    received: queue.Queue[tuple[str, Reply]] = queue.Queue()
    subscription = r.subscribe(lambda cursor, x: received.put((cursor, x)), lambda: None)
    try:
        _wait_until_subscribed(stores, received)
        first, second = reply(s, "一"), reply(s, "二")
        c1, c2 = r.append(first, TTL), r.append(second, TTL)
        assert r.append(reply(s, "dup", message_id=first.message_id), TTL) is None
        got = [_next_of_session(received, s), _next_of_session(received, s)]
        assert got == [(c1, first), (c2, second)]
        # A marker appended after the duplicate arrives next: the duplicate was never announced.
        marker = reply(s, "marker")
        c3 = r.append(marker, TTL)
        assert _next_of_session(received, s) == (c3, marker)
    finally:
        subscription.close()


def test_a_closed_subscription_hears_nothing_more(stores: Stores) -> None:
    r, s = stores.replies, session()
    closed: queue.Queue[tuple[str, Reply]] = queue.Queue()
    live: queue.Queue[tuple[str, Reply]] = queue.Queue()
    subscription = r.subscribe(lambda cursor, x: closed.put((cursor, x)), lambda: None)
    _wait_until_subscribed(stores, closed)
    subscription.close()
    other = r.subscribe(lambda cursor, x: live.put((cursor, x)), lambda: None)
    try:
        _wait_until_subscribed(stores, live)
        late = reply(s, "迟到")
        cursor = r.append(late, TTL)
        assert _next_of_session(live, s) == (cursor, late)
    finally:
        other.close()
    assert _of_session(closed, s) == []


# -- Redis only -------------------------------------------------------------------------------------------------------


@pytest.mark.servers
def test_redis_keys_expire_with_the_session_ttl(redis_stores: Stores) -> None:
    stores = redis_stores
    assert stores.client is not None
    c, r, s = stores.coordination, stores.replies, session()
    c.register_message("alice", s, "m1", "cm-1", TTL)
    c.save_state(s, "{}", TTL)
    assert c.acquire_turn(s, 1, "t", LOCK_MS, False).turn is Turn.GO
    c.finish_turn(s, 1, "t", TTL)
    r.append(reply(s, message_id="m1", seq=1), TTL)
    c.count_delivery("k", 60)
    for key in (f"sess:{s}:owner", f"sess:{s}:seq", f"sess:{s}:state", f"sess:{s}:done", "cmid:alice:cm-1",
                f"replies:{s}", "reply:m1", f"sess:{s}:delivered"):  # fmt: skip
        assert 0 < stores.client.ttl(key) <= TTL, key
    assert 0 < stores.client.ttl("count:k") <= 60
    # The lock is gone once finished.
    assert stores.client.exists(f"sess:{s}:lock") == 0


@pytest.mark.servers
def test_an_accepted_message_is_kept_until_its_reply_goes_out_and_rescued_while_its_session_is_idle(
    redis_stores: Stores,
) -> None:
    c, r, s = redis_stores.coordination, redis_stores.replies, session()
    draft = '{"v": 1, "message_id": "m-lost", "seq": 0}'
    assert c.register_message("alice", s, "m-lost", None, TTL, envelope_json=draft).seq == 1
    # Not due before its age; due after it, with its place in the session; then not again until it ages again.
    assert c.rescue_stalled(60, 10, 3, every=0.001) == []
    time.sleep(1.1)
    assert c.rescue_stalled(1, 10, 3, every=0.001) == [Stalled("m-lost", draft, 1)]
    assert c.rescue_stalled(1, 10, 3, every=0.001) == []
    # While the session's turn is held, the message is waiting, not lost.
    time.sleep(1.1)
    assert c.acquire_turn(s, 1, "t", LOCK_MS, False).turn is Turn.GO
    assert c.rescue_stalled(1, 10, 3, every=0.001) == []
    c.finish_turn(s, 1, "t", TTL)
    # Its reply goes out: it is forgotten.
    r.append(reply(s, message_id="m-lost", seq=1), TTL)
    time.sleep(1.1)
    assert c.rescue_stalled(1, 10, 3, every=0.001) == []


@pytest.mark.servers
def test_a_rescue_is_given_up_after_its_limit_and_a_withdrawn_message_is_never_rescued(redis_stores: Stores) -> None:
    c, s = redis_stores.coordination, session()
    assert c.register_message("alice", s, "m-1", None, TTL, envelope_json="{}").status == "ok"
    withdrawn = c.register_message("alice", s, "m-2", "cm-2", TTL, envelope_json="{}")
    c.withdraw_message("alice", withdrawn, "cm-2", TTL)
    rescued = []
    for _ in range(3):
        time.sleep(1.1)
        rescued.append([item.message_id for item in c.rescue_stalled(1, 10, 2, every=0.001)])
    assert rescued == [["m-1"], ["m-1"], []]


@pytest.mark.servers
def test_one_worker_sweeps_at_a_time(redis_stores: Stores) -> None:
    c, s = redis_stores.coordination, session()
    assert c.register_message("alice", s, "m-1", None, TTL, envelope_json="{}").status == "ok"
    time.sleep(1.1)
    first = c.rescue_stalled(1, 10, 3, every=5)
    assert [item.message_id for item in first] == ["m-1"]
    time.sleep(1.1)
    assert c.rescue_stalled(1, 10, 3, every=5) == []  # another worker's sweep within the same 5 s
