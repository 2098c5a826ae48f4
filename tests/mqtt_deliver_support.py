"""MQTT helpers of the deliverer's tests: a listening device, unique topic roots, a Mosquitto of one's own."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

SHARED_BROKER = ("127.0.0.1", 1883)


def unique_root(name: str = "t") -> str:
    """A topic root no other test uses (the shared Mosquitto serves every test run at once)."""
    return f"{name}{uuid.uuid4().hex[:8]}"


@dataclass
class Received:
    """A message a listener got."""

    topic: str
    payload: bytes
    retain: bool
    #: The MQTT v5 Message Expiry Interval it arrived with, if any (what was left of it).
    expiry: int | None
    at: float = field(default_factory=time.monotonic)

    def json(self) -> Any:
        return json.loads(self.payload)


class Listener:
    """A device: subscribes (QoS 1) to ``filters`` and keeps what arrives."""

    def __init__(
        self, filters: list[str], host: str = SHARED_BROKER[0], port: int = SHARED_BROKER[1], persistent: bool = False
    ) -> None:
        """``persistent``: the broker keeps the subscription and queues messages while the listener is away."""
        self.messages: list[Received] = []
        self._condition = threading.Condition()
        self._subscribed = threading.Event()
        self._client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"listen-{uuid.uuid4().hex[:10]}",
                                   protocol=paho.MQTTv5)  # fmt: skip
        self._client.on_connect = lambda c, *_: c.subscribe([(f, 1) for f in filters])
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._client.on_message = self._on_message
        self._client.reconnect_delay_set(1, 1)
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = 600 if persistent else 0
        self._client.connect(host, port, clean_start=not persistent, properties=properties)
        self._client.loop_start()
        if not self._subscribed.wait(10):
            raise RuntimeError("the listener could not subscribe")

    def _on_message(self, _client: paho.Client, _userdata: Any, message: paho.MQTTMessage) -> None:
        expiry = getattr(message.properties, "MessageExpiryInterval", None)
        with self._condition:
            self.messages.append(Received(message.topic, message.payload, bool(message.retain), expiry))
            self._condition.notify_all()

    def on(self, topic: str) -> list[Received]:
        with self._condition:
            return [m for m in self.messages if m.topic == topic]

    def wait_for(self, check: Callable[[list[Received]], bool], timeout: float, what: str = "messages") -> None:
        deadline = time.monotonic() + timeout
        with self._condition:
            while not check(self.messages):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {what} within {timeout:g} s; got {[m.topic for m in self.messages]}")
                self._condition.wait(left)

    def publish(self, topic: str, body: dict[str, Any]) -> None:
        self._client.publish(topic, json.dumps(body, ensure_ascii=False), qos=1).wait_for_publish(5)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Mosquitto:
    """A ``mosquitto`` of one test, on a free port: it can be stopped and started again on the same port."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.config = directory / "mosquitto.conf"
        # Persistent sessions survive a restart (a listener's subscription and the messages queued for it).
        self.config.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                               f"persistence_location {directory}/\n")  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(["mosquitto", "-c", str(self.config)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto on port {self.port} did not start")

    def stop(self) -> None:
        """SIGTERM: it saves its sessions and exits, as a restart does."""
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


@contextmanager
def mosquitto() -> Iterator[Mosquitto]:
    directory = Path(tempfile.mkdtemp(prefix="mosquitto-"))
    server = Mosquitto(directory)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)
