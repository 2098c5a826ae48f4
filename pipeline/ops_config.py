"""Settings of what operators see: error reports (Sentry), metrics and logs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.errors import ConfigurationError


@dataclass(frozen=True, slots=True)
class SentryConfig:
    """Error reports and traces sent to Sentry (``SENTRY_*`` variables); nothing is sent without a DSN."""

    #: The project's DSN; None: Sentry is off. Kept out of the repr (it holds the project's key).
    dsn: str | None = field(default=None, repr=False)
    #: ``SENTRY_ENVIRONMENT`` (production, staging, ...).
    environment: str = "production"
    #: Share of messages whose performance trace is sent, 0..1 (``SENTRY_TRACES_SAMPLE_RATE``); 0: none.
    traces_sample_rate: float = 0.0
    #: ``SENTRY_RELEASE``, the version events are grouped under; None: ``assistant@<installed version>``.
    release: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SentryConfig:
        defaults = cls()
        raw = (env.get("SENTRY_TRACES_SAMPLE_RATE") or "").strip()
        try:
            rate = float(raw) if raw else defaults.traces_sample_rate
        except ValueError as exc:
            raise ConfigurationError(f"SENTRY_TRACES_SAMPLE_RATE must be a number, got {raw!r}") from exc
        if not 0 <= rate <= 1:
            raise ConfigurationError("SENTRY_TRACES_SAMPLE_RATE must be between 0 and 1")
        return cls(
            dsn=(env.get("SENTRY_DSN") or "").strip() or None,
            environment=(env.get("SENTRY_ENVIRONMENT") or defaults.environment).strip(),
            traces_sample_rate=rate,
            release=(env.get("SENTRY_RELEASE") or "").strip() or None,
        )


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """Where worker processes serve their Prometheus metrics (``METRICS_PORT``)."""

    #: Port of a worker's (or the MQTT edge's) ``/metrics``; None: not served. The gateway and ``assistant run``
    #: serve theirs on the HTTP API's ``/metrics`` instead.
    port: int | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> MetricsConfig:
        raw = (env.get("METRICS_PORT") or "").strip()
        if not raw:
            return cls()
        try:
            port = int(raw)
        except ValueError as exc:
            raise ConfigurationError(f"METRICS_PORT must be a port number, got {raw!r}") from exc
        if not 0 < port < 65536:
            raise ConfigurationError("METRICS_PORT must be between 1 and 65535")
        return cls(port=port)


@dataclass(frozen=True, slots=True)
class LogConfig:
    """How logs are written (``LOG_FORMAT``, ``LOG_FILE``); the level is ``Settings.log_level``."""

    #: ``text`` (one readable line) or ``json`` (one JSON object per line).
    format: str = "text"
    #: A file the logs also go to, rotated; None: standard error only.
    file: Path | None = None
    #: Size in bytes at which ``file`` is rotated (``LOG_FILE_MAX_BYTES``).
    file_max_bytes: int = 10 * 1024 * 1024
    #: Rotated files kept beside it, ``.1`` to ``.N`` (``LOG_FILE_BACKUPS``).
    file_backups: int = 5

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> LogConfig:
        fmt = (env.get("LOG_FORMAT") or "text").strip().lower()
        if fmt not in {"text", "json"}:
            raise ConfigurationError(f"LOG_FORMAT must be text or json, got {fmt!r}")
        raw = (env.get("LOG_FILE") or "").strip()
        defaults = cls()
        max_bytes = _whole_number(env, "LOG_FILE_MAX_BYTES", defaults.file_max_bytes)
        if max_bytes < 1024:
            raise ConfigurationError("LOG_FILE_MAX_BYTES must be at least 1024")
        backups = _whole_number(env, "LOG_FILE_BACKUPS", defaults.file_backups)
        if backups < 1:
            raise ConfigurationError("LOG_FILE_BACKUPS must be at least 1 (rotation needs somewhere to go)")
        return cls(format=fmt, file=Path(raw) if raw else None, file_max_bytes=max_bytes, file_backups=backups)


def _whole_number(env: Mapping[str, str], name: str, default: int) -> int:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigurationError(f"{name} must be a whole number, got {raw!r}") from exc
