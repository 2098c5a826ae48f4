"""``assistant telegram set-webhook|info|delete-webhook`` as processes against the local Bot API; the Bot API client's
errors, which never show the token."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes.telegram_server import FakeTelegram

from adapters.telegram import TelegramBot, TelegramError, TelegramUnreachable

TOKEN = "987654:CLI-token_that-must-never-be-printed"
SECRET = "cli_webhook-secret"
_SERVERS = ("BROKER_URL", "REDIS_URL", "DATABASE_URL", "ASSISTANT_CONFIG_DIR")


@pytest.fixture(scope="module")
def telegram() -> Iterator[FakeTelegram]:
    fake = FakeTelegram(TOKEN)
    yield fake
    fake.stop()


@pytest.fixture
def env(tmp_path: Path, telegram: FakeTelegram) -> dict[str, str]:
    values = {k: v for k, v in os.environ.items() if k not in _SERVERS and not k.startswith("TELEGRAM_")}
    return values | {
        "ASSISTANT_DATA_DIR": str(tmp_path / "data"),
        "ASSISTANT_CONFIG_DIR": str(tmp_path / "config"),
        "TELEGRAM_ENABLED": "1",
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "TELEGRAM_WEBHOOK_SECRET": SECRET,
        "TELEGRAM_ALLOWED_USERS": "erin_tg",
        "TELEGRAM_WEBHOOK_URL": "https://assistant.example.com/api/telegram",
        "TELEGRAM_API_URL": telegram.url,
    }


def assistant(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "assistant.cli", "telegram", *args], env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip


def test_set_webhook_info_and_delete(env: dict[str, str], telegram: FakeTelegram) -> None:
    done = assistant(["set-webhook"], env)
    assert done.returncode == 0, done.stderr
    assert "https://assistant.example.com/api/telegram" in done.stdout
    [call] = telegram.calls("setWebhook")
    assert call.params == {"url": "https://assistant.example.com/api/telegram", "secret_token": SECRET,
                           "allowed_updates": ["message"]}  # fmt: skip
    info = assistant(["info"], env)
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["url"] == "https://assistant.example.com/api/telegram"
    deleted = assistant(["delete-webhook", "--drop-pending"], env)
    assert deleted.returncode == 0 and "deleted" in deleted.stdout
    assert telegram.calls("deleteWebhook")[0].params == {"drop_pending_updates": True}
    for result in (done, info, deleted):
        assert TOKEN not in result.stdout + result.stderr and SECRET not in result.stdout + result.stderr


def test_set_webhook_needs_the_secret(env: dict[str, str]) -> None:
    done = assistant(["set-webhook"], env | {"TELEGRAM_WEBHOOK_SECRET": ""})
    assert done.returncode == 2 and "TELEGRAM_WEBHOOK_SECRET" in done.stderr


def test_a_refusal_is_reported_without_the_token(env: dict[str, str], telegram: FakeTelegram) -> None:
    telegram.fail("setWebhook", 400, "Bad Request: bad webhook: HTTPS url must be provided for webhook")
    done = assistant(["set-webhook"], env)
    assert done.returncode == 1 and "HTTPS url must be provided" in done.stderr
    assert TOKEN not in done.stdout + done.stderr
    unreachable = assistant(["info"], env | {"TELEGRAM_API_URL": f"http://127.0.0.1:{free_port()}"})
    assert unreachable.returncode == 1 and "ConnectionError" in unreachable.stderr
    assert TOKEN not in unreachable.stdout + unreachable.stderr


def test_the_client_reads_flood_control_and_hides_the_token(telegram: FakeTelegram) -> None:
    bot = TelegramBot(telegram.url, TOKEN)
    telegram.fail("sendMessage", 429, "Too Many Requests: retry after 7", retry_after=7)
    with pytest.raises(TelegramError) as flood:
        bot.send_message(1, "hi")
    assert (flood.value.status, flood.value.retry_after, flood.value.transient) == (429, 7.0, True)
    telegram.fail("sendMessage", 403, "Forbidden: bot was blocked by the user")
    with pytest.raises(TelegramError) as blocked:
        bot.send_message(1, "hi")
    assert blocked.value.status == 403 and not blocked.value.transient
    with pytest.raises(TelegramError) as wrong_token:
        TelegramBot(telegram.url, "1:wrong").send_message(1, "hi")
    assert wrong_token.value.status == 401
    closed = TelegramBot(f"http://127.0.0.1:{free_port()}", TOKEN)
    with pytest.raises(TelegramUnreachable) as unreachable:
        closed.send_message(1, "hi")
    assert TOKEN not in str(unreachable.value) and unreachable.value.__cause__ is None
    assert bot.send_message(1, "hi")["chat"]["id"] == 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
