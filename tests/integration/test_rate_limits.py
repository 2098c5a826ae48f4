"""Rate limits per user and per client address on ``/api``, through real HTTP on real local ports.

The apps need no workers: ``GET /api/skills`` and a session look-up are enough to count requests.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from adapters.tokens import issue_token
from assistant.bootstrap import build_adapters, build_gateway, build_worker_app
from pipeline.errors import ConfigurationError
from pipeline.settings import Settings

REDIS = "redis://127.0.0.1:6379"
STATE_DB, BROKER_DB = 13, 14
#: Nothing listens on port 1: the limiter's Redis is "down" there.
UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"
SECRET = "rate-limit-test-secret-" + "r" * 24
TIMEOUT = 10.0

ServeApp = Callable[[Settings], AbstractContextManager[str]]


def token(subject: str) -> str:
    return issue_token(Settings(jwt_secret=SECRET), subject, ("user",), 3600)


def get(base: str, path: str, subject: str | None = "alice") -> requests.Response:
    headers = {"Authorization": f"Bearer {token(subject)}"} if subject else {}
    return requests.get(base + path, headers=headers, timeout=TIMEOUT)


def assert_too_many(response: requests.Response, who: str) -> int:
    """A 429 with the JSON error body and a Retry-After of at most the window; returns Retry-After."""
    assert response.status_code == 429, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["error"] == "too_many_requests", body
    assert who in body["message"], body
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= 60
    return retry_after


def embedded_settings(tmp_path: Path, **limits: str | None) -> Settings:
    return Settings(
        data_dir=tmp_path,
        config_dir=tmp_path / "config",
        database_url=f"sqlite:///{tmp_path / 'assistant.db'}",
        jwt_secret=SECRET,
        **limits,  # type: ignore[arg-type]
    )


@pytest.fixture
def serve_app(serve: Any) -> Iterator[ServeApp]:
    """``with serve_app(settings) as url:`` builds the adapters and the app from ``settings`` and serves it.

    A ``redis_url`` on embedded settings only moves the limiter's counters (session state stays in memory).
    """
    with ExitStack() as stack:

        @contextmanager
        def build(settings: Settings) -> Iterator[str]:
            adapters = build_adapters(
                replace(settings, redis_url=None) if settings.embedded else settings, migrate=True
            )
            stack.callback(adapters.close)
            celery_app = build_worker_app(settings, adapters if settings.embedded else None)
            app = build_gateway(settings, replace(adapters, settings=settings), celery_app)
            stack.callback(app.extensions["assistant"]["hub"].close)
            with serve(app) as base:
                yield base

        yield build


@pytest.fixture
def shared_redis() -> Iterator[str]:
    def flush() -> None:
        for db in (STATE_DB, BROKER_DB):
            client = redis.Redis.from_url(f"{REDIS}/{db}")
            client.flushdb()
            client.close()

    flush()
    yield f"{REDIS}/{STATE_DB}"
    flush()


def test_one_user_gets_429_with_retry_after_and_others_do_not(tmp_path: Path, serve_app: ServeApp) -> None:
    settings = embedded_settings(tmp_path, rate_limit_per_user="4/minute", rate_limit_per_ip="1000/minute")
    with serve_app(settings) as base:
        # One budget across every /api call of the user, whatever the answer.
        assert get(base, "/api/skills").status_code == 200
        assert get(base, "/api/skills").status_code == 200
        assert get(base, "/api/sessions/nobodys").status_code == 404
        assert get(base, "/api/sessions/nobodys/replies").status_code == 404
        assert_too_many(get(base, "/api/skills"), "this user")
        assert_too_many(get(base, "/api/sessions/nobodys"), "this user")
        # Another user has a budget of their own.
        assert get(base, "/api/skills", subject="bob").status_code == 200
        # Health, readiness, metrics and the API description are never limited.
        for path in ("/healthz", "/readyz", "/metrics", "/api/openapi.json"):
            for _ in range(6):
                assert get(base, path).status_code == 200, path


def test_one_address_is_limited_across_users(tmp_path: Path, serve_app: ServeApp) -> None:
    settings = embedded_settings(tmp_path, rate_limit_per_user="100/minute", rate_limit_per_ip="5/minute")
    with serve_app(settings) as base:
        for subject in ("alice", "bob", "carol", "alice", "bob"):
            assert get(base, "/api/skills", subject=subject).status_code == 200
        for subject in ("carol", "dave"):
            assert_too_many(get(base, "/api/skills", subject=subject), "this address")
        # Counted before authentication: requests without a token are limited too.
        assert_too_many(get(base, "/api/skills", subject=None), "this address")


def test_off_turns_a_limit_off(tmp_path: Path, serve_app: ServeApp) -> None:
    settings = embedded_settings(tmp_path, rate_limit_per_user=None, rate_limit_per_ip="8/minute")
    with serve_app(settings) as base:
        assert [get(base, "/api/skills").status_code for _ in range(8)] == [200] * 8
        assert_too_many(get(base, "/api/skills"), "this address")
    both_off = embedded_settings(tmp_path / "off", rate_limit_per_user=None, rate_limit_per_ip=None)
    with serve_app(both_off) as base:
        assert {get(base, "/api/skills").status_code for _ in range(20)} == {200}


@pytest.mark.servers
def test_the_limit_holds_across_two_separately_built_apps_sharing_redis(
    tmp_path: Path, serve_app: ServeApp, shared_redis: str
) -> None:
    settings = Settings(
        data_dir=tmp_path,
        broker_url=f"{REDIS}/{BROKER_DB}",
        redis_url=shared_redis,
        database_url=f"sqlite:///{tmp_path / 'assistant.db'}",
        jwt_secret=SECRET,
        rate_limit_per_user="4/minute",
        rate_limit_per_ip="1000/minute",
    )
    with serve_app(settings) as first, serve_app(settings) as second:
        for base in (first, second, first, second):
            assert get(base, "/api/skills").status_code == 200
        assert_too_many(get(base=first, path="/api/skills"), "this user")
        assert_too_many(get(base=second, path="/api/skills"), "this user")
        assert get(second, "/api/skills", subject="bob").status_code == 200
    counters = redis.Redis.from_url(shared_redis)
    try:
        assert counters.keys("LIMITS:*assistant*alice*")  # the counters live in the shared Redis
    finally:
        counters.close()


def test_an_unreachable_limiter_redis_fails_open_with_a_warning(
    tmp_path: Path, serve_app: ServeApp, caplog: pytest.LogCaptureFixture
) -> None:
    settings = embedded_settings(tmp_path, rate_limit_per_user="3/minute", rate_limit_per_ip="1000/minute")
    with caplog.at_level(logging.WARNING), serve_app(replace(settings, redis_url=UNREACHABLE_REDIS)) as base:
        # No 500: the counting goes on in the process's memory while Redis is away.
        assert [get(base, "/api/skills").status_code for _ in range(3)] == [200] * 3
        assert_too_many(get(base, "/api/skills"), "this user")
    assert any("storage unreachable" in record.getMessage() for record in caplog.records), caplog.text


@pytest.mark.parametrize("value", ["off", "OFF", " off "])
def test_settings_off(value: str) -> None:
    settings = Settings.from_env({"RATE_LIMIT_PER_USER": value, "RATE_LIMIT_PER_IP": value, "JWT_SECRET": SECRET})
    assert (settings.rate_limit_per_user, settings.rate_limit_per_ip) == (None, None)


def test_settings_defaults_and_values() -> None:
    defaults = Settings.from_env({"JWT_SECRET": SECRET})
    assert (defaults.rate_limit_per_user, defaults.rate_limit_per_ip) == ("120/minute", "600/minute")
    env = {"RATE_LIMIT_PER_USER": "10 per second", "RATE_LIMIT_PER_IP": "5/second;1000/hour", "JWT_SECRET": SECRET}
    settings = Settings.from_env(env)
    assert (settings.rate_limit_per_user, settings.rate_limit_per_ip) == ("10 per second", "5/second;1000/hour")


@pytest.mark.parametrize("value", ["120", "fast", "120/fortnight", "-1/minute", "1/minute;"])
def test_settings_refuse_what_is_not_a_limit(value: str) -> None:
    with pytest.raises(ConfigurationError, match="RATE_LIMIT_PER_USER"):
        Settings.from_env({"RATE_LIMIT_PER_USER": value, "JWT_SECRET": SECRET})
