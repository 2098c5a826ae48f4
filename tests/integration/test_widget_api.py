"""Sites, visitor tokens, CORS and stream tickets through real HTTP, in both layouts.

``embedded``: ``build_embedded`` (in-memory broker, real Celery worker threads, in-process stores, SQLite).
``distributed``: Celery on the real Redis broker, Redis state, reply streams and tickets, PostgreSQL.
Requests carry the ``Origin`` header a browser would send from a page of a registered (or foreign) site.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import pytest
import redis
import requests
from flask import Flask
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from adapters.revocation import open_revocations
from adapters.sites import Site
from adapters.tickets import OPERATOR_SCOPE
from adapters.tokens import issue_token, read_token, revoke
from assistant.bootstrap import build_adapters, build_gateway, build_worker_app
from assistant.embedded import EmbeddedWorkers, build_embedded
from ingress.auth import current_identity
from ingress.tickets import redeem_ticket
from pipeline.settings import Settings
from pipeline.stages import all_queues

BROKER_DB = 10
STATE_DB = 11
REDIS = "redis://127.0.0.1:6379"
JWT_SECRET = "widget-test-secret-" + "w" * 32
HTTP_TIMEOUT = 30.0
DEADLINE = 20.0
#: Renewal window of this module: an hour, so "expired long ago" is two hours.
RENEW_SECONDS = 3600
SHOP = "http://shop.test:3000"
OTHER_SHOP = "https://other.test"
FOREIGN = "https://evil.test"
VISITOR_TOKENS_PER_MINUTE = 1000


@dataclass
class Widget:
    """A running pipeline, two registered sites, and a client that sends requests as their pages would."""

    base: str
    settings: Settings
    layout: str
    app: Flask
    shop: Site
    other: Site
    tokens: dict[str, str] = field(default_factory=dict)

    def call(
        self, method: str, path: str, origin: str | None = SHOP, token: str | None = None, **kwargs: Any
    ) -> requests.Response:
        headers = dict(kwargs.pop("headers", {}))
        if origin is not None:
            headers["Origin"] = origin
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        kwargs.setdefault("timeout", HTTP_TIMEOUT)
        return requests.request(method, self.base + path, headers=headers, **kwargs)

    def visitor(self, site: Site | None = None, origin: str = SHOP, **body: Any) -> dict[str, Any]:
        site = site or self.shop
        response = self.call("POST", "/api/visitor-tokens", origin=origin, json={"site_key": site.site_key, **body})
        assert response.status_code == 201, response.text
        answer: dict[str, Any] = response.json()
        return answer

    def say(self, token: str, text: str = "现在几点", session_id: str | None = None, origin: str = SHOP) -> Any:
        body: dict[str, Any] = {"text": text}
        if session_id is not None:
            body["session_id"] = session_id
        response = self.call("POST", "/api/messages", origin=origin, token=token, json=body,
                             params={"wait": str(DEADLINE)})  # fmt: skip
        assert response.status_code == 200, response.text
        return response.json()

    def ticket(self, token: str, session_id: str, origin: str | None = SHOP) -> str:
        response = self.call("POST", f"/api/sessions/{session_id}/stream-ticket", origin=origin, token=token)
        assert response.status_code == 201, response.text
        body = response.json()
        assert set(body) == {"ticket", "expires_in"}
        assert body["expires_in"] == self.settings.stream_ticket_ttl_seconds
        return str(body["ticket"])


def assert_error(response: requests.Response, status: int, error: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert set(body) == {"error", "message"} and body["message"], body
    if error is not None:
        assert body["error"] == error, body
    return body


def signature(secret: str, customer_id: str) -> str:
    """As docs/widget-api.md tells a site's server to sign: the hex secret's text as the key."""
    return hmac.new(secret.encode(), customer_id.encode(), hashlib.sha256).hexdigest()


def read_events(response: requests.Response, count: int) -> list[tuple[str, str, dict[str, Any]]]:
    """The first ``count`` events with an id: (id, event name, data)."""
    found: list[tuple[str, str, dict[str, Any]]] = []
    fields: dict[str, str] = {}
    for line in response.iter_lines(chunk_size=None, decode_unicode=True):
        if line == "":
            if "data" in fields and "id" in fields:
                found.append((fields["id"], fields.get("event", "message"), json.loads(fields["data"])))
                if len(found) == count:
                    return found
            fields = {}
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        fields[name] = value.removeprefix(" ")
    raise AssertionError(f"the stream ended after {found}")


def _flush() -> None:
    for db in (BROKER_DB, STATE_DB):
        client = redis.Redis.from_url(f"{REDIS}/{db}")
        client.flushdb()
        client.close()


def _add_operator_events_probe(app: Flask) -> None:
    """A stand-in for the operators' stream: answers who its ``?ticket=`` (scope ``operator``) belongs to."""

    def probe() -> dict[str, Any]:
        identity = redeem_ticket(OPERATOR_SCOPE)
        assert current_identity() == identity
        return {"subject": identity.subject, "roles": list(identity.roles)}

    app.add_url_rule("/api/test/operator-probe", "operator_probe", probe)


