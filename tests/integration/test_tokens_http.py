"""Tokens through real HTTP, in both layouts: every refusal, refresh, logout, visitors, and revocation by the CLI.

``embedded``: in-process stores, revocations in a SQLite file of the data folder. ``distributed``: Redis broker,
state and revocations (DB 11), SQLite for the database. The stage workers run in threads so messages get answered.
``assistant token revoke`` runs as a real subprocess against the same data folder or Redis database. A last test
starts its own Redis with an append-only file, revokes, restarts it, and finds the tokens still revoked.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import jwt
import pytest
import redis
import requests
from flask import Flask
from support import eventually

from adapters.tokens import CLOCK_SKEW_SECONDS, issue_pair, issue_token, longest_token_life
from assistant.bootstrap import build_adapters, build_gateway, build_worker_app
from assistant.embedded import EmbeddedWorkers, build_embedded
from ingress.auth import VISITOR_ENDPOINTS
from pipeline.settings import Settings
from pipeline.stages import all_queues

REDIS_DB = 11  # broker, state and revocations of the distributed layout share it; their keys do not overlap
REDIS = f"redis://127.0.0.1:6379/{REDIS_DB}"
JWT_SECRET = "token-http-test-secret-" + "t" * 24
ASSISTANT = Path(sys.executable).parent / "assistant"
WAIT = 20
HTTP_TIMEOUT = 30


# -- helpers ----------------------------------------------------------------------------------------------------------


@dataclass
class Server:
    """One running app and the environment its settings came from (the CLI gets the same)."""

    base: str
    settings: Settings
    env: dict[str, str]
    app: Flask

    def call(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> requests.Response:
        headers = dict(kwargs.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return requests.request(method, self.base + path, headers=headers, timeout=HTTP_TIMEOUT, **kwargs)

    def messages(self, token: str | None, **kwargs: Any) -> requests.Response:
        return self.call("POST", "/api/messages?wait=0", token, json={"text": "现在几点"}, **kwargs)

    def access(self, subject: str = "alice", roles: tuple[str, ...] = ("user",), **changes: Any) -> str:
        return issue_token(replace(self.settings, **changes), subject, roles)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {"PATH": os.environ.get("PATH", ""), **self.env}
        return subprocess.run([str(ASSISTANT), "token", *args], env=env, capture_output=True, text=True, timeout=60)


def refused(response: requests.Response, error: str, *phrases: str) -> str:
    """A 401 JSON refusal with the reason ``error`` and a message containing ``phrases``; the message."""
    assert response.status_code == 401, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    body = response.json()
    assert body["error"] == error, body
    message: str = body["message"]
    for phrase in phrases:
        assert phrase in message, body
    return message


def forbidden(response: requests.Response) -> None:
    assert response.status_code == 403, response.text
    assert response.json()["error"] == "forbidden"


def accepted(response: requests.Response) -> dict[str, Any]:
    assert response.status_code in (200, 202), response.text
    body: dict[str, Any] = response.json()
    return body


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def claims_of(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def flush(url: str) -> None:
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()


@contextmanager
def running(settings: Settings, env: dict[str, str], serve: Any, workers: bool = True) -> Iterator[Server]:
    """The app for ``settings`` on a real port, with the stage workers in threads when ``workers``."""
    if settings.embedded:
        adapters, celery_app, stage_workers = build_embedded(settings)
    else:
        adapters = build_adapters(settings, migrate=True)
        celery_app = build_worker_app(settings)
        stage_workers = EmbeddedWorkers(celery_app, all_queues(settings.enabled_channels))
    flask_app = build_gateway(settings, adapters, celery_app)
    if workers:
        stage_workers.start()
    try:
        with serve(flask_app) as base:
            yield Server(base, settings, env, flask_app)
    finally:
        flask_app.extensions["assistant"]["hub"].close()
        if workers:
            stage_workers.stop()
            worker_adapters = celery_app.runtime.adapters
            if worker_adapters is not adapters:
                worker_adapters.close()
        adapters.close()


@pytest.fixture(scope="module", params=["embedded", pytest.param("distributed", marks=pytest.mark.servers)])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, serve: Any) -> Iterator[Server]:
    layout: str = request.param
    root = tmp_path_factory.mktemp(f"tokens-{layout}")
    env = {"ASSISTANT_DATA_DIR": str(root / "data"), "ASSISTANT_CONFIG_DIR": str(root / "config")}
    if layout == "distributed":
        flush(REDIS)
        env |= {"BROKER_URL": REDIS, "REDIS_URL": REDIS, "DATABASE_URL": f"sqlite:///{root / 'assistant.db'}",
                "JWT_SECRET": JWT_SECRET}  # fmt: skip
    try:
        with running(Settings.from_env(env), env, serve) as running_server:
            yield running_server
    finally:
        if layout == "distributed":
            flush(REDIS)


# -- every refusal is a 401 saying why --------------------------------------------------------------------------------


class TestRefusals:
    def test_no_token_or_no_bearer_scheme(self, server: Server) -> None:
        response = server.messages(None)
        refused(response, "missing_token", "missing bearer token", "Authorization: Bearer <token>")
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="assistant"'
        for header in ("Basic YWxpY2U6c2VjcmV0", "not-a-token", "Token abc"):
            refused(server.messages(None, headers={"Authorization": header}), "missing_token", "Bearer")
        refused(server.messages(None, headers={"Authorization": "Bearer"}), "invalid_token", "malformed")
        refused(server.call("GET", "/api/skills"), "missing_token")
        refused(server.call("POST", "/api/auth/refresh"), "missing_token")
        refused(server.call("POST", "/api/auth/logout"), "missing_token")

    def test_an_unsigned_alg_none_token(self, server: Server) -> None:
        # Everything right but the signature, and an admin role it should never get.
        claims = claims_of(server.access()) | {"roles": ["user", "admin"]}
        unsigned = jwt.encode(claims, None, algorithm="none")
        assert unsigned.endswith(".")
        for response in (server.messages(unsigned), server.call("POST", "/api/skills", unsigned, json={})):
            message = refused(response, "invalid_token", "'none'", "HS256")
            assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
        assert "not accepted" in message

    def test_a_token_signed_with_another_key(self, server: Server) -> None:
        foreign = server.access(roles=("admin",), jwt_secret="another-key-" + "k" * 32)
        refused(server.messages(foreign), "invalid_token", "signature does not verify", "another key")
        refused(server.call("GET", "/api/skills", foreign), "invalid_token", "signature")

    def test_a_token_whose_payload_was_changed(self, server: Server) -> None:
        header, _payload, signature = server.access().split(".")
        raised = claims_of(server.access()) | {"roles": ["user", "admin"], "exp": 4102444800}
        forged = f"{header}.{b64(raised)}.{signature}"
        refused(server.call("DELETE", "/api/skills/anything", forged), "invalid_token", "changed since")
        refused(server.messages(forged), "invalid_token", "signature does not verify")

    def test_an_expired_token(self, server: Server) -> None:
        expired = issue_token(server.settings, "alice", ("user",), ttl_seconds=-(CLOCK_SKEW_SECONDS + 5))
        refused(server.messages(expired), "token_expired", "token expired at ", "POST /api/auth/refresh")

    def test_an_expired_refresh_token(self, server: Server) -> None:
        # Both lifetimes in the past: the refresh token is expired too.
        past = -(CLOCK_SKEW_SECONDS + 5)
        pair = issue_pair(replace(server.settings, jwt_refresh_ttl_seconds=past), "alice", ["user"], past - 1)
        response = server.call("POST", "/api/auth/refresh", pair.refresh_token)
        refused(response, "token_expired", "expired at ", "new refresh token")

    def test_a_token_for_another_audience(self, server: Server) -> None:
        other = server.access(jwt_audience="billing")
        refused(server.messages(other), "invalid_token", "another audience", "'assistant'")

    def test_a_token_from_another_issuer(self, server: Server) -> None:
        other = server.access(jwt_issuer="someone-else")
        refused(server.messages(other), "invalid_token", "another issuer", "'assistant'")

    def test_a_refresh_token_is_not_an_access_token(self, server: Server) -> None:
        pair = issue_pair(server.settings, "alice", ["user", "admin"])
        for response in (server.messages(pair.refresh_token), server.call("GET", "/api/skills", pair.refresh_token),
                         server.call("POST", "/api/auth/logout", pair.refresh_token)):  # fmt: skip
            refused(response, "wrong_token_type", "refresh token cannot be used as an access token")

    def test_an_access_token_cannot_refresh(self, server: Server) -> None:
        response = server.call("POST", "/api/auth/refresh", server.access())
        refused(response, "wrong_token_type", "access token cannot be used to refresh")

    def test_revoked_access_and_refresh_tokens(self, server: Server) -> None:
        pair = issue_pair(server.settings, "alice", ["user"])
        accepted(server.messages(pair.access_token))
        logout = server.call("POST", "/api/auth/logout", pair.access_token, json={"refresh_token": pair.refresh_token})
        assert logout.status_code == 204, logout.text
        refused(server.messages(pair.access_token), "token_revoked", "token has been revoked", "get a new token")
        response = server.call("POST", "/api/auth/refresh", pair.refresh_token)
        refused(response, "token_revoked", "has been revoked", "new refresh token")

    def test_a_valid_token_still_works(self, server: Server) -> None:
        # The refusals above are about the tokens, not the server.
        accepted(server.messages(server.access()))


# -- refresh and logout -----------------------------------------------------------------------------------------------


class TestRefreshAndLogout:
    def test_a_refresh_token_buys_a_new_access_token(self, server: Server) -> None:
        pair = issue_pair(server.settings, "carol", ["user", "admin"])
        for _ in range(2):  # the refresh token stays valid
            response = server.call("POST", "/api/auth/refresh", pair.refresh_token)
            assert response.status_code == 200, response.text
            body = response.json()
            assert set(body) == {"access_token", "expires_in"}
            assert body["expires_in"] == server.settings.jwt_access_ttl_seconds
            claims = claims_of(body["access_token"])
            assert (claims["sub"], claims["roles"], claims["type"]) == ("carol", ["user", "admin"], "access")
            assert (claims["aud"], claims["iss"]) == ("assistant", "assistant")
            assert claims["jti"] not in (claims_of(pair.access_token)["jti"], claims_of(pair.refresh_token)["jti"])
            assert accepted(server.messages(body["access_token"]))["session_id"]
            assert server.call("GET", "/api/skills", body["access_token"]).status_code == 200

    def test_logout_without_a_body_revokes_only_the_access_token(self, server: Server) -> None:
        pair = issue_pair(server.settings, "dora", ["user"])
        other = server.access("dora")
        assert server.call("POST", "/api/auth/logout", pair.access_token).status_code == 204
        refused(server.messages(pair.access_token), "token_revoked")
        accepted(server.messages(other))
        fresh = server.call("POST", "/api/auth/refresh", pair.refresh_token)
        assert fresh.status_code == 200, fresh.text
        accepted(server.messages(fresh.json()["access_token"]))

    def test_logout_with_an_expired_refresh_token_still_logs_out(self, server: Server) -> None:
        past = -(CLOCK_SKEW_SECONDS + 5)
        stale = issue_pair(replace(server.settings, jwt_refresh_ttl_seconds=past), "dora", ["user"], past - 1)
        access = server.access("dora")
        response = server.call("POST", "/api/auth/logout", access, json={"refresh_token": stale.refresh_token})
        assert response.status_code == 204, response.text
        refused(server.messages(access), "token_revoked")

    def test_another_users_refresh_token_is_refused_and_nothing_is_revoked(self, server: Server) -> None:
        alice = server.access("alice")
        bobs = issue_pair(server.settings, "bob", ["user"])
        response = server.call("POST", "/api/auth/logout", alice, json={"refresh_token": bobs.refresh_token})
        assert response.status_code == 403, response.text
        assert "another user" in response.json()["message"]
        accepted(server.messages(alice))
        assert server.call("POST", "/api/auth/refresh", bobs.refresh_token).status_code == 200

    def test_a_bad_logout_body_is_a_400_and_revokes_nothing(self, server: Server) -> None:
        access = server.access("erin")
        foreign = issue_pair(replace(server.settings, jwt_secret="another-key-" + "k" * 32), "erin", ["user"])
        bodies: list[tuple[dict[str, Any], str]] = [
            ({"data": "{oops", "headers": {"Content-Type": "application/json"}}, "JSON object"),
            ({"json": ["refresh_token"]}, "JSON object"),
            ({"json": {"refresh_token": 5}}, "non-empty string"),
            ({"json": {"refresh_token": access}}, "access token"),
            ({"json": {"refresh_token": "garbage"}}, "not usable"),
            ({"json": {"refresh_token": foreign.refresh_token}}, "signature does not verify"),
        ]
        for kwargs, phrase in bodies:
            response = server.call("POST", "/api/auth/logout", access, **kwargs)
            assert response.status_code == 400, (kwargs, response.text)
            assert response.json()["error"] == "bad_request"
            assert phrase in response.json()["message"], response.json()
        accepted(server.messages(access))


# -- visitors ---------------------------------------------------------------------------------------------------------


class TestVisitors:
    def test_a_visitor_sends_messages_and_reads_its_own_sessions(self, server: Server) -> None:
        visitor = server.access("visitor-1", ("visitor",))
        response = server.call("POST", f"/api/messages?wait={WAIT}", visitor, json={"text": "现在几点"})
        assert response.status_code == 200, response.text
        assert response.json()["reply"]["skill"] == "time"
        session = response.json()["session_id"]

        transcript = server.call("GET", f"/api/sessions/{session}", visitor)
        assert transcript.status_code == 200, transcript.text
        assert transcript.json()["user_id"] == "visitor-1"
        replies = server.call("GET", f"/api/sessions/{session}/replies?wait=0", visitor)
        assert replies.status_code == 200, replies.text
        assert [r["skill"] for r in replies.json()["replies"]] == ["time"]
        with server.call("GET", f"/api/sessions/{session}/events", visitor, stream=True) as events:
            assert events.status_code == 200, events.text
            assert events.headers["Content-Type"].startswith("text/event-stream")
            lines = events.iter_lines(decode_unicode=True)
            assert any(line == "event: reply" for line in lines)

        # An admin reads any session; another user or visitor none.
        admin = server.access("root", ("user", "admin"))
        assert server.call("GET", f"/api/sessions/{session}", admin).json()["user_id"] == "visitor-1"
        for stranger in (server.access("alice"), server.access("visitor-2", ("visitor",))):
            assert server.call("GET", f"/api/sessions/{session}", stranger).status_code == 404

    def test_a_visitor_never_reads_another_users_session(self, server: Server) -> None:
        alice = server.access("alice")
        session = accepted(server.messages(alice))["session_id"]
        visitor = server.access("visitor-1", ("visitor",))
        for path in (f"/api/sessions/{session}", f"/api/sessions/{session}/replies?wait=0",
                     f"/api/sessions/{session}/events"):  # fmt: skip
            assert server.call("GET", path, visitor).status_code == 404
        # Nor writes into it.
        response = server.call("POST", "/api/messages?wait=0", visitor, json={"text": "hi", "session_id": session})
        assert response.status_code == 404, response.text

    def test_every_other_api_endpoint_is_forbidden_to_visitors(self, server: Server) -> None:
        visitor = server.access("visitor-1", ("visitor",))
        checked = set()
        for rule in server.app.url_map.iter_rules():
            # The API's description and the visitor tokens' endpoint are public: they need no token at all.
            public = {"openapi.openapi_json", "visitors.issue_visitor_token"}
            if not rule.rule.startswith("/api") or rule.endpoint in VISITOR_ENDPOINTS | public:
                continue
            path = rule.rule
            for argument in rule.arguments:
                path = path.replace(f"<{argument}>", "x").replace(f"<path:{argument}>", "x")
            for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
                forbidden(server.call(method, path, visitor, json={}))
                checked.add(rule.endpoint)
        assert {"skills.list_skills", "skills.register_skill", "skills.delete_skill", "auth.refresh",
                "auth.logout"} <= checked  # fmt: skip
        # What a visitor may call answers it.
        accepted(server.messages(visitor))

    def test_the_cli_issues_visitor_tokens_without_refresh(self, server: Server) -> None:
        issued = server.cli("--sub", "widget-7", "--role", "visitor")
        assert issued.returncode == 0, issued.stderr
        token = issued.stdout.strip()
        assert claims_of(token)["roles"] == ["visitor"]
        accepted(server.messages(token))
        forbidden(server.call("GET", "/api/skills", token))
        refused_pair = server.cli("--sub", "widget-7", "--role", "visitor", "--refresh")
        assert refused_pair.returncode == 2
        assert "visitor tokens cannot be refreshed" in refused_pair.stderr


# -- the CLI against the running server -------------------------------------------------------------------------------


class TestCli:
    def test_token_prints_an_access_token_and_with_refresh_a_pair(self, server: Server) -> None:
        plain = server.cli("--sub", "gina", "--role", "user")
        assert plain.returncode == 0, plain.stderr
        assert plain.stdout.count(".") == 2 and len(plain.stdout.split()) == 1  # TOKEN=$(assistant token ...)
        accepted(server.messages(plain.stdout.strip()))

        pair = server.cli("--sub", "gina", "--role", "user", "--role", "admin", "--refresh", "--ttl", "60")
        assert pair.returncode == 0, pair.stderr
        tokens = json.loads(pair.stdout)
        assert tokens["expires_in"] == 60
        assert tokens["refresh_expires_in"] == server.settings.jwt_refresh_ttl_seconds
        assert server.call("GET", "/api/skills", tokens["access_token"]).status_code == 200
        refreshed = server.call("POST", "/api/auth/refresh", tokens["refresh_token"])
        assert refreshed.status_code == 200, refreshed.text

    def test_revoking_one_token_takes_effect_on_the_running_server(self, server: Server) -> None:
        doomed, spared = server.access("hank"), server.access("hank")
        accepted(server.messages(doomed))
        revoked = server.cli("revoke", doomed)
        assert revoked.returncode == 0, revoked.stderr
        assert f"revoked access token {claims_of(doomed)['jti']} of hank" in revoked.stdout
        refused(server.messages(doomed), "token_revoked")
        accepted(server.messages(spared))

    def test_revoking_a_subject_refuses_every_token_issued_until_then(self, server: Server) -> None:
        pair = issue_pair(server.settings, "ivan", ["user"])
        earlier = server.access("ivan")
        bystander = server.access("judy")
        revoked = server.cli("revoke", "--sub", "ivan")
        assert revoked.returncode == 0, revoked.stderr
        assert "revoked every token of ivan issued until" in revoked.stdout
        refused(server.messages(earlier), "token_revoked")
        refused(server.messages(pair.access_token), "token_revoked")
        refused(server.call("POST", "/api/auth/refresh", pair.refresh_token), "token_revoked")
        accepted(server.messages(bystander))
        # Tokens issued afterwards work: logging in again is possible at once.
        again = issue_pair(server.settings, "ivan", ["user"])
        accepted(server.messages(again.access_token))
        assert server.call("POST", "/api/auth/refresh", again.refresh_token).status_code == 200

    def test_revoke_refuses_what_is_not_a_token_of_this_server(self, server: Server) -> None:
        foreign = server.access("hank", jwt_secret="another-key-" + "k" * 32)
        for args in (("revoke", foreign), ("revoke", "garbage"), ("revoke",), ("revoke", foreign, "--sub", "x")):
            result = server.cli(*args)
            assert result.returncode == 2, (args, result.stdout, result.stderr)
            assert result.stderr.startswith("assistant token revoke: "), result.stderr


# -- revocations outlive a Redis restart ------------------------------------------------------------------------------


@contextmanager
def redis_server(directory: Path) -> Iterator[tuple[int, Callable[[], None]]]:
    """A redis-server of our own that keeps data only in its append-only file; yields its port and a restart."""
    port = free_port()
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory),
            "--appendonly", "yes", "--save", ""]  # fmt: skip

    def start() -> subprocess.Popen[bytes]:
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=port)
        eventually(lambda: _pings(client), 10, what=f"redis-server on port {port}")
        client.close()
        return process

    process = start()

    def restart() -> None:
        nonlocal process
        client = redis.Redis(port=port)
        client.shutdown()  # no RDB save point: what comes back was read from the append-only file
        client.close()
        assert process.wait(10) == 0
        process = start()

    try:
        yield port, restart
    finally:
        process.terminate()
        process.wait(10)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


@pytest.mark.servers
def test_revocations_survive_a_redis_restart(tmp_path: Path, serve: Any) -> None:
    (tmp_path / "redis").mkdir()
    with redis_server(tmp_path / "redis") as (port, restart):
        url = f"redis://127.0.0.1:{port}/{REDIS_DB}"
        env = {"ASSISTANT_DATA_DIR": str(tmp_path / "data"), "ASSISTANT_CONFIG_DIR": str(tmp_path / "config"),
               "BROKER_URL": url, "REDIS_URL": url, "DATABASE_URL": f"sqlite:///{tmp_path / 'assistant.db'}",
               "JWT_SECRET": JWT_SECRET}  # fmt: skip
        settings = Settings.from_env(env)
        with running(settings, env, serve, workers=False) as server:
            alice = issue_pair(settings, "alice", ["user"])
            bob = server.access("bob")
            carol = server.access("carol")
            body = {"refresh_token": alice.refresh_token}
            assert server.call("POST", "/api/auth/logout", alice.access_token, json=body).status_code == 204
            assert server.cli("revoke", "--sub", "bob").returncode == 0
            refused(server.messages(bob), "token_revoked")

            restart()
            assert not (tmp_path / "redis" / "dump.rdb").exists()

            refused(server.messages(alice.access_token), "token_revoked")
            refused(server.call("POST", "/api/auth/refresh", alice.refresh_token), "token_revoked")
            refused(server.messages(bob), "token_revoked")
            assert server.call("GET", "/api/skills", carol).status_code == 200
            # The keys still expire: a revoked token's with the token, a subject's after the longest token life.
            keys = redis.Redis.from_url(url)
            jti_ttl = keys.ttl(f"revoked:jti:{claims_of(alice.access_token)['jti']}")
            assert 0 < jti_ttl <= settings.jwt_access_ttl_seconds + CLOCK_SKEW_SECONDS + 1
            assert longest_token_life(settings) - 60 < keys.ttl("revoked:sub:bob") <= longest_token_life(settings)
            keys.close()
