"""The Telegram channel as compose.yaml runs it: two ``assistant gateway`` replicas, a worker on
``dispatch,inference`` and compose's ``worker-reply-telegram``, as processes on Redis and PostgreSQL, with a local
Bot API server standing in for Telegram."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import requests
import sqlalchemy
from fakes.telegram_server import FakeTelegram
from support import eventually

from e2e.test_compose_layout import BIN, ROOT, Layout, compose_command, free_port, wait_ready

pytestmark = pytest.mark.servers

BROKER_DB, STATE_DB = 8, 9
PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
TOKEN = "424242:E2E-token_never-in-a-log"
SECRET = "e2e_webhook-secret"
DEADLINE = 30.0


@pytest.fixture(scope="module")
def telegram() -> Iterator[FakeTelegram]:
    fake = FakeTelegram(TOKEN)
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory, telegram: FakeTelegram) -> Iterator[dict[str, Any]]:
    database = f"e2e_tg_{uuid.uuid4().hex[:10]}"
    admin = sqlalchemy.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f'CREATE DATABASE "{database}"'))
    for db in (BROKER_DB, STATE_DB):
        redis.Redis(db=db).flushdb()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TELEGRAM_")},
        "BROKER_URL": f"redis://127.0.0.1:6379/{BROKER_DB}",
        "REDIS_URL": f"redis://127.0.0.1:6379/{STATE_DB}",
        "DATABASE_URL": f"postgresql://postgres@127.0.0.1:5432/{database}",
        "JWT_SECRET": uuid.uuid4().hex + uuid.uuid4().hex,
        "LOG_LEVEL": "INFO",
        "HOST": "127.0.0.1",
        "ASSISTANT_CONFIG_DIR": str(tmp_path_factory.mktemp("config")),
        "TELEGRAM_ENABLED": "true",
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "TELEGRAM_WEBHOOK_SECRET": SECRET,
        "TELEGRAM_ALLOWED_USERS": "erin_tg",
        "TELEGRAM_API_URL": telegram.url,
    }
    run = Layout(env, tmp_path_factory.mktemp("e2e-telegram-logs"))
    try:
        migrate = subprocess.run(compose_command("migrate"), cwd=ROOT, env=env, capture_output=True, timeout=60)
        assert migrate.returncode == 0, migrate.stderr.decode()
        ports = [free_port(), free_port()]
        for index, port in enumerate(ports):
            run.start(f"gateway{index}", compose_command("gateway", port))
        run.start("stages", [str(BIN / "assistant"), "worker", "--queues", "dispatch,inference", "--hostname",
                             "stages@%h"])  # fmt: skip
        run.start("reply-telegram", [*compose_command("worker-reply-telegram"), "--hostname", "telegram@%h"])
        for port in ports:
            wait_ready(f"http://127.0.0.1:{port}/readyz", run)
        yield {"urls": [f"http://127.0.0.1:{p}" for p in ports], "run": run}
    finally:
        run.stop()
        for db in (BROKER_DB, STATE_DB):
            redis.Redis(db=db).flushdb()
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()


def update(chat_id: int, text: str, message_id: int = 1) -> dict[str, Any]:
    sender = {"id": chat_id, "is_bot": False, "first_name": "E", "username": "erin_tg", "language_code": "zh"}
    message = {"message_id": message_id, "date": int(time.time()), "from": sender,
               "chat": {"id": chat_id, "type": "private"}, "text": text}  # fmt: skip
    return {"update_id": chat_id * 10 + message_id, "message": message}


def post(url: str, body: dict[str, Any], secret: str = SECRET) -> requests.Response:
    return requests.post(f"{url}/api/telegram", json=body, headers={"X-Telegram-Bot-Api-Secret-Token": secret},
                         timeout=10)  # fmt: skip


def test_an_update_posted_twice_to_two_gateways_ends_in_one_send_message(
    layout: dict[str, Any], telegram: FakeTelegram
) -> None:
    chat = 5_000_000 + int(time.time()) % 100_000
    body = update(chat, "现在几点")
    first, second = layout["urls"]
    started = time.monotonic()
    assert post(first, body).status_code == 200
    assert post(second, body).json().get("duplicate") is True  # the update id, seen by the other replica
    [sent] = eventually(lambda: telegram.sent_to(chat), DEADLINE, what="the reply")
    print(f"webhook to sendMessage: {(sent.at - started) * 1000:.0f} ms")
    assert sent.method == "sendMessage" and sent.params["text"].startswith("现在是 ")
    time.sleep(3.0)
    assert len(telegram.sent_to(chat)) == 1


def test_a_wrong_secret_is_refused_by_every_replica(layout: dict[str, Any], telegram: FakeTelegram) -> None:
    chat = 6_000_000 + int(time.time()) % 100_000
    for url in layout["urls"]:
        assert post(url, update(chat, "现在几点"), secret="not-the-secret").status_code == 403
    time.sleep(2.0)
    assert telegram.sent_to(chat) == []


def test_no_log_shows_the_token(layout: dict[str, Any]) -> None:
    run: Layout = layout["run"]
    for name, _ in run.processes:
        assert TOKEN not in run.log(name), name


def test_figures_webhook_answer_and_reply_latency(layout: dict[str, Any], telegram: FakeTelegram) -> None:
    """Prints how fast the webhook answers Telegram and how long until the reply's sendMessage, one update at a
    time across 20 chats (not a load test: the figures for docs/telegram.md)."""
    base = 7_000_000 + int(time.time()) % 100_000
    answers, replies = [], []
    for index in range(20):
        chat = base + index
        started = time.monotonic()
        assert post(layout["urls"][index % 2], update(chat, "现在几点")).status_code == 200
        answers.append((time.monotonic() - started) * 1000)
        [sent] = eventually(lambda chat=chat: telegram.sent_to(chat), DEADLINE, what="the reply")  # type: ignore[misc]
        replies.append((sent.at - started) * 1000)
    answers.sort()
    replies.sort()
    print(f"\nwebhook answer: p50 {answers[10]:.1f} ms, max {answers[-1]:.1f} ms; "
          f"webhook to sendMessage: p50 {replies[10]:.0f} ms, max {replies[-1]:.0f} ms (20 updates)")  # fmt: skip