@pytest.fixture(scope="module", params=["embedded", pytest.param("distributed", marks=pytest.mark.servers)])
def widget(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, serve: Any) -> Iterator[Widget]:
    layout: str = request.param
    root = tmp_path_factory.mktemp(f"widget-{layout}")
    env = {
        "ASSISTANT_DATA_DIR": str(root / "data"),
        "ASSISTANT_CONFIG_DIR": str(root / "config"),
        "VISITOR_RENEW_SECONDS": str(RENEW_SECONDS),
        "RATE_LIMIT_PER_USER": "100000/minute",
        "RATE_LIMIT_PER_IP": "100000/minute",
        "RATE_LIMIT_VISITOR_TOKENS": f"{VISITOR_TOKENS_PER_MINUTE}/minute",
    }
    if layout == "embedded":
        settings = Settings.from_env(env)
        adapters, celery_app, workers = build_embedded(settings)
    else:
        _flush()
        env |= {
            "BROKER_URL": f"{REDIS}/{BROKER_DB}",
            "REDIS_URL": f"{REDIS}/{STATE_DB}",
            "DATABASE_URL": request.getfixturevalue("postgres_url"),
            "JWT_SECRET": JWT_SECRET,
        }
        settings = Settings.from_env(env)
        adapters = build_adapters(settings, migrate=True)
        celery_app = build_worker_app(settings)
        workers = EmbeddedWorkers(celery_app, all_queues(settings.enabled_channels))
    shop = adapters.sites.add([SHOP], "Shop")
    other = adapters.sites.add([OTHER_SHOP, "http://127.0.0.1:9"], "Other")
    app = build_gateway(settings, adapters, celery_app)
    _add_operator_events_probe(app)
    workers.start()
    try:
        with serve(app) as base:
            widget = Widget(base, settings, layout, app, shop, other)
            widget.tokens = {
                "alice": issue_token(settings, "alice", ("user",), 3600),
                "agent": issue_token(settings, "olga", ("agent",), 3600),
                "admin": issue_token(settings, "root", ("user", "admin"), 3600),
            }
            yield widget
    finally:
        app.extensions["assistant"]["hub"].close()
        workers.stop()
        worker_adapters = celery_app.runtime.adapters
        if worker_adapters is not adapters:
            worker_adapters.close()
        adapters.close()
        if layout == "distributed":
            _flush()


# -- visitor tokens ----------------------------------------------------------------------------------------------------


