"""The MQTT edge on the real Mosquitto (127.0.0.1:1883) in front of the real embedded pipeline: requests and audio
answered on the device's reply topic, once per id; bad input answered on its error topic; the persistent session
across a restart; reconnection; state reports remembered. One embedded pipeline for the module (the in-memory
broker is one per process: no other pipeline may run beside it). Topic roots and client ids are unique per run."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from support import eventually

from adapters.bundle import Adapters, SpeechEngines
from adapters.mqtt import mqtt_client, topics
from assistant.bootstrap import build_mqtt_edge
from assistant.embedded import build_embedded
from ingress.mqtt_edge import MqttEdge
from pipeline.channel_config import MqttConfig
from pipeline.envelope import Envelope
from pipeline.settings import Settings
from pipeline.stages import Stage
from tasks.celery_app import StageCelery
from tasks.forward import Forwarder

pytestmark = pytest.mark.servers

BROKER = "mqtt://127.0.0.1:1883"
DEADLINE = 60.0
MAX_PAYLOAD = 2048
#: The recordings it sends are below this; the edge asks the broker for no packet much larger.
MAX_AUDIO = 256 * 1024
#: How long a test waits to be sure something does not come.
QUIET_SECONDS = 2.0
AUDIO = Path(__file__).resolve().parents[1] / "audio"

SKILL_SOURCE = '''
"""Tells who is speaking, as the skill sees the envelope."""

from skills.base import BaseSkill


class WhoSkill(BaseSkill):
    def __init__(self):
        super().__init__(name="who", description="谁在说话 / who is speaking", triggers=["谁在说话"])

    def execute(self, context):
        return "|".join([context["channel"], context["user_id"], ",".join(context["roles"]), context["session_id"]])
'''

DEVICES = """
areas:
  - {{id: living_room, name: 客厅, aliases: [living room]}}
  - {{id: bedroom, name: 卧室, aliases: [bedroom]}}
  - {{id: kitchen, name: 厨房, aliases: [kitchen]}}
devices:
  - {{id: kitchen-speaker, area: kitchen}}
  - {{id: bedroom-speaker, area: bedroom}}
  - {{id: living-room-speaker, area: living_room}}
  - {{id: hall-panel}}
entities:
  - {{id: light.bedroom_lamp, name: 卧室灯, area: bedroom, state: "off"}}
  - {{id: light.kitchen_ceiling, name: 厨房灯, area: kitchen, state: "off"}}
  - {{id: switch.porch, name: 门廊开关, state: "off"}}
  - id: sensor.outdoor_temperature
    name: 室外温度
    attributes: {{state_topic: "{root}/weather/outdoor", unit_of_measurement: "°C"}}
