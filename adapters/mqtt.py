"""The MQTT connection shared by the edge and the ``reply.mqtt`` deliverer, and the topics they use."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from pipeline.channel_config import MqttConfig
from pipeline.errors import ConfigurationError

logger = logging.getLogger(__name__)

#: Requests, replies, errors and device commands all travel with QoS 1: at least once, deduplicated by id.
QOS = 1
#: Reconnect back-off, seconds: first wait and the cap it doubles up to.
RECONNECT_MIN_SECONDS = 1
RECONNECT_MAX_SECONDS = 30

#: Called once per successful connection, after the broker acknowledged the subscriptions, with the client.
OnConnected = Callable[[paho.Client], None]


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    """Where ``MQTT_URL`` points; ``repr`` leaves the password out."""

    #: Host name or address of the broker.
    host: str
    #: TCP port: 1883 for ``mqtt://``, 8883 for ``mqtts://`` unless the URL names one.
    port: int
    #: True for ``mqtts://``: TLS, the broker's certificate checked.
    tls: bool
    #: User name, or "" for none.
    username: str = ""
    #: Password, or "" for none; never logged.
    password: str = ""

    def __repr__(self) -> str:
        return f"BrokerAddress(host={self.host!r}, port={self.port}, tls={self.tls}, username={self.username!r})"

    def __str__(self) -> str:
        scheme = "mqtts" if self.tls else "mqtt"
        user = f"{self.username}:***@" if self.username else ""
        return f"{scheme}://{user}{self.host}:{self.port}"


def parse_url(url: str) -> BrokerAddress:
    """``mqtt://user:password@host:port`` or ``mqtts://...`` as an address; user and password are URL-decoded."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        # The library's message could quote the password; say only what is wrong.
        raise ConfigurationError("MQTT_URL is not a valid URL (mqtt://user:password@host:port)") from None
    if parts.scheme not in ("mqtt", "mqtts"):
        raise ConfigurationError("MQTT_URL must start with mqtt:// or mqtts://")
    if not parts.hostname:
        raise ConfigurationError("MQTT_URL names no host")
    tls = parts.scheme == "mqtts"
    return BrokerAddress(
        host=parts.hostname,
        port=port or (8883 if tls else 1883),
        tls=tls,
        username=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
    )


def mqtt_client(
    config: MqttConfig,
    client_id: str,
    on_connect_subscribe: Iterable[tuple[str, int]] = (),
    clean: bool = False,
    on_connected: OnConnected | None = None,
    max_packet_bytes: int | None = None,
) -> paho.Client:
    """An MQTT v5 client for ``config.url``, set to connect when its network loop starts.

    With ``clean`` False the broker keeps the session of ``client_id`` (its subscriptions and the QoS 1 messages
    that arrived meanwhile) for ``config.session_expiry_seconds`` after a disconnect, so nothing sent while the
    process was down is lost. On every connection it subscribes to ``on_connect_subscribe`` again (``(filter, qos)``
    pairs; harmless when the session kept them) and calls ``on_connected`` once the broker acknowledged them. After
    a lost connection the loop reconnects, waiting 1 s and doubling up to 30 s. Set ``on_message`` and call
    ``loop_start()`` or ``loop_forever()`` on the result; ``disconnect()`` ends it cleanly and keeps the session.
    """
    if not config.url:
        raise ConfigurationError("MQTT_URL is not set")
    address = parse_url(config.url)
    subscriptions = [(topic, qos) for topic, qos in on_connect_subscribe]
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    if address.username:
        client.username_pw_set(address.username, address.password or None)
    if address.tls:
        context = ssl.create_default_context(cafile=config.ca_file or None)
        client.tls_set_context(context)
    client.reconnect_delay_set(RECONNECT_MIN_SECONDS, RECONNECT_MAX_SECONDS)

    pending: list[int] = []  # the mid of the SUBSCRIBE sent on the latest connection

    def on_connect(
        client: paho.Client, _userdata: Any, flags: paho.ConnectFlags, reason: ReasonCode, _props: Properties | None
    ) -> None:
        if reason.is_failure:
            logger.warning("MQTT broker %s refused client %s: %s", address, client_id, reason)
            return
        logger.info("MQTT client %s connected to %s (session present: %s)", client_id, address, flags.session_present)
        if not subscriptions:
            if on_connected is not None:
                on_connected(client)
            return
        _, mid = client.subscribe(subscriptions)
        pending[:] = [] if mid is None else [mid]

    def on_subscribe(
        client: paho.Client, _userdata: Any, mid: int, reasons: list[ReasonCode], _props: Properties | None
    ) -> None:
        if mid not in pending:
            return
        pending.clear()
        refused = [topic for (topic, _), reason in zip(subscriptions, reasons, strict=False) if reason.is_failure]
        if refused:
            # An ACL that denies a filter: the rest still works, so run on, loudly.
            logger.error("MQTT broker %s refused the subscriptions %s of client %s", address, refused, client_id)
        if on_connected is not None:
            on_connected(client)

    def on_disconnect(
        _client: paho.Client,
        _userdata: Any,
        _flags: paho.DisconnectFlags,
        reason: ReasonCode,
        _props: Properties | None,
    ) -> None:
        if reason.is_failure:
            logger.warning("MQTT client %s lost its connection to %s: %s; reconnecting", client_id, address, reason)
        else:
            logger.info("MQTT client %s disconnected from %s", client_id, address)

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_disconnect = on_disconnect
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = 0 if clean else config.session_expiry_seconds
    if max_packet_bytes is not None:
        # The broker drops larger packets rather than sending them: no device can make this process read one.
        properties.MaximumPacketSize = max_packet_bytes
    client.connect_async(
        address.host, address.port, keepalive=config.keepalive_seconds, clean_start=clean, properties=properties
    )
    return client