class TestVisitorTokens:
    def test_a_page_of_the_site_gets_a_visitor_token(self, widget: Widget) -> None:
        response = widget.call("POST", "/api/visitor-tokens", json={"site_key": widget.shop.site_key})
        assert response.status_code == 201, response.text
        body = response.json()
        assert set(body) == {"token", "expires_in", "visitor_id", "site_key", "session_id"}
        assert body["expires_in"] == widget.settings.visitor_token_ttl_seconds == 900
        assert body["site_key"] == widget.shop.site_key
        claims = read_token(widget.settings, body["token"])
        assert claims["roles"] == ["visitor"]
        assert claims["site"] == widget.shop.site_key
        assert claims["sub"] == f"visitor:{widget.shop.site_key}:{body['visitor_id']}"
        assert claims["exp"] - claims["iat"] == pytest.approx(900, abs=1)
        # The answer is readable by the page: its origin, exactly, and no credentials.
        assert response.headers["Access-Control-Allow-Origin"] == SHOP
        assert "Access-Control-Allow-Credentials" not in response.headers
        assert "Origin" in response.headers["Vary"]

    def test_each_new_visitor_is_someone_else(self, widget: Widget) -> None:
        first, second = widget.visitor(), widget.visitor()
        assert first["visitor_id"] != second["visitor_id"]

    def test_every_origin_of_the_site_may_ask(self, widget: Widget) -> None:
        assert widget.visitor(widget.other, origin=OTHER_SHOP)["site_key"] == widget.other.site_key
        assert widget.visitor(widget.other, origin="http://127.0.0.1:9")["site_key"] == widget.other.site_key

    def test_a_wrong_or_missing_origin_is_refused(self, widget: Widget) -> None:
        body = {"site_key": widget.shop.site_key}
        for origin in (FOREIGN, OTHER_SHOP, "http://shop.test", "http://shop.test:3000/", "null", None):
            response = widget.call("POST", "/api/visitor-tokens", origin=origin, json=body)
            assert_error(response, 403, "origin_not_allowed")
            # Another site's origin reads the refusal; a foreign one gets nothing it may read.
            if origin != OTHER_SHOP:
                assert "Access-Control-Allow-Origin" not in response.headers

    def test_an_unknown_site_key_is_refused(self, widget: Widget) -> None:
        response = widget.call("POST", "/api/visitor-tokens", json={"site_key": "site_" + "x" * 22})
        assert_error(response, 403, "unknown_site")

    @pytest.mark.parametrize(
        "body",
        [
            None,
            [],
            {},
            {"site_key": 3},
            {"site_key": ""},
            {"site_key": "a b"},
            {"site_key": "k" * 65},
            {"site_key": "site_x", "visitor_token": 5},
            {"site_key": "site_x", "visitor_token": ""},
            {"site_key": "site_x", "visitor_token": "\ud800"},
            {"site_key": "site_x", "visitor_token": "eyJ令牌.a.b"},
            {"site_key": "site_x", "visitor_token": "x" * 4097},
            {"site_key": "site_x", "customer_id": "bob"},
            {"site_key": "site_x", "customer_signature": "0" * 64},
            {"site_key": "site_x", "customer_id": "bad id", "customer_signature": "0" * 64},
            {"site_key": "site_x", "customer_id": "x" * 65, "customer_signature": "0" * 64},
            {"site_key": "site_x", "customer_id": "bob", "customer_signature": "xyz"},
        ],
    )
    def test_a_bad_body_is_400(self, widget: Widget, body: Any) -> None:
        response = widget.call("POST", "/api/visitor-tokens", json=body)
        assert_error(response, 400)

    def test_a_customer_signed_by_the_site_keeps_one_identity_across_devices(self, widget: Widget) -> None:
        customer = f"cust-{uuid.uuid4().hex[:8]}@shop.test"
        sig = signature(widget.shop.secret, customer)
        laptop = widget.visitor(customer_id=customer, customer_signature=sig)
        phone = widget.visitor(customer_id=customer, customer_signature=sig.upper())
        subject = f"customer:{widget.shop.site_key}:{customer}"
        assert read_token(widget.settings, laptop["token"])["sub"] == subject
        assert read_token(widget.settings, phone["token"])["sub"] == subject
        # The session started on one device is readable from the other.
        session = widget.say(laptop["token"])["session_id"]
        response = widget.call("GET", f"/api/sessions/{session}", token=phone["token"])
        assert response.status_code == 200, response.text
        assert [e["kind"] for e in response.json()["entries"]] == ["message", "reply"]
        # A device new to the customer is told which conversation to carry on: the latest one.
        assert laptop["session_id"] is None
        assert widget.visitor(customer_id=customer, customer_signature=sig)["session_id"] == session
        newer = widget.say(phone["token"], session_id=None)["session_id"]
        assert widget.visitor(customer_id=customer, customer_signature=sig)["session_id"] == newer
        # Anonymous visitors are never told one: their id is theirs alone.
        assert widget.visitor()["session_id"] is None

    def test_a_bad_signature_is_refused(self, widget: Widget) -> None:
        customer = "bob"
        for sig in (
            signature(widget.other.secret, customer),  # another site's secret
            signature(widget.shop.secret, "bob2"),  # another customer's
            "0" * 64,
        ):
            response = widget.call("POST", "/api/visitor-tokens",
                                   json={"site_key": widget.shop.site_key, "customer_id": customer,
                                         "customer_signature": sig})  # fmt: skip
            assert_error(response, 403, "bad_signature")


