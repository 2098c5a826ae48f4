"""Generated replies on the distributed layout: Celery on the Redis broker, Redis reply streams and the partials'
pub/sub channel, PostgreSQL; the workers build their own adapters, so partials reach the gateway only through Redis."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from fakes.openai_server import FakeOpenAI
from inference_support import (
    MODEL_TIMEOUT,
    REDIS,
    UNAVAILABLE_EN,
    UNMATCHED_EN,
    UNMATCHED_ZH,
    Api,
    EventReader,
    flush,
    new_session,
    running,
)

pytestmark = pytest.mark.servers

BROKER_DB = 2
STATE_DB = 4
TOKENS = ("Once", " upon", " a", " time", ",", " a", " cat", " slept", ".")


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(tokens=TOKENS, pace=0.02) as server:
        yield server


@pytest.fixture(scope="module")
def api(fake: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory, serve: Any, postgres_url: str) -> Iterator[Api]:
    flush(BROKER_DB, STATE_DB)
    servers = {"BROKER_URL": f"{REDIS}/{BROKER_DB}", "REDIS_URL": f"{REDIS}/{STATE_DB}", "DATABASE_URL": postgres_url}
    try:
        with running(serve, tmp_path_factory.mktemp("redis"), fake.endpoint, servers) as pipeline:
            assert pipeline.celery_app.runtime.adapters is not pipeline.adapters
            yield pipeline
    finally:
        flush(BROKER_DB, STATE_DB)


def opened(api: Api) -> tuple[str, str]:
    session = new_session()
    first = api.say("现在几点", session)
    assert first["skill"] == "time"
    return session, first["id"]


def test_partials_travel_through_redis_before_the_reply(api: Api, fake: FakeOpenAI) -> None:
    session, cursor = opened(api)
    stream = EventReader(api, session, after=cursor)
    try:
        accepted = api.post(UNMATCHED_EN, session, wait=0)
        partials, reply = stream.until_reply(accepted["message_id"])
    finally:
        stream.close()
    assert reply.data["text"] == "".join(TOKENS).strip() and reply.data["skill"] == "model"
    assert [p.data["index"] for p in partials] == list(range(len(TOKENS)))
    assert "".join(p.data["delta"] for p in partials).strip() == reply.data["text"]
    assert all(p.id is None for p in partials)


def test_two_streams_of_one_session_both_get_the_partials(api: Api) -> None:
    session, cursor = opened(api)
    first, second = EventReader(api, session, after=cursor), EventReader(api, session, after=cursor)
    try:
        accepted = api.post(UNMATCHED_ZH, session, wait=0)
        got = [reader.until_reply(accepted["message_id"]) for reader in (first, second)]
    finally:
        first.close()
        second.close()
    deltas = [[p.data["delta"] for p in partials] for partials, _ in got]
    assert deltas[0] == deltas[1] == list(TOKENS)


def test_wait_gets_the_final_text_and_the_transcript_has_it_once(api: Api, fake: FakeOpenAI) -> None:
    session, _ = opened(api)
    reply = api.say(UNMATCHED_EN, session)
    assert reply["text"] == "".join(TOKENS).strip()
    fake.tokens = ("It", " was", " black", ".")
    api.say("what colour was it", session)
    messages = fake.requests[-1].body["messages"]
    assert [m["content"] for m in messages[-3:]] == [UNMATCHED_EN, reply["text"], "what colour was it"]
    entries = api.transcript(session)
    assert [e["text"] for e in entries if e["kind"] == "reply" and e["message_id"] == reply["message_id"]] == [
        reply["text"]
    ]
    fake.tokens = TOKENS


def test_a_failing_model_gets_the_unavailable_reply_in_time(api: Api, fake: FakeOpenAI) -> None:
    session, _ = opened(api)
    fake.fail_status = 500
    try:
        started = time.monotonic()
        reply = api.say(UNMATCHED_EN, session)
    finally:
        fake.fail_status = None
    assert (reply["text"], reply["error"]) == (UNAVAILABLE_EN, "model_unavailable")
    assert time.monotonic() - started < MODEL_TIMEOUT + 1.5
    # The worker counts it in its own process: a distributed gateway's /metrics does not show worker counters.
    counted = api.celery_app.runtime.adapters.metrics.registry.get_sample_value(
        "assistant_model_errors_total", {"backend": "openai"}
    )
    assert counted is not None and counted >= 1
