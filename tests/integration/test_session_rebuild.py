"""Redis may lose a session's dialogue state (restart, eviction); the database snapshot brings it back."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from flask.testing import FlaskClient

from adapters.db import Repository, sessions
from adapters.tokens import issue_token
from assistant.bootstrap import build_adapters, build_gateway, build_worker_app
from assistant.embedded import EmbeddedWorkers
from pipeline.settings import Settings
from pipeline.stages import all_queues

pytestmark = pytest.mark.servers

REDIS_URL = "redis://127.0.0.1:6379/12"  # broker and state share it; their keys do not overlap
WAIT = 20


Pipeline = tuple[FlaskClient, redis.Redis, dict[str, str], Repository]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory, postgres_url: str, open_meteo: Any) -> Iterator[Pipeline]:
    """The distributed layout (Redis broker and state, PostgreSQL) with its workers in threads."""
    keys = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    keys.flushdb()
    root = tmp_path_factory.mktemp("rebuild")
    settings = Settings.from_env(
        {
            "ASSISTANT_DATA_DIR": str(root / "data"),
            "ASSISTANT_CONFIG_DIR": str(root / "config"),
            "BROKER_URL": REDIS_URL,
            "REDIS_URL": REDIS_URL,
            "DATABASE_URL": postgres_url,
            "JWT_SECRET": "session-rebuild-test-secret-" + "z" * 20,
            "WEATHER_GEOCODING_URL": open_meteo.geocoding_url,
            "WEATHER_FORECAST_URL": open_meteo.forecast_url,
        }
    )
    adapters = build_adapters(settings, migrate=True)
    celery_app = build_worker_app(settings)
    workers = EmbeddedWorkers(celery_app, all_queues(settings.enabled_channels))
    flask_app = build_gateway(settings, adapters, celery_app)
    workers.start()
    try:
        tokens = {user: issue_token(settings, user, ("user",), 3600) for user in ("alice", "bob")}
        yield flask_app.test_client(), keys, tokens, adapters.repository
    finally:
        flask_app.extensions["assistant"]["hub"].close()
        workers.stop()
        celery_app.runtime.adapters.close()
        adapters.close()
        keys.flushdb()
        keys.close()


def post(client: FlaskClient, token: str, text: str, session_id: str) -> Any:
    return client.post(
        f"/api/messages?wait={WAIT}",
        json={"text": text, "session_id": session_id},
        headers={"Authorization": f"Bearer {token}"},
    )


def say(client: FlaskClient, token: str, text: str, session_id: str) -> dict[str, Any]:
    response = post(client, token, text, session_id)
    assert response.status_code == 200, response.get_data(as_text=True)
    reply: dict[str, Any] = response.get_json()["reply"]
    return reply


def wait_for_key(keys: redis.Redis, key: str) -> None:
    # The dispatch stage saves the state after forwarding the reply: the reply may arrive first.
    deadline = time.monotonic() + WAIT
    while not keys.exists(key):
        assert time.monotonic() < deadline, f"{key} never appeared"
        time.sleep(0.01)


def test_dialogue_state_is_rebuilt_from_the_database(pipeline: Pipeline) -> None:
    client, keys, tokens, _ = pipeline
    token = tokens["alice"]
    session = f"s-{uuid.uuid4().hex}"
    question = say(client, token, "天气", session)
    assert (question["skill"], question["text"], question["expects_reply"]) == ("weather", "哪个城市？", True)

    state_key = f"sess:{session}:state"
    wait_for_key(keys, state_key)
    assert keys.delete(state_key) == 1

    answer = say(client, token, "上海", session)
    assert (answer["skill"], answer["text"]) == ("weather", "上海当前气温 12℃，小雨。")
    # The state written back after the answer no longer holds the question.
    wait_for_key(keys, state_key)
    assert '"pending": null' in keys.get(state_key)


def test_with_the_snapshot_gone_too_the_answer_is_a_new_message(pipeline: Pipeline) -> None:
    """The control: above, the weather skill answered because of the snapshot, not by itself."""
    client, keys, tokens, repository = pipeline
    token = tokens["alice"]
    session = f"s-{uuid.uuid4().hex}"
    say(client, token, "天气", session)
    # The database snapshot is written after the Redis state: once it is there, nothing writes either any more.
    deadline = time.monotonic() + WAIT
    while (record := repository.load_session(session)) is None or record.state_json is None:
        assert time.monotonic() < deadline, "the state snapshot never reached the database"
        time.sleep(0.01)
    assert keys.delete(f"sess:{session}:state") == 1
    with repository.engine.begin() as connection:
        connection.execute(sa.update(sessions).where(sessions.c.id == session).values(state=None))

    answer = say(client, token, "上海", session)
    assert answer["skill"] == "fallback"


def test_a_lost_owner_key_lets_nobody_else_take_the_session(pipeline: Pipeline) -> None:
    client, keys, tokens, repository = pipeline
    session = f"s-{uuid.uuid4().hex}"
    say(client, tokens["alice"], "天气", session)
    deadline = time.monotonic() + WAIT
    while repository.load_session(session) is None:
        assert time.monotonic() < deadline, "the session never reached the database"
        time.sleep(0.01)
    assert keys.delete(f"sess:{session}:owner") == 1

    # The database still knows it is alice's: bob is refused, and his attempt claims nothing.
    refused = post(client, tokens["bob"], "现在几点", session)
    assert refused.status_code == 404, refused.get_data(as_text=True)
    assert refused.get_json()["error"] == "not_found"
    answer = say(client, tokens["alice"], "上海", session)
    assert (answer["skill"], answer["text"]) == ("weather", "上海当前气温 12℃，小雨。")
    assert keys.get(f"sess:{session}:owner") == "alice"
    assert post(client, tokens["bob"], "现在几点", session).status_code == 404