class TestRenewal:
    def test_the_previous_token_keeps_the_visitor(self, widget: Widget) -> None:
        first = widget.visitor()
        renewed = widget.visitor(visitor_token=first["token"])
        assert renewed["visitor_id"] == first["visitor_id"]
        assert (
            read_token(widget.settings, renewed["token"])["sub"] == read_token(widget.settings, first["token"])["sub"]
        )

    def test_an_expired_token_renews_within_the_window(self, widget: Widget) -> None:
        subject = f"visitor:{widget.shop.site_key}:old-{uuid.uuid4().hex[:6]}"
        expired = issue_token(widget.settings, subject, ["visitor"], -600, site=widget.shop.site_key)
        with pytest.raises(jwt.ExpiredSignatureError):
            read_token(widget.settings, expired)
        renewed = widget.visitor(visitor_token=expired)
        assert read_token(widget.settings, renewed["token"])["sub"] == subject

    def test_a_token_expired_too_long_ago_is_refused(self, widget: Widget) -> None:
        subject = f"visitor:{widget.shop.site_key}:ancient"
        ancient = issue_token(widget.settings, subject, ["visitor"], -2 * RENEW_SECONDS, site=widget.shop.site_key)
        response = widget.call("POST", "/api/visitor-tokens",
                               json={"site_key": widget.shop.site_key, "visitor_token": ancient})  # fmt: skip
        assert_error(response, 401, "token_expired")
        # The page reads the 401 and asks again without it.
        assert response.headers["Access-Control-Allow-Origin"] == SHOP

    def test_tokens_that_are_not_this_sites_visitors_cannot_be_renewed(self, widget: Widget) -> None:
        shop_key = widget.shop.site_key
        other_site = widget.visitor(widget.other, origin=OTHER_SHOP)["token"]
        forged = jwt.encode({"sub": f"visitor:{shop_key}:x", "roles": ["visitor"], "site": shop_key,
                             "type": "access", "jti": "j", "iat": time.time(), "exp": time.time() + 60,
                             "aud": "assistant", "iss": "assistant"}, "another-secret-" + "q" * 32,
                            algorithm="HS256")  # fmt: skip
        for token in (
            other_site,  # another site's visitor
            widget.tokens["alice"],  # a user's token
            issue_token(widget.settings, f"visitor:{shop_key}:x", ["visitor"], 60),  # no site claim
            issue_token(widget.settings, "alice", ["visitor"], 60, site=shop_key),  # not a visitor subject
            forged,
            "not-a-token",
        ):
            response = widget.call("POST", "/api/visitor-tokens",
                                   json={"site_key": shop_key, "visitor_token": token})  # fmt: skip
            assert_error(response, 401, "token_expired")

    def test_a_revoked_token_cannot_be_renewed_even_after_it_expired(self, widget: Widget) -> None:
        subject = f"visitor:{widget.shop.site_key}:revoked-{uuid.uuid4().hex[:6]}"
        token = issue_token(widget.settings, subject, ["visitor"], -30, site=widget.shop.site_key)
        revocations = open_revocations(widget.settings)
        try:
            # As `assistant token revoke` does: kept for the renewal window, not only until the token's expiry.
            revoke(revocations, read_token(widget.settings, token, allow_expired=True),
                   widget.settings.visitor_renew_seconds)  # fmt: skip
        finally:
            revocations.close()
        response = widget.call("POST", "/api/visitor-tokens",
                               json={"site_key": widget.shop.site_key, "visitor_token": token})  # fmt: skip
        assert_error(response, 401, "token_expired")


# -- a visitor token at work -------------------------------------------------------------------------------------------