def valid_device_id(device_id: str) -> bool:
    """A device id is one topic level: not empty, no ``/``, no wildcard, no NUL."""
    return bool(device_id) and not any(c in device_id for c in "/+#\0")


@dataclass(frozen=True, slots=True)
class Topics:
    """The topics of the edge under one prefix (``MQTT_TOPIC_PREFIX``), and the smart home's under another."""

    #: First level of request, audio, reply and error topics.
    prefix: str = "assistant"
    #: First level of the smart home's state and command topics.
    state_prefix: str = "home"

    def request_topic(self, device_id: str) -> str:
        """Where a device publishes text requests (JSON)."""
        return f"{self.prefix}/{device_id}/request"

    def reply_topic(self, device_id: str) -> str:
        """Where the device's replies go (JSON with the request's ``id``)."""
        return f"{self.prefix}/{device_id}/reply"

    def error_topic(self, device_id: str) -> str:
        """Where the device's bad requests are answered (JSON ``{"id"?, "error": {"code", "message"}}``)."""
        return f"{self.prefix}/{device_id}/error"

    def audio_topic(self, device_id: str, request_id: str | None = None) -> str:
        """Where a device publishes raw audio; the last level, when there, is the request's id."""
        base = f"{self.prefix}/{device_id}/audio"
        return f"{base}/{request_id}" if request_id else base

    def subscriptions(self) -> list[str]:
        """The edge's topic filters: requests, audio (with and without an id) and the smart home's state."""
        return [
            f"{self.prefix}/+/request",
            f"{self.prefix}/+/audio",
            f"{self.prefix}/+/audio/+",
            self.state_filter(),
        ]

    def parse_device(self, topic: str) -> str | None:
        """The device id of a topic under the prefix (``<prefix>/<device>/...``), or None."""
        head = f"{self.prefix}/"
        if not topic.startswith(head):
            return None
        device, _, _ = topic[len(head) :].partition("/")
        return device if valid_device_id(device) else None

    def kind(self, topic: str) -> str | None:
        """``request``, ``audio``, ``reply`` or ``error`` for a topic under the prefix, else None."""
        head = f"{self.prefix}/"
        if not topic.startswith(head):
            return None
        levels = topic[len(head) :].split("/")
        if len(levels) == 2 and levels[1] in ("request", "audio", "reply", "error"):
            return levels[1]
        if len(levels) == 3 and levels[1] == "audio" and levels[2]:
            return "audio"
        return None

    def audio_request_id(self, topic: str) -> str | None:
        """The id in ``<prefix>/<device>/audio/<id>``, or None."""
        levels = topic[len(self.prefix) + 1 :].split("/")
        return levels[2] if self.kind(topic) == "audio" and len(levels) == 3 else None

    def state_filter(self) -> str:
        """The filter matching every ``<state_prefix>/<area_id>/<object_id>/state``."""
        return f"{self.state_prefix}/+/+/state"

    def state_topic(self, area_id: str, object_id: str) -> str:
        """The default topic an entity reports its state on."""
        return f"{self.state_prefix}/{area_id}/{object_id}/state"

    def command_topic(self, area_id: str, object_id: str) -> str:
        """The default topic an entity takes commands on."""
        return f"{self.state_prefix}/{area_id}/{object_id}/set"

    def parse_state_topic(self, topic: str) -> tuple[str, str] | None:
        """``(area_id, object_id)`` of a default state topic, or None."""
        levels = topic.split("/")
        head = self.state_prefix.split("/")
        if len(levels) != len(head) + 3 or levels[: len(head)] != head or levels[-1] != "state":
            return None
        area_id, object_id = levels[len(head)], levels[len(head) + 1]
        return (area_id, object_id) if area_id and object_id else None


def topics(prefix: str = "assistant", state_prefix: str = "home") -> Topics:
    """The topic helpers for a prefix (``MQTT_TOPIC_PREFIX``) and state prefix (``MQTT_STATE_PREFIX``)."""
    return Topics(prefix.strip("/"), state_prefix.strip("/"))


def reply_address(device_id: str, request_id: str) -> str:
    """``Envelope.reply_to`` of an MQTT request: the device and the request's ``id``, ``<device_id>/<request_id>``.

    The deliverer answers on the device's reply topic with the id in the payload; a device id is one topic level,
    so the first ``/`` always ends it, whatever the request id holds.
    """
    return f"{device_id}/{request_id}"


def parse_reply_address(reply_to: str | None) -> tuple[str, str] | None:
    """``(device_id, request_id)`` of a ``reply_address``, or None when ``reply_to`` is not one."""
    device_id, slash, request_id = (reply_to or "").partition("/")
    if not slash or not valid_device_id(device_id) or not request_id:
        return None
    return device_id, request_id
