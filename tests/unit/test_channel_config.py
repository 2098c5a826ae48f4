"""The Telegram bot's settings: channels.json in the users' shape, the environment winning, secrets hidden."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ingress.telegram import check_config
from pipeline.channel_config import TelegramConfig
from pipeline.errors import ConfigurationError
from pipeline.settings import Settings

TOKEN = "123456:ABC-secret-token"


def test_defaults() -> None:
    config = TelegramConfig.from_sources({}, {})
    assert config == TelegramConfig()
    assert not config.enabled and config.api_url == "https://api.telegram.org" and config.chat_interval_seconds == 1.0


def test_the_file_in_the_users_shape() -> None:
    channel = {"enabled": True, "bot_token": TOKEN, "webhook_url": "https://your-domain.com/api/telegram",
               "allowed_users": ["user123", "@user456", 789], "webhook_secret": "s3cret"}  # fmt: skip
    config = TelegramConfig.from_sources(channel, {})
    assert config.enabled and config.bot_token == TOKEN and config.webhook_secret == "s3cret"
    assert config.webhook_url == "https://your-domain.com/api/telegram"
    assert config.allowed_users == ("user123", "user456", "789")


def test_the_environment_wins() -> None:
    channel = {"enabled": False, "bot_token": "from-file", "webhook_url": "https://a.example/x"}
    env = {
        "TELEGRAM_ENABLED": "true",
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "TELEGRAM_WEBHOOK_URL": "https://b.example/api/telegram",
        "TELEGRAM_WEBHOOK_SECRET": "env-secret",
        "TELEGRAM_API_URL": "http://127.0.0.1:9999/",
        "TELEGRAM_CHAT_INTERVAL_SECONDS": "0.5",
    }
    config = TelegramConfig.from_sources(channel, env)
    assert config.enabled and config.bot_token == TOKEN and config.webhook_secret == "env-secret"
    assert config.webhook_url == "https://b.example/api/telegram"
    assert config.api_url == "http://127.0.0.1:9999"
    assert config.chat_interval_seconds == 0.5
    assert not TelegramConfig.from_sources({"enabled": True}, {"TELEGRAM_ENABLED": "0"}).enabled


def test_secrets_stay_out_of_its_repr() -> None:
    config = TelegramConfig.from_sources({"enabled": True, "bot_token": TOKEN, "webhook_secret": "hidden-secret"}, {})
    assert TOKEN not in repr(config) and "hidden-secret" not in repr(config)
    assert TOKEN not in repr(Settings(telegram=config))
    # The raw channels.json, which may hold the token too, stays out of the settings' repr.
    assert TOKEN not in repr(Settings(channels={"telegram": {"bot_token": TOKEN}}, telegram=config))


@pytest.mark.parametrize(
    ("channel", "env", "message"),
    [
        ({"allowed_users": "user123"}, {}, "allowed_users"),
        ({"allowed_users": [["x"]]}, {}, "allowed_users"),
        ({}, {"TELEGRAM_CHAT_INTERVAL_SECONDS": "soon"}, "TELEGRAM_CHAT_INTERVAL_SECONDS"),
        ({}, {"TELEGRAM_CHAT_INTERVAL_SECONDS": "-1"}, "TELEGRAM_CHAT_INTERVAL_SECONDS"),
    ],
)
def test_bad_values_are_configuration_errors(channel: dict[str, object], env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        TelegramConfig.from_sources(channel, env)


def test_settings_read_channels_json(tmp_path: Path) -> None:
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    channels = {"channels": {"telegram": {"enabled": True, "bot_token": "file-token", "allowed_users": ["a"]}}}
    (config_dir / "channels.json").write_text(json.dumps(channels), encoding="utf-8")
    env = {"ASSISTANT_DATA_DIR": str(tmp_path / "data"), "ASSISTANT_CONFIG_DIR": str(config_dir),
           "TELEGRAM_BOT_TOKEN": TOKEN}  # fmt: skip
    settings = Settings.from_env(env)
    assert settings.telegram.bot_token == TOKEN and settings.telegram.allowed_users == ("a",)
    assert "telegram" in settings.enabled_channels


@pytest.mark.parametrize(
    ("token", "secret", "message"),
    [
        ("", "good_secret", "TELEGRAM_BOT_TOKEN"),
        (TOKEN, "", "TELEGRAM_WEBHOOK_SECRET"),
        (TOKEN, "has spaces", "A-Z a-z 0-9 _ -"),
        (TOKEN, "x" * 257, "A-Z a-z 0-9 _ -"),
    ],
)
def test_the_webhook_needs_a_token_and_a_secret_telegram_accepts(token: str, secret: str, message: str) -> None:
    config = TelegramConfig(enabled=True, bot_token=token, webhook_secret=secret, allowed_users=("a",))
    with pytest.raises(ConfigurationError, match=message):
        check_config(Settings(telegram=config))
    check_config(Settings(telegram=TelegramConfig(enabled=True, bot_token=TOKEN, webhook_secret="Good_secret-1",
                                                  allowed_users=("a",))))  # fmt: skip


def test_an_open_bot_must_be_asked_for() -> None:
    open_bot = TelegramConfig(enabled=True, bot_token=TOKEN, webhook_secret="Good_secret-1")
    with pytest.raises(ConfigurationError, match="allowed_users is empty"):
        check_config(Settings(telegram=open_bot))
    check_config(Settings(telegram=TelegramConfig(enabled=True, bot_token=TOKEN, webhook_secret="Good_secret-1",
                                                  allowed_users=("*",))))  # fmt: skip


def test_the_environment_s_allowed_users_win_over_the_file() -> None:
    config = TelegramConfig.from_sources({"allowed_users": ["a"]}, {"TELEGRAM_ALLOWED_USERS": " @bo, 42 ,"})
    assert config.allowed_users == ("bo", "42")
    assert TelegramConfig.from_sources({"allowed_users": ["a"]}, {}).allowed_users == ("a",)
