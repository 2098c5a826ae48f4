"""The operator API under retries and sign-outs, through real HTTP in both layouts: a retried reply, take or release
sends its message once and never loses it; the operators' stream answers 503 rather than breaking when Redis is gone,
and its listing is capped and built once per change; streams end when the token behind them is revoked or expires,
or when the operator may no longer read the session (Redis DB 14 for the distributed layout).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from support import eventually
from test_handoff_http import DEADLINE, Pipeline, new_session, running_pipeline

from adapters.errors import BrokerUnreachable
from adapters.handoffs import HandoffStore
from adapters.redis_handoffs import RedisHandoffs
from adapters.tokens import issue_token
from ingress.messages import KEEPALIVE_SECONDS
from pipeline.envelope import Reply
from pipeline.settings import Settings
from tasks.forward import Forwarder

REDIS_DB = 14
#: The most sessions the operators' listing shows (docs/handoff.md).
LISTING_LIMIT = 100
#: A stream must end by the keep-alive after the change, and some slack.
ENDS_WITHIN = KEEPALIVE_SECONDS + 8


@pytest.fixture(scope="module", params=["embedded", pytest.param("distributed", marks=pytest.mark.servers)])
def pipeline(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, serve: Any
) -> Iterator[Pipeline]:
    root: Path = tmp_path_factory.mktemp(f"operator-retries-{request.param}")
    with running_pipeline(request, root, serve, {"HANDOFF_WAIT_SECONDS": "60"}, REDIS_DB, REDIS_DB) as api:
        yield api


def replies(pipeline: Pipeline, session: str) -> list[dict[str, Any]]:
    response = pipeline.request("GET", f"/api/sessions/{session}/replies", params={"wait": "0"})
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["replies"]
    return found


def handoff_notices(pipeline: Pipeline, session: str, status: str) -> list[dict[str, Any]]:
    return [r for r in replies(pipeline, session) if r["kind"] == "handoff" and r["handoff"]["status"] == status]


def read_to_end(response: requests.Response) -> list[str]:
    """The stream's event names, once the server has ended it (a read time-out fails the caller)."""
    assert response.status_code == 200, response.text
    names = []
    deadline = time.monotonic() + ENDS_WITHIN
    for line in response.iter_lines(chunk_size=None, decode_unicode=True):
        # Keep-alives would keep a stream that never ends going: give up at the deadline.
        assert time.monotonic() < deadline, f"the stream did not end; events: {names}"
        if line.startswith("event:"):
            names.append(line.partition(":")[2].strip())
    return names