"""


@dataclass
class Pipeline:
    settings: Settings
    adapters: Adapters
    app: StageCelery
    #: The module's topic root: ``<root>/assistant`` and ``<root>/home``.
    root: str

    @property
    def prefix(self) -> str:
        return self.settings.mqtt.topic_prefix

    def edge(self, client_id: str | None = None, forwarder: Forwarder | None = None) -> MqttEdge:
        """An edge with a client id of its own (a fresh one unless given)."""
        config = replace(self.settings.mqtt, client_id=client_id or f"edge-{uuid.uuid4().hex[:10]}")
        if forwarder is not None:
            return MqttEdge(self.adapters, forwarder, config)
        return build_mqtt_edge(replace(self.settings, mqtt=config), self.adapters, self.app)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory, speech: SpeechEngines) -> Iterator[Pipeline]:
    root = f"t{uuid.uuid4().hex[:10]}"
    folder = tmp_path_factory.mktemp("mqtt")
    (folder / "skills").mkdir()
    (folder / "skills" / "who_skill.py").write_text(SKILL_SOURCE, encoding="utf-8")
    (folder / "devices.yaml").write_text(DEVICES.format(root=root), encoding="utf-8")
    settings = Settings.from_env(
        {
            "ASSISTANT_DATA_DIR": str(folder / "data"),
            "ASSISTANT_CONFIG_DIR": str(folder / "config"),
            "SKILLS_DIR": str(folder / "skills"),
            "DEVICES_FILE": str(folder / "devices.yaml"),
            "MQTT_URL": BROKER,
            "MQTT_TOPIC_PREFIX": f"{root}/assistant",
            "MQTT_STATE_PREFIX": f"{root}/home",
            "MQTT_MAX_PAYLOAD_BYTES": str(MAX_PAYLOAD),
            # The edges' sessions outlive a test by this much at most, should one not be removed.
            "MQTT_SESSION_EXPIRY_SECONDS": "120",
        }
    )
    settings = replace(settings, audio=replace(settings.audio, max_audio_bytes=MAX_AUDIO))
    adapters, app, workers = build_embedded(settings, speech=speech)
    workers.start()
    try:
        yield Pipeline(settings, adapters, app, root)
    finally:
        workers.stop()
        adapters.close()


class Device:
    """A device on the broker: publishes requests and audio, collects what comes on its reply and error topics."""

    def __init__(self, pipeline: Pipeline) -> None:
        self._topics = topics(pipeline.prefix)
        self._lock = threading.Lock()
        self.received: list[tuple[str, dict[str, Any]]] = []
        connected = threading.Event()
        watched = [(f"{pipeline.prefix}/+/reply", 1), (f"{pipeline.prefix}/+/error", 1)]
        config = MqttConfig(url=BROKER)
        self.client = mqtt_client(config, f"dev-{uuid.uuid4().hex[:10]}", watched, clean=True,
                                  on_connected=lambda _c: connected.set())  # fmt: skip
        self.client.on_message = self._on_message
        self.client.loop_start()
        assert connected.wait(10), "the device did not connect"

    def _on_message(self, _client: paho.Client, _userdata: Any, message: paho.MQTTMessage) -> None:
        with self._lock:
            self.received.append((message.topic, json.loads(message.payload)))

    def publish(self, topic: str, payload: bytes | dict[str, Any]) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode() if isinstance(payload, dict) else payload
        self.client.publish(topic, data, qos=1).wait_for_publish(10)

    def request(self, device_id: str, text: str, request_id: str | None = None, **fields: Any) -> str:
        request_id = request_id or f"r-{uuid.uuid4().hex[:8]}"
        self.publish(self._topics.request_topic(device_id), {"id": request_id, "text": text, **fields})
        return request_id

    def seen(self, topic: str, request_id: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [p for t, p in self.received if t == topic and (request_id is None or p.get("id") == request_id)]

    def reply(self, device_id: str, request_id: str, timeout: float = DEADLINE) -> dict[str, Any]:
        found = eventually(lambda: self.seen(self._topics.reply_topic(device_id), request_id), timeout,
                           what=f"the reply to {request_id}")  # fmt: skip
        return found[0]

    def error(self, device_id: str, timeout: float = DEADLINE) -> dict[str, Any]:
        found = eventually(lambda: self.seen(self._topics.error_topic(device_id)), timeout, what="an error")
        with self._lock:
            self.received = [(t, p) for t, p in self.received if p is not found[0]]
        return found[0]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def device(pipeline: Pipeline) -> Iterator[Device]:
    client = Device(pipeline)
    yield client
    client.close()


@pytest.fixture
def running(pipeline: Pipeline) -> Iterator[Callable[..., MqttEdge]]:
    """``running(client_id=None, forwarder=None)``: a started, subscribed edge; stopped and its session removed
    after the test."""
    started: list[MqttEdge] = []

    def start(client_id: str | None = None, forwarder: Forwarder | None = None) -> MqttEdge:
        edge = pipeline.edge(client_id, forwarder)
        edge.start()
        started.append(edge)
        assert edge.wait_connected(10), "the edge did not connect and subscribe"
        return edge

    yield start
    for edge in started:
        edge.stop()
    for client_id in {e.client_id for e in started}:
        forget_session(client_id)


def forget_session(client_id: str) -> None:
    """Connect once with a clean start and no expiry: the broker drops the session and what it queued."""
    connected = threading.Event()
    client = mqtt_client(MqttConfig(url=BROKER), client_id, clean=True, on_connected=lambda _c: connected.set())
    client.loop_start()
    connected.wait(10)
    client.disconnect()
    client.loop_stop()


def transcript_texts(pipeline: Pipeline, session_id: str) -> list[tuple[str, str]]:
    return [(e.kind, e.text) for e in pipeline.adapters.repository.transcript(session_id)]


# -- tests -------------------------------------------------------------------------------------------------------------


def test_a_request_is_answered_on_the_reply_topic(pipeline: Pipeline, running: Any, device: Device) -> None:
    running()
    request_id = device.request("kitchen-speaker", "现在几点", session_id="clock")
    reply = device.reply("kitchen-speaker", request_id)
    assert reply["text"].startswith("现在是") and reply["session_id"] == "mqtt:kitchen-speaker:clock"
    texts = transcript_texts(pipeline, "mqtt:kitchen-speaker:clock")
    assert texts[0] == ("message", "现在几点") and texts[1][0] == "reply"
    record = pipeline.adapters.repository.load_session("mqtt:kitchen-speaker:clock")
    assert record is not None and record.user_id == "kitchen-speaker"


def test_the_skill_sees_the_channel_the_device_and_its_session(running: Any, device: Device) -> None:
    running()
    request_id = device.request("hall-panel", "谁在说话")
    assert device.reply("hall-panel", request_id)["text"] == "mqtt|hall-panel|device|mqtt:hall-panel"
    # The next request continues the same conversation.
    again = device.request("hall-panel", "谁在说话")
    assert device.reply("hall-panel", again)["session_id"] == "mqtt:hall-panel"


def test_asking_for_a_person_is_an_ordinary_message_on_a_device(
    pipeline: Pipeline, running: Any, device: Device
) -> None:
    running()
    request_id = device.request("kitchen-speaker", "转人工", session_id="person")
    reply = device.reply("kitchen-speaker", request_id)
    # Only web sessions go to the human operators; a device gets the bot's answer (here the fallback).
    assert reply["text"] == pipeline.adapters.settings.fallback_reply_zh
    assert pipeline.adapters.handoffs.get("mqtt:kitchen-speaker:person") is None


class Recording(Forwarder):
    """Keeps what the edge submits instead of sending it."""

    def __init__(self) -> None:
        self.sent: list[tuple[Stage, Envelope]] = []

    def to_stage(self, stage: Stage, envelope: Envelope) -> None:
        self.sent.append((stage, envelope))


def test_the_envelope_carries_the_reply_address_and_the_area(running: Any, device: Device) -> None:
    recording = Recording()
    running(forwarder=recording)
    session = uuid.uuid4().hex[:8]
    own = device.request("bedroom-speaker", "开灯", session_id=session)
    named = device.request("bedroom-speaker", "开灯", session_id=session, context={"area": "厨房"}, language="zh")
    nowhere = device.request("hall-panel", "turn on the lights", session_id=session)
    eventually(lambda: len(recording.sent) == 3, 10, what="three submitted envelopes")
    (stage, first), (_, second), (_, third) = recording.sent
    assert stage is Stage.DISPATCH
    assert (first.channel, first.user_id, first.roles) == ("mqtt", "bedroom-speaker", ("device",))
    assert first.client_msg_id == own and first.reply_to == f"bedroom-speaker/{own}"
    assert first.session_id == f"mqtt:bedroom-speaker:{session}" and first.seq == 1
    assert first.context == {"area": "bedroom"}  # the device's own area, from the devices file
    assert second.context == {"area": "厨房"} and second.language == "zh" and second.client_msg_id == named
    assert third.context == {} and third.reply_to == f"hall-panel/{nowhere}"


class Broken(Forwarder):
    """A queue client with a bug in it."""

    def __init__(self) -> None:
        self.calls = 0

    def to_stage(self, stage: Stage, envelope: Envelope) -> None:
        self.calls += 1
        raise RuntimeError("a bug")


def test_a_failure_of_the_edge_is_reported_and_it_keeps_serving(running: Any, device: Device) -> None:
    broken = Broken()
    running(forwarder=broken)
    session = uuid.uuid4().hex[:8]
    first = device.request("kitchen-speaker", "现在几点", session_id=session)
    error = device.error("kitchen-speaker")
    assert error == {"id": first, "error": {"code": "internal_error", "message": "the request could not be taken"}}
    second = device.request("kitchen-speaker", "现在几点", session_id=session)
    assert device.error("kitchen-speaker")["id"] == second and broken.calls == 2


def test_the_same_id_twice_is_answered_once(pipeline: Pipeline, running: Any, device: Device) -> None:
    running()
    request_id = device.request("kitchen-speaker", "现在几点", session_id="twice")
    device.reply("kitchen-speaker", request_id)
    device.request("kitchen-speaker", "现在几点", request_id=request_id, session_id="twice")
    time.sleep(QUIET_SECONDS)
    assert len(device.seen(topics(pipeline.prefix).reply_topic("kitchen-speaker"), request_id)) == 1
    assert [k for k, _ in transcript_texts(pipeline, "mqtt:kitchen-speaker:twice")] == ["message", "reply"]


def test_bad_input_gets_an_error_and_the_edge_keeps_serving(pipeline: Pipeline, running: Any, device: Device) -> None:
    running()
    t = topics(pipeline.prefix)
    device.request("intruder", "开门")
    assert device.error("intruder")["error"]["code"] == "unknown_device"
    device.publish(t.request_topic("kitchen-speaker"), b"turn on the light")
    assert device.error("kitchen-speaker")["error"]["code"] == "not_json"
    device.publish(t.request_topic("kitchen-speaker"), b'{"id": "x", "text": "\xff\xfe"}')
    assert device.error("kitchen-speaker")["error"]["code"] == "not_utf8"
    device.request("kitchen-speaker", "开" * MAX_PAYLOAD)
    assert device.error("kitchen-speaker")["error"]["code"] == "payload_too_large"
    device.publish(t.request_topic("kitchen-speaker"), {"id": "no-text"})
    error = device.error("kitchen-speaker")
    assert error["id"] == "no-text" and error["error"]["code"] == "bad_request" and "text" in error["error"]["message"]
    device.publish(t.audio_topic("kitchen-speaker", "a1"), b"RIFF not really audio")
    error = device.error("kitchen-speaker")
    assert error["id"] == "a1" and error["error"]["code"] == "undecodable_audio"
    # Nothing of it reached the pipeline, and the edge still answers.
    assert transcript_texts(pipeline, "mqtt:kitchen-speaker") == []
    assert transcript_texts(pipeline, "mqtt:intruder") == []
    request_id = device.request("kitchen-speaker", "现在几点", session_id="after-errors")
    assert device.reply("kitchen-speaker", request_id)["text"].startswith("现在是")


def test_the_broker_keeps_packets_too_large_to_read_from_the_edge(
    pipeline: Pipeline, running: Any, device: Device
) -> None:
    """The edge tells the broker its largest packet: one past it never reaches the process (a request merely over
    its own limit gets an error; this one gets nothing, and costs the edge nothing)."""
    running()
    t = topics(pipeline.prefix)
    device.publish(t.audio_topic("kitchen-speaker", "huge"), b"\0" * (MAX_AUDIO + 64 * 1024))
    time.sleep(2.0)
    assert not device.seen(t.error_topic("kitchen-speaker")), "the edge read a packet past its maximum"
    request_id = device.request("kitchen-speaker", "现在几点", session_id="after-huge")
    assert device.reply("kitchen-speaker", request_id)["text"].startswith("现在是")


def test_requests_sent_while_the_edge_was_down_are_answered(running: Any, device: Device) -> None:
    client_id = f"edge-{uuid.uuid4().hex[:10]}"
    first = running(client_id)
    first.stop()
    request_id = device.request("kitchen-speaker", "现在几点", session_id="offline")
    time.sleep(0.5)
    assert device.seen(topics(first.topics.prefix).reply_topic("kitchen-speaker"), request_id) == []
    running(client_id)  # the same client id: the broker hands over what it kept
    assert device.reply("kitchen-speaker", request_id)["text"].startswith("现在是")


def test_the_edge_reconnects_after_its_connection_drops(running: Any, device: Device) -> None:
    edge = running()
    connection = edge.client.socket() if edge.client is not None else None
    assert isinstance(connection, socket.socket)
    connection.shutdown(socket.SHUT_RDWR)  # as a broker restart or a network fault would
    eventually(lambda: not edge.wait_connected(0), 10, what="the edge to notice the lost connection")
    assert edge.wait_connected(DEADLINE), "the edge did not reconnect"
    request_id = device.request("kitchen-speaker", "现在几点", session_id="reconnected")
    assert device.reply("kitchen-speaker", request_id)["text"].startswith("现在是")


def test_state_reports_are_remembered(pipeline: Pipeline, running: Any, device: Device) -> None:
    running()
    home = pipeline.adapters.home_state
    root = pipeline.root
    device.publish(f"{root}/home/bedroom/bedroom_lamp/state", b"on")
    eventually(lambda: (s := home.get("light.bedroom_lamp")) is not None and s.state == "on", 10, what="lamp on")
    device.publish(f"{root}/home/bedroom/bedroom_lamp/state", {"state": "off", "attributes": {"brightness": 0}})
    eventually(lambda: (s := home.get("light.bedroom_lamp")) is not None and s.state == "off", 10, what="lamp off")
    assert (state := home.get("light.bedroom_lamp")) is not None and state.attributes == {"brightness": 0}
    device.publish(f"{root}/home/porch/state", b"on")  # an entity in no area
    eventually(lambda: (s := home.get("switch.porch")) is not None and s.state == "on", 10, what="porch on")
    device.publish(f"{root}/weather/outdoor", b"21.5")  # the entity's own state_topic
    eventually(lambda: (s := home.get("sensor.outdoor_temperature")) is not None and s.state == "21.5", 10,
               what="the outdoor temperature")  # fmt: skip
    # Reports for no known entity, and unreadable ones, change nothing.
    device.publish(f"{root}/home/bedroom/unknown_thing/state", b"on")
    device.publish(f"{root}/home/bedroom/bedroom_lamp/state", b"\xff\xfe")
    device.publish(f"{root}/home/bedroom/bedroom_lamp/state", b'{"attributes": {}}')
    request_id = device.request("kitchen-speaker", "现在几点", session_id="after-states")
    device.reply("kitchen-speaker", request_id)  # handled in order: the reports before it are done
    assert home.get("unknown_thing") is None
    assert (state := home.get("light.bedroom_lamp")) is not None and state.state == "off"


def test_audio_is_recognised_and_answered(pipeline: Pipeline, running: Any, device: Device) -> None:
    running()
    t = topics(pipeline.prefix)
    request_id = f"a-{uuid.uuid4().hex[:8]}"
    device.publish(t.audio_topic("living-room-speaker", request_id), (AUDIO / "living_room_light_en.wav").read_bytes())
    reply = device.reply("living-room-speaker", request_id)
    assert reply["session_id"] == "mqtt:living-room-speaker"
    heard = [text for kind, text in transcript_texts(pipeline, "mqtt:living-room-speaker") if kind == "message"]
    assert heard and "living room" in heard[-1].lower()


def test_the_device_s_area_picks_the_lights_and_the_command_goes_out(pipeline: Pipeline, running: Any) -> None:
    """开灯 said by the bedroom speaker means the bedroom's lights: the reply names them, and the lamp gets its
    command on its own topic."""
    running()
    commands: list[tuple[str, dict[str, Any]]] = []
    connected = threading.Event()
    lamp = mqtt_client(MqttConfig(url=BROKER), f"lamp-{uuid.uuid4().hex[:8]}",
                       [(f"{pipeline.root}/home/+/+/set", 1)], clean=True,
                       on_connected=lambda _c: connected.set())  # fmt: skip
    lamp.on_message = lambda _c, _u, m: commands.append((m.topic, json.loads(m.payload)))
    lamp.loop_start()
    device = Device(pipeline)
    try:
        assert connected.wait(10)
        request_id = device.request("bedroom-speaker", "开灯", session_id="lights")
        reply = device.reply("bedroom-speaker", request_id)
        assert [a["targets"] for a in reply["actions"]] == [["light.bedroom_lamp"]], reply
        eventually(lambda: commands, 10, what="the lamp's command")
        topic, command = commands[0]
        assert topic == f"{pipeline.root}/home/bedroom/bedroom_lamp/set"
        assert command["service"] == "light.turn_on" and command["entity_id"] == "light.bedroom_lamp"
    finally:
        device.close()
        lamp.disconnect()
        lamp.loop_stop()
