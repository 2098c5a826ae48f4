"""The MQTT edge: devices' requests and audio become envelopes for the pipeline; state reports are remembered."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import paho.mqtt.client as paho
from werkzeug.exceptions import NotFound, ServiceUnavailable

from adapters.audio import AudioTooLong, UndecodableAudio, decode_audio, float32_to_pcm16
from adapters.bundle import Adapters
from adapters.errors import UNAVAILABLE
from adapters.metrics import REJECTED
from adapters.mqtt import QOS, Topics, mqtt_client, reply_address, topics
from adapters.state import Registration
from ingress.mqtt_requests import (
    DEVICE_ID,
    MAX_REQUEST_ID,
    RequestRejected,
    check_size,
    parse_request,
    parse_state,
    session_of,
)
from ingress.speech_submit import submit, submit_speech
from pipeline.channel_config import MqttConfig
from pipeline.envelope import Envelope, new_id, storable_text
from pipeline.logsafe import trace_without_messages
from pipeline.stages import Channel, Stage
from tasks.forward import Forwarder

logger = logging.getLogger(__name__)

#: The roles of a device's messages: a device is neither a person's account nor an admin.
DEVICE_ROLES = ("device",)


#: Bytes an MQTT packet carries besides its payload, at most, as far as the edge's topics go.
PACKET_OVERHEAD = 4096


class MqttEdge:
    """Subscribes to ``<prefix>/+/request``, ``<prefix>/+/audio[/<id>]`` and the smart home's state topics.

    One client with a fixed id and a persistent session: requests published while the edge is down wait on the
    broker and arrive when it is back. Each request is submitted once per ``id`` (the id is the message's
    ``client_msg_id``); a bad one is answered on the device's error topic and nothing else happens.
    """

    def __init__(self, adapters: Adapters, forwarder: Forwarder, config: MqttConfig | None = None) -> None:
        self._adapters = adapters
        self._forwarder = forwarder
        self._config = config or adapters.settings.mqtt
        self._topics: Topics = topics(self._config.topic_prefix, self._config.state_prefix)
        devices = adapters.devices
        self._allowed = frozenset(self._config.allowed_devices or (devices.device_ids() if devices else ()))
        if unusable := sorted(d for d in self._allowed if not DEVICE_ID.fullmatch(d)):
            logger.warning("devices %s can never send: a device id is 1-48 letters, digits or _ . -", unusable)
        # State topics: an entity's own ``state_topic``, else ``<state_prefix>/<area>/<object>/state``.
        self._custom_state: dict[str, str] = {}
        self._default_state: dict[tuple[str, ...], str] = {}
        for entity in devices.entities if devices else ():
            custom = entity.attributes.get("state_topic")
            if isinstance(custom, str) and custom:
                self._custom_state[custom] = entity.id
            else:
                levels = (entity.area, entity.object_id) if entity.area else (entity.object_id,)
                self._default_state[levels] = entity.id
        self._client: paho.Client | None = None
        self._connected = threading.Event()

    @property
    def topics(self) -> Topics:
        return self._topics

    @property
    def client_id(self) -> str:
        return self._config.client_id

    def subscriptions(self) -> list[tuple[str, int]]:
        """Topic filters and their QoS: requests, audio, default state topics and each entity's own."""
        filters = [*self._topics.subscriptions(), f"{self._config.state_prefix}/+/state"]
        filters += sorted(set(self._custom_state))
        return [(f, QOS) for f in filters]

    def start(self) -> None:
        """Connect (in the background, retrying with back-off) and handle messages in paho's network thread."""
        if self._client is not None:
            return
        # The largest packet worth reading: a request or a recording at their limits, plus the topic and headers.
        largest = max(self._config.max_payload_bytes, self._adapters.settings.audio.max_audio_bytes) + PACKET_OVERHEAD
        client = mqtt_client(
            self._config,
            self._config.client_id,
            self.subscriptions(),
            on_connected=self._on_connected,
            max_packet_bytes=largest,
        )
        client.on_message = self._on_message
        client.on_disconnect = _chain(client.on_disconnect, self._on_disconnect)
        self._client = client
        client.loop_start()

    def wait_connected(self, timeout: float) -> bool:
        """True once connected and subscribed (within ``timeout`` seconds)."""
        return self._connected.wait(timeout)

    def stop(self) -> None:
        """Disconnect cleanly: the broker keeps the session and queues what comes meanwhile."""
        client, self._client = self._client, None
        if client is None:
            return
        client.disconnect()
        client.loop_stop()
        self._connected.clear()

    @property
    def client(self) -> paho.Client | None:
        """The connection while started (tests cut its socket to see it reconnect)."""
        return self._client

    def _on_connected(self, client: paho.Client) -> None:
        logger.info("MQTT edge subscribed to %d topic filters: %s/+/request, audio, state topics",
                    len(self.subscriptions()), self._topics.prefix)  # fmt: skip
        self._connected.set()

    def _on_disconnect(self, *_: Any) -> None:
        self._connected.clear()

    def _on_message(self, client: paho.Client, _userdata: Any, message: paho.MQTTMessage) -> None:
        # paho stops its network thread on an exception from a callback: nothing may escape.
        try:
            self.handle(message.topic, bytes(message.payload), client)
        except Exception as exc:
            logger.error("MQTT message on %s failed: %s", message.topic, trace_without_messages(exc))

    def handle(self, topic: str, payload: bytes, client: paho.Client) -> None:
        """One message: a request, audio or a state report. Refusals go to the device's error topic."""
        kind = self._topics.kind(topic)
        if kind is None:
            self._state(topic, payload)
            return
        if kind not in ("request", "audio"):
            return  # our own replies and errors, were a filter ever to match them
        device_id = self._topics.parse_device(topic) or ""
        request_id: str | None = None
        try:
            self._check_device(device_id)
            if kind == "request":
                request = parse_request(payload, self._config.max_payload_bytes)
                request_id = request.id
                draft = Envelope(
                    message_id=new_id(),
                    session_id=session_of(device_id, request.session_id),
                    channel=str(Channel.MQTT),
                    user_id=device_id,
                    roles=DEVICE_ROLES,
                    text=request.text,
                    client_msg_id=request.id,
                    reply_to=reply_address(device_id, request.id),
                    language=request.language,
                    context=self._context(device_id, request.area),
                )
                registration = submit(self._adapters, self._forwarder, draft, False, Stage.DISPATCH)
            else:
                request_id = self._audio_id(topic)
                registration = self._submit_audio(device_id, request_id, payload)
        except RequestRejected as exc:
            self._adapters.metrics.count_message(str(Channel.MQTT), REJECTED)  # refused before ``submit`` counts
            self._refuse(client, device_id, exc if exc.request_id or not request_id else _with_id(exc, request_id))
            return
        except NotFound:
            self._refuse(
                client, device_id, RequestRejected("session_forbidden", "the session is another's", request_id)
            )
            return
        except ServiceUnavailable:
            self._unavailable(client, device_id, request_id)
            return
        except UNAVAILABLE:
            self._unavailable(client, device_id, request_id)
            return
        except Exception as exc:
            # A bug, not the device's fault: it still hears that its request was not taken.
            logger.error("MQTT request from %s failed: %s", device_id, trace_without_messages(exc))
            self._adapters.metrics.count_message(str(Channel.MQTT), REJECTED)
            self._refuse(client, device_id, RequestRejected("internal_error", "the request could not be taken",
                                                            request_id))  # fmt: skip
            return
        if registration.status == "duplicate":
            # Answered once: the first message's reply went or goes out; a resend gets nothing new.
            logger.info("MQTT request %s from %s seen before; not submitted again", registration.message_id, device_id)

    def _check_device(self, device_id: str) -> None:
        if not DEVICE_ID.fullmatch(device_id):
            raise RequestRejected("unknown_device", "a device id is 1-48 letters, digits or _ . -")
        if self._allowed and device_id not in self._allowed:
            raise RequestRejected("unknown_device", f"device '{device_id}' may not send requests")

    def _context(self, device_id: str, area: str | None) -> dict[str, str]:
        devices = self._adapters.devices
        area = area or (devices.area_of_device(device_id) if devices else None)
        return {"area": area} if area else {}

    def _audio_id(self, topic: str) -> str:
        request_id = self._topics.audio_request_id(topic)
        if request_id is None:
            return new_id()  # no id on the topic: the reply carries this one
        if len(request_id) > MAX_REQUEST_ID or not storable_text(request_id):
            raise RequestRejected("bad_request", f"the id level of an audio topic is at most {MAX_REQUEST_ID} "
                                  "characters")  # fmt: skip
        return request_id

    def _submit_audio(self, device_id: str, request_id: str, payload: bytes) -> Registration:
        audio = self._adapters.settings.audio
        check_size(payload, audio.max_audio_bytes)
        started = time.perf_counter()
        try:
            samples = decode_audio(payload, audio.max_audio_seconds)
        except (UndecodableAudio, AudioTooLong) as exc:
            raise RequestRejected(exc.code, str(exc), request_id) from None
        decoded_ms = (time.perf_counter() - started) * 1000
        session_id = session_of(device_id, None)
        message_id = new_id()
        registration = submit_speech(
            self._adapters,
            self._forwarder,
            user_id=device_id,
            roles=DEVICE_ROLES,
            pcm16=float32_to_pcm16(samples),
            session_id=session_id,
            client_msg_id=request_id,
            timings=(("decode", decoded_ms),),
            channel=Channel.MQTT,
            message_id=message_id,
            reply_to=reply_address(device_id, request_id),
            context=self._context(device_id, None),
        )
        return registration

    def _unavailable(self, client: paho.Client, device_id: str, request_id: str | None) -> None:
        # Not accepted, so not remembered either: the same id works when the device sends it again.
        logger.warning("MQTT request from %s not accepted: the queue or Redis is unreachable", device_id)
        self._refuse(
            client, device_id, RequestRejected("unavailable", "not accepted; send it again shortly", request_id)
        )

    def _refuse(self, client: paho.Client, device_id: str, rejection: RequestRejected) -> None:
        logger.info("MQTT message from device %r refused: %s", device_id[:64], rejection.code)
        if not device_id:
            return  # no topic level to answer on
        client.publish(self._topics.error_topic(device_id), rejection.payload(), qos=QOS)

    def _state(self, topic: str, payload: bytes) -> None:
        entity_id = self._custom_state.get(topic) or self._default_entity(topic)
        if entity_id is None:
            logger.debug("state on %s is for no entity of the devices file; ignored", topic)
            return
        try:
            state, attributes = parse_state(payload, self._config.max_payload_bytes)
        except RequestRejected as exc:
            logger.warning("state report for %s ignored: %s", entity_id, exc.code)
            return
        self._adapters.home_state.set(entity_id, state, attributes)

    def _default_entity(self, topic: str) -> str | None:
        head = f"{self._config.state_prefix}/"
        if not topic.startswith(head) or not topic.endswith("/state"):
            return None
        levels = tuple(topic[len(head) : -len("/state")].split("/"))
        return self._default_state.get(levels)


def _with_id(rejection: RequestRejected, request_id: str) -> RequestRejected:
    return RequestRejected(rejection.code, rejection.message, request_id)


def _chain(first: Any, second: Any) -> Any:
    def both(*args: Any) -> None:
        if first is not None:
            first(*args)
        second(*args)

    return both
