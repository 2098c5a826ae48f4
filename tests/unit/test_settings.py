"""Settings from an environment mapping and the config folder: defaults, layouts, the secret, channels."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from adapters.tokens import issue_token, read_token
from pipeline.errors import ConfigurationError
from pipeline.settings import MIN_SECRET_LENGTH, Settings
from pipeline.turns import LEASE_RENEW_SECONDS, TURN_LOCK_SECONDS, TURN_WAIT_LIMIT_SECONDS
from tasks.broker import RESTORE_INTERVAL, RESTORE_LOCK_SECONDS, VISIBILITY_TIMEOUT

SECRET = "x" * MIN_SECRET_LENGTH


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A minimal environment: everything in tmp_path, nothing read from the working directory."""
    return {"ASSISTANT_DATA_DIR": str(tmp_path / "data"), "ASSISTANT_CONFIG_DIR": str(tmp_path / "config")}


def distributed(env: dict[str, str], **extra: str) -> dict[str, str]:
    return {**env, "BROKER_URL": "redis://127.0.0.1:6379/0", "REDIS_URL": "redis://127.0.0.1:6379/1", **extra}


def test_defaults_are_the_embedded_layout(env: dict[str, str], tmp_path: Path) -> None:
    settings = Settings.from_env(env)
    assert settings.embedded
    assert settings.broker_url is None and settings.redis_url is None
    assert settings.database_url == f"sqlite:///{(tmp_path / 'data' / 'assistant.db').resolve()}"
    assert settings.host == "127.0.0.1"
    assert settings.port == 8080
    assert settings.enabled_channels == ["web"]
    assert settings.channels == {}
    assert settings.skills_dir is None
    assert settings.max_body_bytes == 64 * 1024
    assert settings.log_level == "INFO"
    assert len(settings.jwt_secret) >= MIN_SECRET_LENGTH


def test_values_are_read_from_the_environment(env: dict[str, str], tmp_path: Path) -> None:
    settings = Settings.from_env(
        distributed(
            env,
            DATABASE_URL="postgresql://db/assistant",
            JWT_SECRET=SECRET,
            SKILLS_DIR=str(tmp_path / "skills"),
            SKILL_TIMEOUT_SECONDS="2.5",
            MAX_BODY_BYTES="1024",
            PORT="9000",
            WEATHER_FORECAST_URL="http://127.0.0.1:1/forecast",
            LOG_LEVEL="debug",
        )
    )
    assert not settings.embedded
    assert settings.database_url == "postgresql://db/assistant"
    assert settings.jwt_secret == SECRET
    assert settings.skills_dir == tmp_path / "skills"
    assert settings.skill_timeout_seconds == 2.5
    assert settings.max_body_bytes == 1024
    assert settings.port == 9000
    assert settings.weather_forecast_url == "http://127.0.0.1:1/forecast"
    assert settings.log_level == "DEBUG"
    # The distributed layout runs in containers: listen on every interface unless told otherwise.
    assert settings.host == "0.0.0.0"


def test_empty_values_fall_back_to_defaults(env: dict[str, str]) -> None:
    settings = Settings.from_env({**env, "BROKER_URL": "", "REDIS_URL": "", "PORT": "", "SKILL_TIMEOUT_SECONDS": ""})
    assert settings.embedded
    assert settings.port == 8080
    assert settings.skill_timeout_seconds == 10.0


def test_broker_without_redis_is_a_configuration_error(env: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError, match="REDIS_URL"):
        Settings.from_env({**env, "BROKER_URL": "redis://127.0.0.1:6379/0", "JWT_SECRET": SECRET})


def test_redis_without_broker_is_a_configuration_error(env: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError, match="BROKER_URL"):
        Settings.from_env({**env, "REDIS_URL": "redis://127.0.0.1:6379/0", "JWT_SECRET": SECRET})


def test_distributed_layout_requires_a_jwt_secret(env: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="JWT_SECRET"):
        Settings.from_env(distributed(env))
    # Nothing is generated on disk for the distributed layout: every process must share one secret.
    assert not (tmp_path / "data" / "jwt_secret").exists()


@pytest.mark.parametrize("layout", ["embedded", "distributed"])
def test_short_jwt_secret_is_refused(env: dict[str, str], layout: str) -> None:
    base = env if layout == "embedded" else distributed(env)
    with pytest.raises(ConfigurationError, match="at least 32"):
        Settings.from_env({**base, "JWT_SECRET": "x" * (MIN_SECRET_LENGTH - 1)})


def test_embedded_secret_is_generated_once_and_read_back(env: dict[str, str], tmp_path: Path) -> None:
    first = Settings.from_env(env)
    path = tmp_path / "data" / "jwt_secret"
    assert path.read_text() == first.jwt_secret
    # Owner-only: the file is as good as an admin password.
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    token = issue_token(first, "alice", ("admin",), ttl_seconds=60)
    restarted = Settings.from_env(env)
    assert restarted.jwt_secret == first.jwt_secret
    assert read_token(restarted, token)["sub"] == "alice"


def test_embedded_secret_from_the_environment_wins_over_the_file(env: dict[str, str], tmp_path: Path) -> None:
    Settings.from_env(env)
    settings = Settings.from_env({**env, "JWT_SECRET": SECRET})
    assert settings.jwt_secret == SECRET


def test_stored_secret_is_read_without_surrounding_whitespace(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "jwt_secret").write_text(f"  {SECRET}\n")
    assert Settings.from_env(env).jwt_secret == SECRET


@pytest.mark.parametrize("content", ["", "\n", "short"])
def test_emptied_or_short_stored_secret_is_refused(env: dict[str, str], tmp_path: Path, content: str) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "jwt_secret").write_text(content)
    with pytest.raises(ConfigurationError, match="jwt_secret"):
        Settings.from_env(env)


