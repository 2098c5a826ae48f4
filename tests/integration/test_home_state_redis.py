"""Remembered entity states: the in-memory store and the Redis one (databases 10 and 11, flushed) keep the same
contract, and the Redis one is shared between clients (the MQTT edge writes, a dispatch worker reads)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis

from adapters.home_state import KEY_PREFIX, HomeState, MemoryHomeState, RedisHomeState
from adapters.redis_state import connect

REDIS_URL = os.environ.get("TEST_HOME_STATE_REDIS_URL", "redis://127.0.0.1:6379/10")
OTHER_DB_URL = os.environ.get("TEST_HOME_STATE_OTHER_REDIS_URL", "redis://127.0.0.1:6379/11")


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    client = connect(REDIS_URL)
    client.flushdb()
    try:
        yield client
    finally:
        client.flushdb()
        client.close()


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest, client: redis.Redis) -> HomeState:
    clock = iter(float(t) for t in range(1000, 2000)).__next__
    if request.param == "memory":
        return MemoryHomeState(clock)
    return RedisHomeState(client, clock=clock)


def test_nothing_remembered(store: HomeState) -> None:
    assert store.get("light.bedroom_lamp") is None


def test_the_last_state_wins(store: HomeState) -> None:
    store.set("light.bedroom_lamp", "on", {"brightness": 128, "color_name": "红色"})
    first = store.get("light.bedroom_lamp")
    assert first is not None and first.state == "on"
    assert first.attributes == {"brightness": 128, "color_name": "红色"} and first.updated_at == 1000.0
    store.set("light.bedroom_lamp", "off")
    second = store.get("light.bedroom_lamp")
    assert second is not None and second.state == "off" and second.attributes == {}  # attributes replaced
    assert second.updated_at == 1001.0
    assert store.get("light.other") is None


def test_shared_between_clients_with_no_expiry(client: redis.Redis) -> None:
    writer = RedisHomeState(client)
    reader_client = connect(REDIS_URL)
    try:
        writer.set("climate.bedroom_ac", "heat", {"current_temperature": 19.5})
        remembered = RedisHomeState(reader_client).get("climate.bedroom_ac")
        assert remembered is not None and remembered.attributes == {"current_temperature": 19.5}
        assert client.ttl(KEY_PREFIX + "climate.bedroom_ac") == -1
    finally:
        reader_client.close()


def test_an_unreadable_hash_is_ignored(client: redis.Redis) -> None:
    client.hset(KEY_PREFIX + "light.x", mapping={"state": "on", "attributes": "{not json"})
    assert RedisHomeState(client).get("light.x") is None


def test_databases_are_apart(client: redis.Redis) -> None:
    other = connect(OTHER_DB_URL)
    other.flushdb()
    try:
        RedisHomeState(client).set("switch.kettle", "on")
        assert RedisHomeState(other).get("switch.kettle") is None
        RedisHomeState(other, prefix="test:home:").set("switch.kettle", "off")
        assert other.exists("test:home:switch.kettle") == 1
        state = RedisHomeState(client).get("switch.kettle")
        assert state is not None and state.state == "on"
    finally:
        other.flushdb()
        other.close()