def ticket(pipeline: Pipeline, path: str, token: str) -> str:
    response = pipeline.request("POST", path, user=None, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 201, response.text
    value: str = response.json()["ticket"]
    return value


def opened(pipeline: Pipeline, path: str, **kwargs: Any) -> requests.Response:
    return pipeline.request("GET", path, stream=True, timeout=(5, ENDS_WITHIN), **kwargs)


class FlakyNotices:
    """The broker refusing the first ``active`` and ``bot`` notices, as a Redis blip would (the gateway answers 503)."""

    def __init__(self) -> None:
        self.refused: list[str] = []
        self._lock = threading.Lock()

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        send = Forwarder.reply
        flaky = self

        def reply(forwarder: Forwarder, reply: Reply) -> None:
            status = (reply.handoff or {}).get("status")
            with flaky._lock:
                refuse = reply.kind == "handoff" and status in ("active", "bot") and status not in flaky.refused
                if refuse:
                    flaky.refused.append(str(status))
            if refuse:
                raise BrokerUnreachable("the broker did not answer")
            send(forwarder, reply)

        monkeypatch.setattr(Forwarder, "reply", reply)


class CountingListings:
    """The gateway's handoff store, counting how often the listing is read."""

    def __init__(self, store: HandoffStore) -> None:
        self.store = store
        self.listings = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def listed(self, limit: int | None = None) -> Any:
        self.listings += 1
        return self.store.listed(limit)


class TestRetries:
    def test_a_retried_operator_reply_is_sent_once(self, pipeline: Pipeline) -> None:
        session = new_session()
        pipeline.say("转人工", session)
        assert pipeline.operate("take", session).status_code == 200
        client_msg_id = str(uuid.uuid4())
        first = pipeline.operate("messages", session, json={"text": "您好，我是客服。", "client_msg_id": client_msg_id})
        again = pipeline.operate("messages", session, json={"text": "您好，我是客服。", "client_msg_id": client_msg_id})
        assert (first.status_code, again.status_code) == (202, 202), again.text
        assert first.json()["message_id"] == again.json()["message_id"]
        # Another reply, or the same words without a key, is a reply of its own.
        other = pipeline.operate("messages", session, json={"text": "请稍等。", "client_msg_id": str(uuid.uuid4())})
        bare = pipeline.operate("messages", session, json={"text": "请稍等。"})
        assert len({first.json()["message_id"], other.json()["message_id"], bare.json()["message_id"]}) == 3

        def answers() -> Any:
            found = [r for r in replies(pipeline, session) if r["role"] == "agent"]
            return found if len(found) >= 3 else None

        eventually(answers, DEADLINE, "the operator's replies")
        time.sleep(1)  # a second copy would have landed by now
        texts = [r["text"] for r in replies(pipeline, session) if r["role"] == "agent"]
        # Operator replies go out at once, through several deliverers: their order is not the point here.
        assert sorted(texts) == sorted(["您好，我是客服。", "请稍等。", "请稍等。"])
        assert pipeline.operate("release", session).status_code == 200

    @pytest.mark.parametrize("client_msg_id", [7, "", "x" * 200, "a b"])
    def test_a_bad_client_msg_id_is_refused(self, pipeline: Pipeline, client_msg_id: Any) -> None:
        session = new_session()
        pipeline.say("转人工", session)
        assert pipeline.operate("take", session).status_code == 200
        sent = pipeline.operate("messages", session, json={"text": "您好", "client_msg_id": client_msg_id})
        assert (sent.status_code, sent.json()["error"]) == (400, "bad_request"), sent.text
        assert pipeline.operate("release", session).status_code == 200

    def test_a_retried_take_or_release_still_tells_the_visitor(
        self, pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        session = new_session()
        pipeline.say("转人工", session)
        FlakyNotices().install(monkeypatch)
        # The store changed but the notice did not go out: the retry sends it.
        assert pipeline.operate("take", session).status_code == 503
        retried = pipeline.operate("take", session)
        assert (retried.status_code, retried.json()["agent"]) == (200, "op1")
        assert pipeline.operate("take", session).status_code == 200  # once more: the same notice, not another
        assert pipeline.operate("release", session).status_code == 503
        released = pipeline.operate("release", session)
        assert (released.status_code, released.json()) == (200, {"session_id": session, "status": "bot"})
        assert pipeline.operate("release", session).status_code == 200
        # Whoever did not have it is still told it is not handed off.
        assert pipeline.operate("release", session, user="op2").status_code == 404

        eventually(lambda: handoff_notices(pipeline, session, "bot"), DEADLINE, "the bot's notice")
        time.sleep(1)
        assert [n["handoff"]["agent"] for n in handoff_notices(pipeline, session, "active")] == ["op1"]
        assert len(handoff_notices(pipeline, session, "bot")) == 1


class TestOperatorStream:
    def test_it_answers_503_when_redis_is_gone(self, pipeline: Pipeline) -> None:
        gateway = pipeline.adapters[0]
        kept = gateway.handoffs
        gateway.handoffs = RedisHandoffs(redis.Redis(port=1, socket_connect_timeout=0.5, socket_timeout=0.5))
        try:
            for params in ({}, {"ticket": ticket(pipeline, "/api/operator/stream-ticket", pipeline.tokens["op1"])}):
                user = None if params else "op1"
                response = pipeline.request("GET", "/api/operator/events", user=user, params=params, timeout=10)
                assert response.status_code == 503, response.text
                assert response.json()["error"] == "service_unavailable"
        finally:
            gateway.handoffs = kept

    def test_the_listing_is_capped_and_built_once_per_change(self, pipeline: Pipeline) -> None:
        gateway = pipeline.adapters[0]
        store = gateway.handoffs
        ttl = 600
        for i in range(LISTING_LIMIT + 5):
            store.request(new_session(), f"h-{uuid.uuid4().hex}", f"visitor:demo:v{i}", "zh", "人工", ttl)
        newest = new_session()
        store.request(newest, f"h-{uuid.uuid4().hex}", "visitor:demo:last", "zh", "人工", ttl)
        listing = pipeline.listed()
        assert len(listing) == LISTING_LIMIT and newest in listing

        counting = CountingListings(store)
        gateway.handoffs = counting  # type: ignore[assignment]
        streams = [opened(pipeline, "/api/operator/events", user="op1") for _ in range(4)]
        try:
            lines = [s.iter_lines(chunk_size=None, decode_unicode=True) for s in streams]

            def next_listing(index: int) -> None:
                for line in lines[index]:
                    if line.startswith("event: sessions"):
                        return
                raise AssertionError("the stream ended")

            for i in range(4):
                next_listing(i)
            before = counting.listings
            # One change, four streams: one listing built, shared.
            session = new_session()
            store.request(session, f"h-{uuid.uuid4().hex}", "visitor:demo:one", "zh", "人工", ttl)
            with ThreadPoolExecutor(4) as pool:
                list(pool.map(next_listing, range(4)))
            assert counting.listings - before == 1
        finally:
            gateway.handoffs = store
            for s in streams:
                s.close()
        # Dismiss them all, for the other tests' listings.
        for session_id in list(pipeline.listed()):
            store.release(session_id, None, ttl)
        while listed := store.listed():
            for handoff in listed:
                store.release(handoff.session_id, None, ttl)


class TestStreamsEnd:
    def test_when_the_token_is_revoked_or_expires(self, pipeline: Pipeline) -> None:
        settings: Settings = pipeline.settings
        signing_out = issue_token(settings, "op3", ("agent",), 3600)
        expiring = issue_token(settings, "op4", ("agent",), 3)
        staying = issue_token(settings, "op5", ("agent",), 3600)
        session = new_session()
        pipeline.say("转人工", session)
        streams = [
            # The page's way: tickets bought with the token that then signs out.
            opened(pipeline, "/api/operator/events", user=None,
                   params={"ticket": ticket(pipeline, "/api/operator/stream-ticket", signing_out)}),
            opened(pipeline, f"/api/sessions/{session}/events", user=None,
                   params={"ticket": ticket(pipeline, f"/api/sessions/{session}/stream-ticket", signing_out)}),
            # A bearer token that expires while the stream is open.
            opened(pipeline, "/api/operator/events", user=None, headers={"Authorization": f"Bearer {expiring}"}),
        ]  # fmt: skip
        control = opened(pipeline, "/api/operator/events", user=None, headers={"Authorization": f"Bearer {staying}"})
        try:
            out = pipeline.request("POST", "/api/auth/logout", user=None,
                                   headers={"Authorization": f"Bearer {signing_out}"})  # fmt: skip
            assert out.status_code == 204, out.text
            started = time.monotonic()
            with ThreadPoolExecutor(len(streams)) as pool:
                ended = list(pool.map(read_to_end, streams))
            assert time.monotonic() - started < ENDS_WITHIN
            assert all(names[-1] == "closed" for names in ended), ended
            # A stream whose token is still good stays open: it sees the next change.
            lines = control.iter_lines(chunk_size=None, decode_unicode=True)
            assert pipeline.operate("take", session).status_code == 200
            for line in lines:
                if line.startswith("event: sessions") and '"active"' in next(lines):
                    break
        finally:
            for s in (*streams, control):
                s.close()
        assert pipeline.operate("release", session).status_code == 200

    def test_when_the_session_is_handed_back(self, pipeline: Pipeline) -> None:
        session = new_session()
        pipeline.say("转人工", session)
        assert pipeline.operate("take", session).status_code == 200
        operator = opened(pipeline, f"/api/sessions/{session}/events", user="op1")
        owner = opened(pipeline, f"/api/sessions/{session}/events", user="visitor")
        try:
            assert pipeline.operate("release", session).status_code == 200
            started = time.monotonic()
            names = read_to_end(operator)
            # Told that the bot is back, then the stream ends, well before a keep-alive.
            assert names[-2:] == ["handoff", "closed"], names
            assert time.monotonic() - started < KEEPALIVE_SECONDS - 5
            assert pipeline.request("GET", f"/api/sessions/{session}", user="op1").status_code == 404
            # The visitor's own stream goes on: the bot answers again.
            again = pipeline.say("现在几点", session)
            lines = owner.iter_lines(chunk_size=None, decode_unicode=True)
            assert any(again["message_id"] in line for line in lines if line.startswith("data:"))
        finally:
            operator.close()
            owner.close()