class TestVisitorAtWork:
    def test_a_visitor_talks_and_streams_with_a_ticket(self, widget: Widget) -> None:
        token = widget.visitor()["token"]
        answered = widget.say(token)
        session = answered["session_id"]
        assert answered["reply"]["skill"] == "time"
        assert answered["reply"]["kind"] == "reply"
        ticket = widget.ticket(token, session)
        # No Authorization header: the ticket stands in for it, as with a browser's EventSource.
        with widget.call("GET", f"/api/sessions/{session}/events", params={"ticket": ticket}, stream=True,
                         timeout=(5, DEADLINE)) as stream:  # fmt: skip
            assert stream.status_code == 200, stream.text
            assert stream.headers["Content-Type"].startswith("text/event-stream")
            assert stream.headers["Access-Control-Allow-Origin"] == SHOP
            [(first_id, event, data)] = read_events(stream, 1)
            assert (event, data["message_id"]) == ("reply", answered["message_id"])
        # Resuming after the last event id with a fresh ticket: the next reply only.
        second = widget.say(token, "现在几点", session)
        ticket = widget.ticket(token, session)
        with widget.call("GET", f"/api/sessions/{session}/events", params={"ticket": ticket, "after": first_id},
                         stream=True, timeout=(5, DEADLINE)) as stream:  # fmt: skip
            [(_, _, data)] = read_events(stream, 1)
            assert data["message_id"] == second["message_id"]

    def test_a_ticket_is_good_once(self, widget: Widget) -> None:
        token = widget.visitor()["token"]
        session = widget.say(token)["session_id"]
        ticket = widget.ticket(token, session)
        with widget.call("GET", f"/api/sessions/{session}/events", params={"ticket": ticket}, stream=True,
                         timeout=(5, DEADLINE)) as stream:  # fmt: skip
            assert stream.status_code == 200
        again = widget.call("GET", f"/api/sessions/{session}/events", params={"ticket": ticket})
        assert_error(again, 401, "invalid_ticket")
        assert again.headers["Access-Control-Allow-Origin"] == SHOP

    def test_a_ticket_opens_only_its_own_session(self, widget: Widget) -> None:
        token = widget.visitor()["token"]
        mine = widget.say(token)["session_id"]
        other = widget.say(token)["session_id"]
        ticket = widget.ticket(token, mine)
        assert_error(widget.call("GET", f"/api/sessions/{other}/events", params={"ticket": ticket}), 401,
                     "invalid_ticket")  # fmt: skip

    def test_unknown_empty_or_huge_tickets_are_401(self, widget: Widget) -> None:
        token = widget.visitor()["token"]
        session = widget.say(token)["session_id"]
        for ticket in ("nope", "x" * 5000):
            response = widget.call("GET", f"/api/sessions/{session}/events", params={"ticket": ticket})
            assert_error(response, 401, "invalid_ticket")
        assert_error(widget.call("GET", f"/api/sessions/{session}/events?ticket="), 401, "missing_ticket")

    def test_a_ticket_expires(self, widget: Widget) -> None:
        tickets = widget.app.extensions["assistant"]["adapters"].tickets
        from adapters.tickets import TicketGrant

        ticket = tickets.issue(TicketGrant("session:x", "alice", ("user",)), 0.05)
        time.sleep(0.2)
        assert tickets.redeem(ticket) is None

    def test_a_visitor_cannot_read_another_visitors_session(self, widget: Widget) -> None:
        first, second = widget.visitor()["token"], widget.visitor()["token"]
        session = widget.say(first)["session_id"]
        for method, path in (("GET", f"/api/sessions/{session}"), ("GET", f"/api/sessions/{session}/replies"),
                             ("POST", f"/api/sessions/{session}/stream-ticket")):  # fmt: skip
            assert_error(widget.call(method, path, token=second), 404)
        response = widget.call("POST", "/api/messages", token=second, json={"text": "hi", "session_id": session})
        assert response.status_code in (403, 404), response.text

    def test_a_visitor_token_works_only_from_its_own_sites_pages(self, widget: Widget) -> None:
        token = widget.visitor()["token"]
        session = widget.say(token)["session_id"]
        # From the other site's page: its origin is registered (CORS passes) but the token is not its.
        for method, path in (("GET", f"/api/sessions/{session}"), ("POST", f"/api/sessions/{session}/stream-ticket")):
            response = widget.call(method, path, origin=OTHER_SHOP, token=token)
            assert_error(response, 403, "origin_not_allowed")
        # A ticket asked for from the shop's page does not open the stream from another site's page.
        ticket = widget.ticket(token, session)
        response = widget.call("GET", f"/api/sessions/{session}/events", origin=OTHER_SHOP, params={"ticket": ticket})
        assert_error(response, 403, "origin_not_allowed")
        # Outside a browser (no Origin) the token works: it is a bearer token like any other.
        assert widget.call("GET", f"/api/sessions/{session}", origin=None, token=token).status_code == 200

    def test_a_visitor_cannot_reach_other_endpoints(self, widget: Widget) -> None:
        token = widget.visitor()["token"]
        assert_error(widget.call("POST", "/api/operator/stream-ticket", token=token, origin=None), 403)
        assert_error(widget.call("GET", "/api/skills", token=token, origin=None), 403)

    def test_the_owner_still_streams_with_the_bearer_header(self, widget: Widget) -> None:
        alice = widget.tokens["alice"]
        answered = widget.say(alice, origin=None)  # type: ignore[arg-type]
        with widget.call("GET", f"/api/sessions/{answered['session_id']}/events", origin=None, token=alice,
                         stream=True, timeout=(5, DEADLINE)) as stream:  # fmt: skip
            [(_, _, data)] = read_events(stream, 1)
            assert data["message_id"] == answered["message_id"]


