"""Settings, read once at an entry point from the environment and ``config/channels.json``."""

from __future__ import annotations

import json
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pipeline.audio_config import AudioConfig
from pipeline.channel_config import MqttConfig, TelegramConfig, devices_file
from pipeline.errors import ConfigurationError
from pipeline.model_config import IntentConfig, ModelConfig
from pipeline.ops_config import LogConfig, MetricsConfig, SentryConfig

MIN_SECRET_LENGTH = 32
#: The longest skill time limit: a skill holds its session's turn, and every later message of it, while it runs.
MAX_SKILL_TIMEOUT_SECONDS = 60.0
#: A rate limit as Flask-Limiter writes it: ``120/minute``, ``10 per second``, several joined by ``;``.
_ONE_LIMIT = r"\s*\d+\s*(?:/|\s+per\s+)\s*(?:\d+\s*)?(?:second|minute|hour|day|month|year)s?\s*"
RATE_LIMIT = re.compile(rf"^{_ONE_LIMIT}(?:[,;|]{_ONE_LIMIT})*$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything configurable. Fields map to environment variables of the same name, upper-cased."""

    #: Folder for the embedded mode's SQLite database, JWT secret and files (``ASSISTANT_DATA_DIR``).
    data_dir: Path = Path("data")
    #: Folder of ``channels.json`` and ``audio.yml`` (``ASSISTANT_CONFIG_DIR``).
    config_dir: Path = Path("config")
    #: Celery broker; unset means the embedded in-memory broker with in-process workers.
    #: The three URLs and the secret below stay out of the repr: they may carry passwords.
    broker_url: str | None = field(default=None, repr=False)
    #: Redis for session state, reply streams and dedup keys; required with a broker.
    redis_url: str | None = field(default=None, repr=False)
    #: SQLAlchemy URL (``postgresql://``, ``mysql+pymysql://``, ``sqlite:///``); SQLite in the data folder if unset.
    database_url: str = field(default="", repr=False)
    #: HMAC secret for access and refresh tokens; generated into the data folder in embedded mode.
    jwt_secret: str = field(default="", repr=False)
    #: The ``aud`` claim tokens are issued with and must carry.
    jwt_audience: str = "assistant"
    #: The ``iss`` claim tokens are issued with and must carry.
    jwt_issuer: str = "assistant"
    #: Lifetime of access tokens, seconds; short, since a refresh token gets a new one.
    jwt_access_ttl_seconds: int = 15 * 60
    #: Lifetime of refresh tokens, seconds; also the longest any token may live and how long a
    #: "revoke every token of this subject" is remembered.
    jwt_refresh_ttl_seconds: int = 30 * 24 * 3600
    #: Lifetime of a website visitor's token (``POST /api/visitor-tokens``), seconds.
    visitor_token_ttl_seconds: int = 15 * 60
    #: How long after it expired a visitor's token may still be traded for a new one with the same subject, seconds.
    visitor_renew_seconds: int = 30 * 24 * 3600
    #: Lifetime of a single-use stream ticket (``?ticket=`` on an event stream), seconds.
    stream_ticket_ttl_seconds: int = 30
    #: Visitor tokens one client address may get per window (on top of ``RATE_LIMIT_PER_IP``); None: no limit.
    rate_limit_visitor_tokens: str | None = "60/minute"
    #: Extra folder of user skills (``*.py`` files defining ``BaseSkill`` subclasses).
    skills_dir: Path | None = None
    #: Open-Meteo geocoding API base URL.
    weather_geocoding_url: str = "https://geocoding-api.open-meteo.com/v1/search"
    #: Open-Meteo forecast API base URL.
    weather_forecast_url: str = "https://api.open-meteo.com/v1/forecast"
    #: Seconds a weather or webhook call may take before the polite failure reply.
    http_timeout_seconds: float = 5.0
    #: Hosts (names or IP addresses, as written in webhook URLs) that webhooks may reach although they are
    #: loopback, private or link-local; every other internal address is refused.
    webhook_allow_hosts: tuple[str, ...] = ()
    #: Largest webhook answer read, bytes; a longer one fails like an unreachable webhook.
    webhook_max_bytes: int = 64 * 1024
    #: Seconds a skill may run before the user gets an apology and the worker moves on (at most
    #: ``MAX_SKILL_TIMEOUT_SECONDS``).
    skill_timeout_seconds: float = 10.0
    #: Reply when no skill matched and no inference backend is configured (Chinese).
    fallback_reply_zh: str = "抱歉，我还不明白。输入“帮助”看看我能做什么。"
    #: The same in English.
    fallback_reply_en: str = 'Sorry, I don\'t understand that yet. Say "help" to see what I can do.'
    #: Largest request body the HTTP API accepts, bytes.
    max_body_bytes: int = 64 * 1024
    #: Seconds ``POST /api/messages`` waits for the reply when the client names no ``wait``.
    default_wait_seconds: float = 10.0
    #: Upper bound of ``wait`` and of a long-poll, seconds.
    max_wait_seconds: float = 60.0
    #: Seconds a session's state and reply stream stay in Redis after its last message.
    session_ttl_seconds: int = 7 * 24 * 3600
    #: Seconds a web visitor who asked for a person waits for an operator to take the session before being told
    #: nobody is available and asked to leave a message.
    handoff_wait_seconds: float = 120.0
    #: Deliveries of one queue message before it goes to the dead-letter table.
    max_deliveries: int = 5
    #: Embedded broker's polling interval, seconds; it is the latency of each in-process hop.
    embedded_polling_interval: float = 0.002
    #: Requests one user (token subject) may make to ``/api`` per window, such as ``120/minute``; None: no limit.
    rate_limit_per_user: str | None = "120/minute"
    #: Requests one client address may make to ``/api`` per window; None: no limit.
    rate_limit_per_ip: str | None = "600/minute"
    #: Host and port the HTTP API binds.
    host: str = "127.0.0.1"
    port: int = 8080
    #: Channel settings from ``config/channels.json`` (``{"telegram": {"enabled": ...}}``); out of the repr, since
    #: the file may hold the bot's token.
    channels: Mapping[str, Any] = field(default_factory=dict, repr=False)
    #: Python logging level name.
    log_level: str = "INFO"
    #: Speech recognition and synthesis (``config/audio.yml``), models and audio limits.
    audio: AudioConfig = field(default_factory=AudioConfig)
    #: The generative backend of the inference stage (``MODEL_*``).
    model: ModelConfig = field(default_factory=ModelConfig)
    #: The intent classifier of the dispatch stage (``INTENT_*``).
    intents: IntentConfig = field(default_factory=IntentConfig)
    #: The MQTT edge and deliverer (``MQTT_*``).
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    #: The Telegram bot (``channels.telegram`` in ``channels.json``, ``TELEGRAM_*``).
    telegram: TelegramConfig = field(default_factory=TelegramConfig)
    #: The smart home's areas and entities (``DEVICES_FILE``, Home Assistant's fixture shape).
    devices_file: Path = Path("config/devices.yaml")
    #: Error reports to Sentry (``SENTRY_*``).
    sentry: SentryConfig = field(default_factory=SentryConfig)
    #: Workers' metrics port (``METRICS_PORT``).
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    #: Log format and file (``LOG_FORMAT``, ``LOG_FILE``).
    logs: LogConfig = field(default_factory=LogConfig)

    @property
    def embedded(self) -> bool:
        """True when no broker is configured: everything runs in one process."""
        return self.broker_url is None

    @property
    def enabled_channels(self) -> list[str]:
        """``web`` always, ``mqtt`` when ``MQTT_URL`` is set, ``telegram`` when enabled, plus every other channel
        enabled in ``channels.json``."""
        extra = [name for name, conf in self.channels.items() if name not in {"web", "mqtt", "telegram"}
                 and isinstance(conf, dict) and conf.get("enabled")]  # fmt: skip
        mqtt = ["mqtt"] if self.mqtt.url else []
        telegram = ["telegram"] if self.telegram.enabled else []
        return ["web", *mqtt, *telegram, *extra]

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read settings from ``env`` (the process environment by default) and the config folder."""
        env = os.environ if env is None else env
        data_dir = Path(env.get("ASSISTANT_DATA_DIR", "data"))
        config_dir = Path(env.get("ASSISTANT_CONFIG_DIR", "config"))
        broker_url = env.get("BROKER_URL") or None
        redis_url = env.get("REDIS_URL") or None
        if env.get("JWT_TTL_SECONDS"):
            # Removed rather than kept as an alias: its old 7-day value would silently make access tokens long-lived.
            raise ConfigurationError(
                "JWT_TTL_SECONDS is no longer read: set JWT_ACCESS_TTL_SECONDS (default 900) and "
                "JWT_REFRESH_TTL_SECONDS (default 2592000) instead"
            )
        if broker_url and not redis_url:
            raise ConfigurationError("BROKER_URL is set but REDIS_URL is not: the distributed layout needs both")
        if redis_url and not broker_url:
            raise ConfigurationError("REDIS_URL is set but BROKER_URL is not: the distributed layout needs both")
        defaults = cls()
        settings = cls(
            data_dir=data_dir,
            config_dir=config_dir,
            broker_url=broker_url,
            redis_url=redis_url,
            database_url=env.get("DATABASE_URL") or f"sqlite:///{(data_dir / 'assistant.db').resolve()}",
            jwt_secret=env.get("JWT_SECRET", ""),
            jwt_audience=env.get("JWT_AUDIENCE") or defaults.jwt_audience,
            jwt_issuer=env.get("JWT_ISSUER") or defaults.jwt_issuer,
            jwt_access_ttl_seconds=_int(env, "JWT_ACCESS_TTL_SECONDS", defaults.jwt_access_ttl_seconds),
            jwt_refresh_ttl_seconds=_int(env, "JWT_REFRESH_TTL_SECONDS", defaults.jwt_refresh_ttl_seconds),
            visitor_token_ttl_seconds=_int(env, "VISITOR_TOKEN_TTL_SECONDS", defaults.visitor_token_ttl_seconds),
            visitor_renew_seconds=_int(env, "VISITOR_RENEW_SECONDS", defaults.visitor_renew_seconds),
            stream_ticket_ttl_seconds=_int(env, "STREAM_TICKET_TTL_SECONDS", defaults.stream_ticket_ttl_seconds),
            rate_limit_visitor_tokens=_rate_limit(env, "RATE_LIMIT_VISITOR_TOKENS", defaults.rate_limit_visitor_tokens),
            skills_dir=Path(env["SKILLS_DIR"]) if env.get("SKILLS_DIR") else None,
            weather_geocoding_url=env.get("WEATHER_GEOCODING_URL", defaults.weather_geocoding_url),
            weather_forecast_url=env.get("WEATHER_FORECAST_URL", defaults.weather_forecast_url),
            http_timeout_seconds=_float(env, "HTTP_TIMEOUT_SECONDS", defaults.http_timeout_seconds),
            webhook_allow_hosts=_names(env.get("WEBHOOK_ALLOW_HOSTS", "")),
            webhook_max_bytes=_int(env, "WEBHOOK_MAX_BYTES", defaults.webhook_max_bytes),
            skill_timeout_seconds=_float(env, "SKILL_TIMEOUT_SECONDS", defaults.skill_timeout_seconds),
            fallback_reply_zh=env.get("FALLBACK_REPLY_ZH", defaults.fallback_reply_zh),
            fallback_reply_en=env.get("FALLBACK_REPLY_EN", defaults.fallback_reply_en),
            max_body_bytes=_int(env, "MAX_BODY_BYTES", defaults.max_body_bytes),
            default_wait_seconds=_float(env, "DEFAULT_WAIT_SECONDS", defaults.default_wait_seconds),
            max_wait_seconds=_float(env, "MAX_WAIT_SECONDS", defaults.max_wait_seconds),
            session_ttl_seconds=_int(env, "SESSION_TTL_SECONDS", defaults.session_ttl_seconds),
            handoff_wait_seconds=_float(env, "HANDOFF_WAIT_SECONDS", defaults.handoff_wait_seconds),
            max_deliveries=_int(env, "MAX_DELIVERIES", defaults.max_deliveries),
            embedded_polling_interval=_float(env, "EMBEDDED_POLLING_INTERVAL", defaults.embedded_polling_interval),
            rate_limit_per_user=_rate_limit(env, "RATE_LIMIT_PER_USER", defaults.rate_limit_per_user),
            rate_limit_per_ip=_rate_limit(env, "RATE_LIMIT_PER_IP", defaults.rate_limit_per_ip),
            host=env.get("HOST", "127.0.0.1" if not broker_url else "0.0.0.0"),
            port=_int(env, "PORT", defaults.port),
            channels=_read_channels(config_dir / "channels.json"),
            log_level=env.get("LOG_LEVEL", "INFO").upper(),
            model=ModelConfig.from_env(env),
            intents=IntentConfig.from_env(env, data_dir),
            mqtt=MqttConfig.from_env(env),
            devices_file=devices_file(env, config_dir),
            sentry=SentryConfig.from_env(env),
            metrics=MetricsConfig.from_env(env),
            logs=LogConfig.from_env(env),
        )
        telegram = settings.channels.get("telegram", {})
        if not isinstance(telegram, dict):
            raise ConfigurationError("channels.telegram in channels.json must be an object")
        settings = replace(settings, telegram=TelegramConfig.from_sources(telegram, env))
        if not 0 < settings.skill_timeout_seconds <= MAX_SKILL_TIMEOUT_SECONDS:
            raise ConfigurationError(f"SKILL_TIMEOUT_SECONDS must be above 0 and at most {MAX_SKILL_TIMEOUT_SECONDS:g}")
        if not 0 < settings.jwt_access_ttl_seconds <= settings.jwt_refresh_ttl_seconds:
            raise ConfigurationError("JWT_ACCESS_TTL_SECONDS must be above 0 and at most JWT_REFRESH_TTL_SECONDS")
        if not 0 < settings.handoff_wait_seconds <= settings.session_ttl_seconds:
            raise ConfigurationError("HANDOFF_WAIT_SECONDS must be above 0 and at most SESSION_TTL_SECONDS")
        if not 0 < settings.visitor_token_ttl_seconds <= settings.jwt_refresh_ttl_seconds:
            raise ConfigurationError("VISITOR_TOKEN_TTL_SECONDS must be above 0 and at most JWT_REFRESH_TTL_SECONDS")
        if settings.visitor_renew_seconds < 0:
            raise ConfigurationError("VISITOR_RENEW_SECONDS must be 0 or more")
        if not 0 < settings.stream_ticket_ttl_seconds <= 3600:
            raise ConfigurationError("STREAM_TICKET_TTL_SECONDS must be above 0 and at most 3600")
        if settings.webhook_max_bytes <= 0:
            raise ConfigurationError("WEBHOOK_MAX_BYTES must be above 0")
        return settings.with_secret()

    def with_secret(self) -> Settings:
        """Check the JWT secret; in embedded mode make one (kept in the data folder) if none is set."""
        if self.jwt_secret:
            if len(self.jwt_secret) < MIN_SECRET_LENGTH:
                raise ConfigurationError(f"JWT_SECRET must be at least {MIN_SECRET_LENGTH} characters")
            return self
        if not self.embedded:
            raise ConfigurationError("JWT_SECRET is required outside embedded mode (at least 32 characters)")
        return replace(self, jwt_secret=embedded_secret(self.data_dir))


def embedded_secret(data_dir: Path) -> str:
    """The embedded mode's token secret: generated once, then read back so tokens survive restarts."""
    path = data_dir / "jwt_secret"
    if path.exists():
        stored = path.read_text().strip()
        # An emptied or hand-edited file must not silently become a weak (or empty) signing key.
        if len(stored) < MIN_SECRET_LENGTH:
            raise ConfigurationError(
                f"{path} holds a secret shorter than {MIN_SECRET_LENGTH} characters; delete it to generate a new one"
            )
        return stored
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    # Created with owner-only permissions: the file is as good as an admin password.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret)
    return secret


def _read_channels(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ConfigurationError(f"{path} is not valid JSON: {exc}") from exc
    channels = data.get("channels", {}) if isinstance(data, dict) else None
    if not isinstance(channels, dict):
        raise ConfigurationError(f'{path} must look like {{"channels": {{"telegram": {{...}}}}}}')
    return channels


def _names(raw: str) -> tuple[str, ...]:
    """A comma-separated list, trimmed, lower-cased, without blanks or the brackets of IPv6 addresses."""
    return tuple(name for part in raw.split(",") if (name := part.strip().strip("[]").lower()))


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigurationError(f"{name} must be an integer, got {raw!r}") from exc


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ConfigurationError(f"{name} must be a number, got {raw!r}") from exc


def _rate_limit(env: Mapping[str, str], name: str, default: str | None) -> str | None:
    """A rate limit string; ``off`` turns the limit off (None)."""
    raw = env.get(name, "").strip()
    if raw == "":
        return default
    if raw.lower() == "off":
        return None
    if not RATE_LIMIT.match(raw):
        raise ConfigurationError(f"{name} must look like '120/minute' (or '10 per second'), or be 'off'; got {raw!r}")
    return raw
