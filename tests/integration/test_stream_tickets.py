"""Stream tickets in both stores: the Redis one on the real local Redis (database 11, flushed first), the memory one
of embedded mode. A ticket is good once, until it expires, and the store never holds it in the clear."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import redis

from adapters.redis_state import connect
from adapters.tickets import PREFIX, MemoryStreamTickets, RedisStreamTickets, StreamTickets, TicketGrant, ticket_key

REDIS_URL = "redis://127.0.0.1:6379/11"
GRANT = TicketGrant("session:s-1", "visitor:site_k:v1", ("visitor",), "site_k")


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.servers)])
def tickets(request: pytest.FixtureRequest) -> Iterator[StreamTickets]:
    if request.param == "memory":
        yield MemoryStreamTickets()
        return
    client = connect(REDIS_URL, name="tickets-test")
    client.flushdb()
    try:
        yield RedisStreamTickets(client)
    finally:
        client.flushdb()
        client.close()


def test_a_ticket_is_redeemed_once(tickets: StreamTickets) -> None:
    ticket = tickets.issue(GRANT, 30)
    assert len(ticket) >= 40
    assert tickets.redeem(ticket) == GRANT
    assert tickets.redeem(ticket) is None


def test_tickets_are_each_their_own(tickets: StreamTickets) -> None:
    operator = TicketGrant("operator", "olga", ("agent",))
    first, second = tickets.issue(GRANT, 30), tickets.issue(operator, 30)
    assert first != second
    assert tickets.redeem(second) == operator
    assert tickets.redeem(first) == GRANT


def test_an_unknown_ticket_is_none(tickets: StreamTickets) -> None:
    assert tickets.redeem("nope") is None
    assert tickets.redeem("") is None


def test_a_ticket_expires(tickets: StreamTickets) -> None:
    ticket = tickets.issue(GRANT, 0.2)
    time.sleep(0.4)
    assert tickets.redeem(ticket) is None


def race(tickets: StreamTickets, ticket: str, redeemers: int = 8) -> list[TicketGrant | None]:
    """What ``redeemers`` threads redeeming ``ticket`` at the same instant got."""
    results: list[TicketGrant | None] = []
    barrier = threading.Barrier(redeemers)

    def redeem() -> None:
        barrier.wait()
        results.append(tickets.redeem(ticket))

    threads = [threading.Thread(target=redeem) for _ in range(redeemers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    return results


def test_two_redeemers_racing_for_one_ticket_one_wins(tickets: StreamTickets) -> None:
    for _ in range(20):
        results = race(tickets, tickets.issue(GRANT, 30))
        assert len(results) == 8
        assert [r for r in results if r is not None] == [GRANT]


@pytest.mark.servers
def test_redis_keeps_only_the_tickets_digest_with_its_expiry() -> None:
    client = connect(REDIS_URL, name="tickets-test")
    client.flushdb()
    try:
        ticket = RedisStreamTickets(client).issue(GRANT, 30)
        [key] = client.keys("*")
        assert key == ticket_key(ticket) and key.startswith(PREFIX)
        assert ticket not in key and ticket not in (client.get(key) or "")
        assert 29_000 < client.pttl(key) <= 30_000
        # A value another version wrote (or garbage) is no ticket.
        client.set(ticket_key("garbled"), "{not json", ex=30)
        assert RedisStreamTickets(client).redeem("garbled") is None
    finally:
        client.flushdb()
        client.close()


@pytest.mark.servers
def test_a_ticket_issued_by_one_gateway_is_redeemed_by_another() -> None:
    first = connect(REDIS_URL, name="gateway-1")
    second = connect(REDIS_URL, name="gateway-2")
    first.flushdb()
    try:
        ticket = RedisStreamTickets(first).issue(GRANT, 30)
        assert RedisStreamTickets(second).redeem(ticket) == GRANT
        assert RedisStreamTickets(first).redeem(ticket) is None
    finally:
        first.flushdb()
        first.close()
        second.close()


def test_memory_tickets_do_not_pile_up() -> None:
    tickets = MemoryStreamTickets()
    for _ in range(100):
        tickets.issue(GRANT, 0.01)
    time.sleep(0.05)
    tickets._next_sweep = 0.0  # the sweep runs once a minute; due now
    tickets.issue(GRANT, 30)
    assert len(tickets._tickets) == 1


def test_unreachable_redis_raises_a_connection_error() -> None:
    client = connect("redis://127.0.0.1:1/0", name="nowhere")
    with pytest.raises(redis.ConnectionError):
        RedisStreamTickets(client).issue(GRANT, 30)
    client.close()