# -- operators' ticket -------------------------------------------------------------------------------------------------


class TestOperatorTicket:
    def test_agents_and_admins_get_a_ticket_for_the_operator_stream(self, widget: Widget) -> None:
        for user, subject in (("agent", "olga"), ("admin", "root")):
            response = widget.call("POST", "/api/operator/stream-ticket", origin=None, token=widget.tokens[user])
            assert response.status_code == 201, response.text
            ticket = response.json()["ticket"]
            probe = widget.call("GET", "/api/test/operator-probe", origin=None, params={"ticket": ticket})
            assert probe.status_code == 200, probe.text
            assert probe.json()["subject"] == subject
            assert_error(widget.call("GET", "/api/test/operator-probe", origin=None, params={"ticket": ticket}), 401,
                         "invalid_ticket")  # fmt: skip

    def test_users_get_no_operator_ticket(self, widget: Widget) -> None:
        response = widget.call("POST", "/api/operator/stream-ticket", origin=None, token=widget.tokens["alice"])
        assert_error(response, 403)
        assert_error(widget.call("POST", "/api/operator/stream-ticket", origin=None), 401, "missing_token")

    def test_a_session_ticket_does_not_open_the_operator_stream(self, widget: Widget) -> None:
        alice = widget.tokens["alice"]
        session = widget.say(alice, origin=None)["session_id"]  # type: ignore[arg-type]
        ticket = widget.ticket(alice, session, origin=None)
        probe = widget.call("GET", "/api/test/operator-probe", origin=None, params={"ticket": ticket})
        assert_error(probe, 401, "invalid_ticket")


# -- CORS --------------------------------------------------------------------------------------------------------------


