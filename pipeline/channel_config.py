"""Settings of the MQTT and Telegram edges: the environment, and ``config/channels.json`` for Telegram."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigurationError


@dataclass(frozen=True, slots=True)
class MqttConfig:
    """The MQTT edge (``assistant mqtt``) and the ``reply.mqtt`` deliverer (``MQTT_*`` variables)."""

    #: ``mqtt://user:password@host:1883`` or ``mqtts://...``; None: no MQTT edge.
    url: str | None = field(default=None, repr=False)
    #: The fixed client id of the edge, so the broker keeps its persistent session (and queued requests) across
    #: restarts. Deliverers publish with their own ids derived from it.
    client_id: str = "assistant-edge"
    #: Device ids that may send requests; empty: the ``devices`` listed in the devices file, and when that lists
    #: none either, any device (the embedded default).
    allowed_devices: tuple[str, ...] = ()
    #: Largest request or state payload, bytes; a larger request gets an error reply. Audio payloads may be up to
    #: ``MAX_AUDIO_BYTES``, as on the HTTP edge.
    max_payload_bytes: int = 64 * 1024
    #: First level of the request, audio, reply and error topics (``MQTT_TOPIC_PREFIX``):
    #: ``<prefix>/<device_id>/request``.
    topic_prefix: str = "assistant"
    #: First level of the smart home's state and command topics (``MQTT_STATE_PREFIX``):
    #: ``<state_prefix>/<area_id>/<object_id>/state`` and ``.../set``.
    state_prefix: str = "home"
    #: Seconds between keep-alive pings (``MQTT_KEEPALIVE_SECONDS``); a dead link is noticed after 1.5 times this.
    keepalive_seconds: int = 30
    #: How long the broker keeps a persistent session (subscriptions and queued QoS 1 messages) after the client
    #: went away, seconds (``MQTT_SESSION_EXPIRY_SECONDS``).
    session_expiry_seconds: int = 7 * 24 * 3600
    #: CA bundle to check the broker's certificate with for ``mqtts://`` (``MQTT_CA_FILE``); empty: the system's.
    ca_file: str = ""
    #: Seconds a device command stays valid; one that waited longer is dropped (``MQTT_COMMAND_TTL_SECONDS``).
    command_ttl_seconds: int = 30

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> MqttConfig:
        defaults = cls()
        url = (env.get("MQTT_URL") or "").strip() or None
        if url is not None and not url.startswith(("mqtt://", "mqtts://")):
            raise ConfigurationError("MQTT_URL must start with mqtt:// or mqtts://")
        prefixes = {}
        for name, default in (
            ("MQTT_TOPIC_PREFIX", defaults.topic_prefix),
            ("MQTT_STATE_PREFIX", defaults.state_prefix),
        ):
            prefix = (env.get(name) or default).strip().strip("/")
            if not prefix or any(c in prefix for c in "+#\0"):
                raise ConfigurationError(f"{name} must be a topic without wildcards, got {prefix!r}")
            prefixes[name] = prefix
        return cls(
            url=url,
            client_id=(env.get("MQTT_CLIENT_ID") or defaults.client_id).strip(),
            allowed_devices=tuple(d for part in env.get("MQTT_ALLOWED_DEVICES", "").split(",") if (d := part.strip())),
            max_payload_bytes=_positive(env, "MQTT_MAX_PAYLOAD_BYTES", defaults.max_payload_bytes),
            topic_prefix=prefixes["MQTT_TOPIC_PREFIX"],
            state_prefix=prefixes["MQTT_STATE_PREFIX"],
            keepalive_seconds=_positive(env, "MQTT_KEEPALIVE_SECONDS", defaults.keepalive_seconds),
            session_expiry_seconds=_positive(env, "MQTT_SESSION_EXPIRY_SECONDS", defaults.session_expiry_seconds),
            ca_file=(env.get("MQTT_CA_FILE") or "").strip(),
            command_ttl_seconds=_positive(env, "MQTT_COMMAND_TTL_SECONDS", defaults.command_ttl_seconds),
        )


def _positive(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    try:
        value = int(raw) if raw else default
    except ValueError as exc:
        raise ConfigurationError(f"{name} must be an integer, got {raw!r}") from exc
    if value <= 0:
        raise ConfigurationError(f"{name} must be above 0")
    return value


@dataclass(frozen=True, slots=True)
class TelegramConfig:
    """The Telegram bot: ``channels.telegram`` in ``config/channels.json``, secrets also from the environment."""

    #: True when ``"enabled": true`` in channels.json (or ``TELEGRAM_ENABLED``).
    enabled: bool = False
    #: The bot's token from BotFather (``TELEGRAM_BOT_TOKEN`` wins over the file); never logged.
    bot_token: str = ""
    #: The public URL Telegram posts updates to (``https://your-domain.com/api/telegram``).
    webhook_url: str = ""
    #: The secret Telegram sends back in ``X-Telegram-Bot-Api-Secret-Token`` (``TELEGRAM_WEBHOOK_SECRET``).
    webhook_secret: str = ""
    #: Usernames or numeric user ids that may talk to the bot (``TELEGRAM_ALLOWED_USERS`` wins over the file);
    #: ``*`` lets anyone in. Required once Telegram is enabled: an open bot would let strangers switch the lights.
    allowed_users: tuple[str, ...] = ()
    #: Base URL of the Bot API (``TELEGRAM_API_URL``); tests point it at a local server.
    api_url: str = "https://api.telegram.org"
    #: Seconds between two messages the deliverer sends to one chat (``TELEGRAM_CHAT_INTERVAL_SECONDS``; Telegram
    #: asks for at most about one a second); 0: no pacing, only Telegram's 429 answers are honoured.
    chat_interval_seconds: float = 1.0

    def __repr__(self) -> str:
        # The token and the secret stay out of every log and traceback that prints settings.
        return (
            f"TelegramConfig(enabled={self.enabled}, webhook_url={self.webhook_url!r}, "
            f"allowed_users={len(self.allowed_users)} users, api_url={self.api_url!r})"
        )

    @classmethod
    def from_sources(cls, channel: Mapping[str, Any], env: Mapping[str, str]) -> TelegramConfig:
        defaults = cls()
        users = channel.get("allowed_users", [])
        if not isinstance(users, list) or not all(isinstance(u, str | int) for u in users):
            raise ConfigurationError("channels.telegram.allowed_users must be a list of usernames or user ids")
        raw_interval = env.get("TELEGRAM_CHAT_INTERVAL_SECONDS", "").strip()
        try:
            interval = float(raw_interval) if raw_interval else defaults.chat_interval_seconds
        except ValueError as exc:
            raise ConfigurationError(f"TELEGRAM_CHAT_INTERVAL_SECONDS must be a number, got {raw_interval!r}") from exc
        if not 0 <= interval <= 60:
            raise ConfigurationError("TELEGRAM_CHAT_INTERVAL_SECONDS must be between 0 and 60")
        enabled_env = env.get("TELEGRAM_ENABLED", "").strip().lower()
        enabled = enabled_env in {"1", "true", "yes", "on"} if enabled_env else bool(channel.get("enabled", False))
        return cls(
            enabled=enabled,
            bot_token=(env.get("TELEGRAM_BOT_TOKEN") or str(channel.get("bot_token") or "")).strip(),
            webhook_url=(env.get("TELEGRAM_WEBHOOK_URL") or str(channel.get("webhook_url") or "")).strip(),
            webhook_secret=(env.get("TELEGRAM_WEBHOOK_SECRET") or str(channel.get("webhook_secret") or "")).strip(),
            allowed_users=_allowed_users(env, users),
            api_url=(env.get("TELEGRAM_API_URL") or defaults.api_url).rstrip("/"),
            chat_interval_seconds=interval,
        )


def _allowed_users(env: Mapping[str, str], listed: list[str | int]) -> tuple[str, ...]:
    """``TELEGRAM_ALLOWED_USERS`` (comma-separated) wins over the file's list; ``@`` is dropped, ``*`` kept."""
    raw = env.get("TELEGRAM_ALLOWED_USERS")
    users: list[str | int] = [part for part in raw.split(",")] if raw and raw.strip() else listed
    return tuple(name for u in users if (name := str(u).strip().lstrip("@")))


def devices_file(env: Mapping[str, str], config_dir: Path) -> Path:
    """The smart home's devices file (``DEVICES_FILE``, default ``<config dir>/devices.yaml``)."""
    raw = (env.get("DEVICES_FILE") or "").strip()
    return Path(raw) if raw else config_dir / "devices.yaml"
