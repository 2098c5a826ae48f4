"""The deliverer's MQTT publisher: one connection per process, opened on first use; QoS 1, waits for the PUBACK."""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from adapters.mqtt import QOS, OnConnected, mqtt_client, parse_url
from pipeline.channel_config import MqttConfig
from pipeline.errors import AssistantError

logger = logging.getLogger(__name__)

#: Seconds a publish waits for the connection and then for the broker's PUBACK before it fails (and the task
#: retries). Short: a local broker answers in about a millisecond.
PUBLISH_TIMEOUT_SECONDS = 5.0

#: Builds a client set to connect when its loop starts (``adapters.mqtt.mqtt_client``'s signature).
ClientFactory = Callable[..., paho.Client]


class PublishFailed(AssistantError):
    """The broker did not take a message in time (down, unreachable, or refusing us); the task retries."""

    code = "mqtt_publish_failed"


class MqttPublisher:
    """Publishes messages with QoS 1, never retained, and returns once the broker acknowledged them (PUBACK).

    Nothing connects until the first ``publish``; then one client, with a network thread, serves every thread
    of the process. A publish that gets no PUBACK in time fails, and its client is dropped: paho would send the
    message again on its own after a reconnect, on top of the task's retry.
    """

    def __init__(
        self,
        config: MqttConfig,
        client_id: str | None = None,
        timeout: float = PUBLISH_TIMEOUT_SECONDS,
        build: ClientFactory = mqtt_client,
    ) -> None:
        parse_url(config.url or "")  # a bad MQTT_URL stops the start, not the first reply
        self._config = config
        self._client_id = client_id or f"{config.client_id}-deliver-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._timeout = timeout
        self._build = build
        self._lock = threading.Lock()
        self._client: paho.Client | None = None
        self._connected = threading.Event()

    @property
    def client_id(self) -> str:
        return self._client_id

    def publish(self, topic: str, payload: bytes, expiry_seconds: int | None = None) -> None:
        """Publish ``payload`` on ``topic`` and wait for the broker's PUBACK; raises ``PublishFailed``.

        ``expiry_seconds``: the MQTT v5 Message Expiry Interval, after which the broker drops the message
        rather than hand it to a subscriber that comes back late.
        """
        client, connected = self._client_and_event()
        if not connected.wait(self._timeout):
            raise PublishFailed(f"no connection to the MQTT broker within {self._timeout:g} s")
        properties = None
        if expiry_seconds is not None:
            properties = Properties(PacketTypes.PUBLISH)
            properties.MessageExpiryInterval = expiry_seconds
        info = client.publish(topic, payload, qos=QOS, retain=False, properties=properties)
        try:
            info.wait_for_publish(self._timeout)
        except (ValueError, RuntimeError) as exc:  # not queued, or the connection went while sending
            self._drop(client)
            raise PublishFailed(f"publish failed: {type(exc).__name__}") from None
        if not info.is_published():
            self._drop(client)
            raise PublishFailed(f"no PUBACK from the MQTT broker within {self._timeout:g} s")

    def _client_and_event(self) -> tuple[paho.Client, threading.Event]:
        with self._lock:
            if self._client is None:
                connected = threading.Event()
                client = self._build(self._config, self._client_id, clean=True, on_connected=_on_connected(connected))
                _clear_on_disconnect(client, connected)
                client.loop_start()
                self._client, self._connected = client, connected
                logger.info("MQTT publisher %s connecting", self._client_id)
            return self._client, self._connected

    def _drop(self, client: paho.Client) -> None:
        """Forget ``client`` (if it is still the current one) with what it had queued; the next publish
        connects again."""
        with self._lock:
            if self._client is not client:
                return
            self._client = None
        logger.warning("MQTT publisher %s: dropping its connection after a failed publish", self._client_id)
        _stop(client)

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            _stop(client)


def _on_connected(event: threading.Event) -> OnConnected:
    def connected(_client: paho.Client) -> None:
        event.set()

    return connected


def _clear_on_disconnect(client: paho.Client, event: threading.Event) -> None:
    """While the connection is down, publishes wait for it (up to their timeout) instead of queueing in paho."""
    inner = client.on_disconnect

    def on_disconnect(*args: Any) -> None:
        event.clear()
        if inner is not None:
            inner(*args)

    client.on_disconnect = on_disconnect


def _stop(client: paho.Client) -> None:
    try:
        client.disconnect()
        client.loop_stop()
    except Exception as exc:  # closing must not fail the caller
        logger.warning("closing an MQTT client failed: %s", type(exc).__name__)