class TestCors:
    PATHS = ("/api/visitor-tokens", "/api/messages", "/api/sessions/s-1/events", "/api/sessions/s-1/stream-ticket",
             "/api/sessions/s-1")  # fmt: skip

    def preflight(self, widget: Widget, path: str, origin: str, method: str = "POST") -> requests.Response:
        return widget.call("OPTIONS", path, origin=origin, headers={
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization, content-type"})  # fmt: skip

    def test_a_registered_origin_passes_the_preflight(self, widget: Widget) -> None:
        for path in self.PATHS:
            response = self.preflight(widget, path, SHOP)
            assert response.status_code == 204, (path, response.text)
            headers = response.headers
            assert headers["Access-Control-Allow-Origin"] == SHOP
            assert headers["Access-Control-Allow-Methods"] == "GET, POST, DELETE"
            assert headers["Access-Control-Allow-Headers"] == "Authorization, Content-Type, Last-Event-ID"
            assert headers["Access-Control-Max-Age"] == "600"
            assert "Origin" in headers["Vary"]
            assert "Access-Control-Allow-Credentials" not in headers
            assert response.content == b"" and "Content-Type" not in headers

    def test_a_foreign_origin_is_refused_before_and_after_the_preflight(self, widget: Widget) -> None:
        for origin in (FOREIGN, "http://shop.test:3001", "https://shop.test:3000", "null"):
            response = self.preflight(widget, "/api/messages", origin)
            assert_error(response, 403, "origin_not_allowed")
            assert "Access-Control-Allow-Origin" not in response.headers
            actual = widget.call("POST", "/api/messages", origin=origin, token=widget.tokens["alice"],
                                 json={"text": "现在几点"})  # fmt: skip
            assert_error(actual, 403, "origin_not_allowed")
            assert "Access-Control-Allow-Origin" not in actual.headers

    def test_answers_to_a_registered_origin_say_so(self, widget: Widget) -> None:
        token = widget.visitor()["token"]
        response = widget.call("POST", "/api/messages", token=token, json={"text": "现在几点"}, params={"wait": "0"})
        assert response.status_code == 202, response.text
        assert response.headers["Access-Control-Allow-Origin"] == SHOP
        assert response.headers["Access-Control-Expose-Headers"] == "Retry-After"
        assert "Origin" in response.headers["Vary"]
        assert "Access-Control-Allow-Credentials" not in response.headers
        # Errors too, so the page can read why.
        unauthorized = widget.call("GET", "/api/sessions/s-1")
        assert_error(unauthorized, 401)
        assert unauthorized.headers["Access-Control-Allow-Origin"] == SHOP

    def test_other_endpoints_refuse_even_registered_origins(self, widget: Widget) -> None:
        for method, path in (("GET", "/api/skills"), ("POST", "/api/auth/refresh"),
                             ("POST", "/api/operator/stream-ticket")):  # fmt: skip
            response = widget.call(method, path, token=widget.tokens["admin"])
            assert_error(response, 403, "origin_not_allowed")
            assert "Access-Control-Allow-Origin" not in response.headers
            assert_error(self.preflight(widget, path, SHOP, method), 403, "origin_not_allowed")

    def test_the_gateways_own_pages_are_same_origin(self, widget: Widget) -> None:
        # The operator page, served by the gateway, posts with its own origin.
        response = widget.call("POST", "/api/operator/stream-ticket", origin=widget.base, token=widget.tokens["agent"])
        assert response.status_code == 201, response.text

    def test_without_origin_no_cors_headers(self, widget: Widget) -> None:
        response = widget.call("GET", "/api/skills", origin=None, token=widget.tokens["alice"])
        assert response.status_code == 200
        assert "Access-Control-Allow-Origin" not in response.headers

    def test_a_site_added_later_is_allowed_and_a_removed_one_refused(self, widget: Widget) -> None:
        sites = widget.app.extensions["assistant"]["adapters"].sites
        origin = f"https://late-{uuid.uuid4().hex[:6]}.test"
        site = sites.add([origin])
        # Within a second or so: the cache reloads on an origin it does not know.
        deadline = time.monotonic() + 5
        while (response := self.preflight(widget, "/api/visitor-tokens", origin)).status_code != 204:
            assert time.monotonic() < deadline, response.text
            time.sleep(0.2)
        assert widget.visitor(site, origin=origin)["site_key"] == site.site_key
        assert sites.remove(site.site_key)
        # The token endpoint reads the database: refused at once.
        response = widget.call("POST", "/api/visitor-tokens", origin=origin, json={"site_key": site.site_key})
        assert_error(response, 403, "unknown_site")


class TestDemoSite:
    def test_the_demo_site_is_the_gateways_own_origin_when_embedded(self, widget: Widget) -> None:
        response = widget.call("POST", "/api/visitor-tokens", origin=widget.base, json={"site_key": "demo"})
        if widget.layout != "embedded":
            assert_error(response, 403, "unknown_site")
            return
        assert response.status_code == 201, response.text
        token = response.json()["token"]
        assert read_token(widget.settings, token)["site"] == "demo"
        assert widget.say(token, origin=widget.base)["reply"]["skill"] == "time"
        # Not from another page, and it vouches for no customer.
        assert_error(widget.call("POST", "/api/visitor-tokens", json={"site_key": "demo"}), 403, "origin_not_allowed")
        forged = widget.call("POST", "/api/visitor-tokens", origin=widget.base,
                             json={"site_key": "demo", "customer_id": "bob",
                                   "customer_signature": signature("", "bob")})  # fmt: skip
        assert_error(forged, 403, "bad_signature")

    @pytest.mark.parametrize("host", ["gw.lan:8000", "gw.lan", "192.168.1.20:8000", "localhost.evil.test:8000"])
    def test_the_demo_site_is_refused_on_any_host_name_but_a_loopback_one(self, widget: Widget, host: str) -> None:
        """The Host header is the client's to choose: ``demo`` must not hand out tokens on a LAN name."""
        origin = f"http://{host}"
        response = widget.call("POST", "/api/visitor-tokens", origin=origin, headers={"Host": host},
                               json={"site_key": "demo"})  # fmt: skip
        assert_error(response, 403, "unknown_site" if widget.layout != "embedded" else "origin_not_allowed")

    @pytest.mark.parametrize("host", ["localhost:8000", "localhost", "127.0.0.1:8000", "[::1]:8000"])
    def test_the_demo_site_answers_on_a_loopback_host_name(self, widget: Widget, host: str) -> None:
        if widget.layout != "embedded":
            pytest.skip("the demo site exists in embedded mode only")
        response = widget.call("POST", "/api/visitor-tokens", origin=f"http://{host}", headers={"Host": host},
                               json={"site_key": "demo"})  # fmt: skip
        assert response.status_code == 201, response.text


def test_a_visitor_token_without_a_site_works_from_no_page(widget: Widget) -> None:
    """``assistant token --role visitor`` gives a token of no site: good outside a browser, refused from any page."""
    token = issue_token(widget.settings, f"widget-{uuid.uuid4().hex[:6]}", ["visitor"], 600)
    session = widget.say(token, origin=None)["session_id"]  # type: ignore[arg-type]
    for origin in (SHOP, OTHER_SHOP):
        assert_error(widget.call("GET", f"/api/sessions/{session}", origin=origin, token=token), 403,
                     "origin_not_allowed")  # fmt: skip


def test_visitor_tokens_are_rate_limited_per_address(tmp_path: Path, serve: Any) -> None:
    settings = Settings.from_env({"ASSISTANT_DATA_DIR": str(tmp_path / "data"), "ASSISTANT_CONFIG_DIR": str(tmp_path),
                                  "RATE_LIMIT_VISITOR_TOKENS": "3/minute"})  # fmt: skip
    adapters = build_adapters(settings, migrate=True)
    site = adapters.sites.add([SHOP])
    app = build_gateway(settings, adapters)
    try:
        with serve(app) as base:

            def ask() -> requests.Response:
                return requests.post(f"{base}/api/visitor-tokens", json={"site_key": site.site_key},
                                     headers={"Origin": SHOP}, timeout=HTTP_TIMEOUT)  # fmt: skip

            assert [ask().status_code for _ in range(3)] == [201, 201, 201]
            limited = ask()
            assert_error(limited, 429, "too_many_requests")
            assert 1 <= int(limited.headers["Retry-After"]) <= 60
            # The page can read the refusal and when to come back.
            assert limited.headers["Access-Control-Allow-Origin"] == SHOP
            assert limited.headers["Access-Control-Expose-Headers"] == "Retry-After"
            # Only this endpoint: the address may still call the others.
            user = issue_token(settings, "alice", ["user"])
            skills = requests.get(f"{base}/api/skills", headers={"Authorization": f"Bearer {user}"}, timeout=10)
            assert skills.status_code == 200
    finally:
        app.extensions["assistant"]["hub"].close()
        adapters.close()


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=80),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=6,
)


@hypothesis_settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    # Unpaired surrogates too: JSON can carry them, the JWT library cannot encode them.
    visitor_token=JSON_VALUES
    | st.text(alphabet=st.characters(max_codepoint=0x7F) | st.characters(categories=["Cs"]), min_size=1),
    customer_id=JSON_VALUES,
    customer_signature=JSON_VALUES | st.from_regex(r"\A[0-9a-f]{64}\Z"),
    which=st.sets(st.sampled_from(["visitor_token", "customer_id", "customer_signature"])),
)
def test_no_body_from_a_real_sites_page_makes_a_server_error(
    widget: Widget, visitor_token: Any, customer_id: Any, customer_signature: Any, which: set[str]
) -> None:
    """The fuzz test cannot reach past the site and origin checks; here every body comes from the shop's page."""
    fields = {"visitor_token": visitor_token, "customer_id": customer_id, "customer_signature": customer_signature}
    body = {"site_key": widget.shop.site_key, **{name: fields[name] for name in which}}
    response = widget.call("POST", "/api/visitor-tokens", json=body)
    assert response.status_code in (201, 400, 401, 403), response.text
    assert response.headers["Access-Control-Allow-Origin"] == SHOP