def write_channels(tmp_path: Path, content: str) -> None:
    (tmp_path / "config").mkdir(exist_ok=True)
    (tmp_path / "config" / "channels.json").write_text(content, encoding="utf-8")


def test_channels_json_is_parsed(env: dict[str, str], tmp_path: Path) -> None:
    channels = {
        "telegram": {"enabled": True, "bot_token": "123:abc", "webhook_url": "https://example.org/tg",
                     "allowed_users": [42, "小明"]},
        "mqtt": {"enabled": False},
        "web": {"enabled": False},
    }  # fmt: skip
    write_channels(tmp_path, json.dumps({"channels": channels}, ensure_ascii=False))
    settings = Settings.from_env(env)
    assert settings.channels == channels
    # Web is always on; a disabled channel is not.
    assert settings.enabled_channels == ["web", "telegram"]


def test_channels_json_without_channels_key_means_none(env: dict[str, str], tmp_path: Path) -> None:
    write_channels(tmp_path, "{}")
    assert Settings.from_env(env).channels == {}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"channels": ', "not valid JSON"),
        ("[]", "must look like"),
        ('{"channels": []}', "must look like"),
        ('{"channels": "telegram"}', "must look like"),
    ],
)
def test_bad_channels_json_is_a_configuration_error(
    env: dict[str, str], tmp_path: Path, content: str, message: str
) -> None:
    write_channels(tmp_path, content)
    with pytest.raises(ConfigurationError, match=message):
        Settings.from_env(env)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PORT", "eighty"),
        ("MAX_BODY_BYTES", "1.5"),
        ("SKILL_TIMEOUT_SECONDS", "soon"),
        ("JWT_ACCESS_TTL_SECONDS", "1d"),
        ("JWT_REFRESH_TTL_SECONDS", "30d"),
    ],
)
def test_bad_numbers_are_configuration_errors(env: dict[str, str], name: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=name):
        Settings.from_env({**env, name: value})


def test_token_settings_default_to_short_access_tokens(env: dict[str, str]) -> None:
    settings = Settings.from_env(env)
    assert (settings.jwt_audience, settings.jwt_issuer) == ("assistant", "assistant")
    assert (settings.jwt_access_ttl_seconds, settings.jwt_refresh_ttl_seconds) == (900, 30 * 24 * 3600)
    custom = Settings.from_env({**env, "JWT_AUDIENCE": "widget", "JWT_ISSUER": "shop", "JWT_ACCESS_TTL_SECONDS": "60",
                                "JWT_REFRESH_TTL_SECONDS": "3600"})  # fmt: skip
    assert (custom.jwt_audience, custom.jwt_issuer, custom.jwt_access_ttl_seconds, custom.jwt_refresh_ttl_seconds) == (
        "widget", "shop", 60, 3600)  # fmt: skip


@pytest.mark.parametrize(("access", "refresh"), [("0", "3600"), ("-5", "3600"), ("7200", "3600")])
def test_access_tokens_live_less_than_refresh_tokens(env: dict[str, str], access: str, refresh: str) -> None:
    with pytest.raises(ConfigurationError, match="JWT_ACCESS_TTL_SECONDS"):
        Settings.from_env({**env, "JWT_ACCESS_TTL_SECONDS": access, "JWT_REFRESH_TTL_SECONDS": refresh})


def test_the_removed_token_lifetime_setting_is_refused_by_name(env: dict[str, str]) -> None:
    # Its old 7-day value must not be silently ignored nor silently kept.
    with pytest.raises(ConfigurationError, match=r"JWT_TTL_SECONDS is no longer read.*JWT_ACCESS_TTL_SECONDS"):
        Settings.from_env({**env, "JWT_TTL_SECONDS": "604800"})


@pytest.mark.parametrize("value", ["0", "-1", "61"])
def test_skill_timeout_is_bounded(env: dict[str, str], value: str) -> None:
    with pytest.raises(ConfigurationError, match="SKILL_TIMEOUT_SECONDS"):
        Settings.from_env({**env, "SKILL_TIMEOUT_SECONDS": value})


def test_a_live_workers_leases_outlast_missed_renewals_and_a_dead_workers_expire_within_the_recovery_target() -> None:
    # A live worker may miss two renewals (a busy machine) before its lock or deliveries lapse.
    assert 3 * LEASE_RENEW_SECONDS <= TURN_LOCK_SECONDS
    assert 3 * LEASE_RENEW_SECONDS <= VISIBILITY_TIMEOUT
    # A dead worker's message comes back (timeout plus one sweep) after its session lock lapsed, well within
    # 30 s, and before the session's next messages stop waiting for it.
    # At worst the dead worker held the restore sweep's lock too.
    comes_back = VISIBILITY_TIMEOUT + RESTORE_INTERVAL + RESTORE_LOCK_SECONDS
    assert TURN_LOCK_SECONDS <= comes_back < 30 < TURN_WAIT_LIMIT_SECONDS


def test_no_secret_shows_in_the_settings_repr(tmp_path: Path) -> None:
    secret = "s" * 40
    settings = Settings.from_env({"ASSISTANT_DATA_DIR": str(tmp_path), "JWT_SECRET": secret,
                                  "MODEL_API_KEY": "sk-test-key-1234", "BROKER_URL": "redis://:brokerpw@r:6379/0",
                                  "REDIS_URL": "redis://:statepw@r:6379/1",
                                  "DATABASE_URL": "postgresql://u:dbpw@db/assistant"})  # fmt: skip
    shown = repr(settings)
    assert secret not in shown
    for password in ("brokerpw", "statepw", "dbpw"):
        assert password not in shown
    assert "sk-test-key-1234" not in shown
