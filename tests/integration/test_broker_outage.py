"""A message the broker did not take is refused with 503, and sending it again works at once.

Two gateways share Redis state and the database: one whose broker is unreachable, one on the real broker
with real Celery workers, as when the broker comes back or another replica takes the retry.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from adapters.tokens import issue_token
from assistant.bootstrap import build_adapters, build_gateway, build_worker_app
from assistant.embedded import EmbeddedWorkers
from pipeline.settings import Settings
from pipeline.stages import all_queues

pytestmark = pytest.mark.servers

REDIS = "redis://127.0.0.1:6379"
BROKER_DB, STATE_DB = 8, 9
SECRET = "broker-outage-test-secret-" + "x" * 24
#: Nothing listens on port 1: every publish fails, after kombu's own short retries.
DEAD_BROKER = "redis://127.0.0.1:1/0"


def settings_for(root: Path, broker_url: str) -> Settings:
    return Settings.from_env(
        {
            "ASSISTANT_DATA_DIR": str(root / "data"),
            "ASSISTANT_CONFIG_DIR": str(root / "config"),
            "BROKER_URL": broker_url,
            "REDIS_URL": f"{REDIS}/{STATE_DB}",
            "DATABASE_URL": f"sqlite:///{root / 'assistant.db'}",
            "JWT_SECRET": SECRET,
            # A turn lock far longer than the test's wait: a sequence number left behind would show as a timeout.
            "SKILL_TIMEOUT_SECONDS": "30",
        }
    )


@pytest.fixture
def gateways(tmp_path: Path, serve: Any) -> Iterator[tuple[str, str]]:
    for db in (BROKER_DB, STATE_DB):
        redis.Redis.from_url(f"{REDIS}/{db}").flushdb()
    down = settings_for(tmp_path, DEAD_BROKER)
    up = settings_for(tmp_path, f"{REDIS}/{BROKER_DB}")
    down_adapters = build_adapters(down, migrate=True)
    up_adapters = build_adapters(up)
    down_app, up_app = build_worker_app(down), build_worker_app(up)
    workers = EmbeddedWorkers(up_app, all_queues(up.enabled_channels), concurrency=2)
    workers.start()
    try:
        with (
            serve(build_gateway(down, down_adapters, down_app)) as down_url,
            serve(build_gateway(up, up_adapters, up_app)) as up_url,
        ):
            yield down_url, up_url
    finally:
        workers.stop()
        down_adapters.close()
        up_adapters.close()
        down_app.close()
        up_app.close()


def test_a_refused_message_can_be_sent_again_with_the_same_client_msg_id(gateways: tuple[str, str]) -> None:
    down_url, up_url = gateways
    headers = {"Authorization": f"Bearer {issue_token(Settings(jwt_secret=SECRET), 'alice', ('user',), 600)}"}
    body = {"text": "现在几点", "session_id": "outage-1", "client_msg_id": "c-1"}

    refused = requests.post(f"{down_url}/api/messages?wait=5", json=body, headers=headers, timeout=30)
    assert refused.status_code == 503
    assert "queue" in refused.json()["message"]

    # Not taken for a duplicate of the refused one, and not held back behind its sequence number.
    again = requests.post(f"{up_url}/api/messages?wait=10", json=body, headers=headers, timeout=30)
    assert again.status_code == 200, again.text
    answered = again.json()
    assert "duplicate" not in answered
    assert answered["reply"]["skill"] == "time"
    # The retried message is now the one the client_msg_id names.
    repeat = requests.post(f"{up_url}/api/messages?wait=10", json=body, headers=headers, timeout=30)
    assert (repeat.json()["message_id"], repeat.json().get("duplicate")) == (answered["message_id"], True)
