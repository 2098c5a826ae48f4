"""deploy/mosquitto's configuration on a Mosquitto of its own (a free port): logins only, and each device kept to
its own topics by the ACL; the assistant's clients log in with the user and password of MQTT_URL, and over TLS. And
an edge started before its broker connects once the broker is up."""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from support import eventually

from adapters.mqtt import mqtt_client, topics
from assistant.bootstrap import build_adapters
from ingress.mqtt_edge import MqttEdge
from pipeline.channel_config import MqttConfig
from pipeline.envelope import Envelope
from pipeline.settings import Settings
from pipeline.stages import Stage
from tasks.forward import Forwarder

pytestmark = pytest.mark.skipif(shutil.which("mosquitto") is None, reason="needs the mosquitto binary")

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto"
PASSWORDS = {"assistant": "edge-secret", "kitchen-speaker": "kitchen-secret"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Broker:
    #: The plain listener of deploy/mosquitto's configuration.
    port: int
    #: A TLS listener added for the test, with a certificate for 127.0.0.1 from ``ca_file``.
    tls_port: int
    ca_file: str


def _certificates(folder: Path) -> None:
    """A throwaway CA, and a server certificate it signed for 127.0.0.1 and localhost."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "1",
            "-subj", "/CN=test-ca")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj",
            "/CN=localhost")  # fmt: skip
    (folder / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out",
            "server.crt", "-days", "1", "-extfile", "san.cnf")  # fmt: skip


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """Mosquitto with deploy/mosquitto's settings, its paths moved to a temporary folder, plus a TLS listener."""
    folder = tmp_path_factory.mktemp("mosquitto")
    port, tls_port = free_port(), free_port()
    _certificates(folder)
    passwd = folder / "passwd"
    for index, (user, password) in enumerate(PASSWORDS.items()):
        create = ["-c"] if index == 0 else []
        subprocess.run(["mosquitto_passwd", *create, "-b", str(passwd), user, password], check=True)
    conf = (DEPLOY / "mosquitto.conf").read_text()
    conf = conf.replace("listener 1883", f"listener {port} 127.0.0.1")
    conf = conf.replace("/mosquitto/config/passwd", str(passwd)).replace("/mosquitto/config/acl", str(DEPLOY / "acl"))
    conf = conf.replace("/mosquitto/data/", f"{folder}/")
    assert f"listener {port}" in conf and "allow_anonymous false" in conf
    # Started as root, Mosquitto would switch to the "mosquitto" user, who cannot read the temporary folder.
    conf += f"\nuser {getpass.getuser()}\n"
    conf += (f"\nlistener {tls_port} 127.0.0.1\ncafile {folder}/ca.crt\ncertfile {folder}/server.crt\n"
             f"keyfile {folder}/server.key\n")  # fmt: skip
    (folder / "mosquitto.conf").write_text(conf)
    process = subprocess.Popen(["mosquitto", "-c", str(folder / "mosquitto.conf")], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        eventually(lambda: _listening(port) and _listening(tls_port), 10, what="mosquitto to listen")
        yield Broker(port, tls_port, str(folder / "ca.crt"))
    finally:
        process.terminate()
        process.wait(10)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


class Client:
    """A client that records whether it connected, what the broker said, and what it received."""

    def __init__(self, url: str, subscribe: Sequence[str] = (), ca_file: str = "") -> None:
        self.connected = threading.Event()
        self.refused: list[str] = []
        self.received: list[tuple[str, bytes]] = []
        config = MqttConfig(url=url, ca_file=ca_file)
        self.client = mqtt_client(config, f"c-{uuid.uuid4().hex[:8]}", [(t, 1) for t in subscribe], clean=True,
                                  on_connected=lambda _c: self.connected.set())  # fmt: skip
        inner: Any = self.client.on_connect

        def on_connect(client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
            if reason.is_failure:
                self.refused.append(str(reason))
                client.disconnect()  # no retrying with a wrong login
            inner(client, userdata, flags, reason, props)

        self.client.on_connect = on_connect
        self.client.on_message = lambda _c, _u, m: self.received.append((m.topic, bytes(m.payload)))
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes) -> int:
        """The PUBACK's reason code: 0 when accepted, 135 (not authorized) when the ACL refused it."""
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(5)
        return info.rc

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_anonymous_and_wrong_logins_are_refused(broker: Broker) -> None:
    for url in (f"mqtt://127.0.0.1:{broker.port}", f"mqtt://kitchen-speaker:wrong@127.0.0.1:{broker.port}"):
        client = Client(url)
        try:
            eventually(partial(getattr, client, "refused"), 10, what="a refusal")
            assert not client.connected.is_set()
            assert "authori" in client.refused[0].lower() or "password" in client.refused[0].lower()
        finally:
            client.close()


def test_a_device_reaches_the_assistant_on_its_own_topics_only(broker: Broker) -> None:
    t = topics()
    edge = Client(f"mqtt://assistant:{PASSWORDS['assistant']}@127.0.0.1:{broker.port}", t.subscriptions())
    device = Client(f"mqtt://kitchen-speaker:{PASSWORDS['kitchen-speaker']}@127.0.0.1:{broker.port}",
                    [t.reply_topic("kitchen-speaker"), t.reply_topic("bedroom-speaker")])  # fmt: skip
    try:
        assert edge.connected.wait(10) and device.connected.wait(10)
        device.publish(t.request_topic("kitchen-speaker"), b'{"id": "1", "text": "hi"}')
        device.publish(t.request_topic("bedroom-speaker"), b'{"id": "2", "text": "pretending"}')
        device.publish(t.audio_topic("kitchen-speaker", "a1"), b"RIFF")
        eventually(lambda: len(edge.received) >= 2, 10, what="the device's own request and audio")
        edge.publish(t.reply_topic("kitchen-speaker"), b'{"id": "1"}')
        edge.publish(t.reply_topic("bedroom-speaker"), b'{"id": "2"}')
        eventually(lambda: device.received, 10, what="the device's reply")
        time.sleep(0.5)
        assert sorted(topic for topic, _ in edge.received) == [t.audio_topic("kitchen-speaker", "a1"),
                                                               t.request_topic("kitchen-speaker")]  # fmt: skip
        assert [topic for topic, _ in device.received] == [t.reply_topic("kitchen-speaker")]
    finally:
        edge.close()
        device.close()


def test_mqtts_checks_the_broker_s_certificate(broker: Broker) -> None:
    url = f"mqtts://assistant:{PASSWORDS['assistant']}@127.0.0.1:{broker.tls_port}"
    trusted = Client(url, ca_file=broker.ca_file)  # MQTT_CA_FILE
    stranger = Client(url)  # the system's CAs do not know the test CA
    try:
        assert trusted.connected.wait(10), "no TLS connection with the broker's CA"
        time.sleep(1.0)
        assert not stranger.connected.is_set()
    finally:
        trusted.close()
        stranger.close()


class Submitted(Forwarder):
    """Keeps what the edge submits."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

    def to_stage(self, stage: Stage, envelope: Envelope) -> None:
        self.envelopes.append(envelope)


def test_the_edge_waits_for_a_broker_that_is_not_up_yet(tmp_path: Path) -> None:
    """``assistant mqtt`` started before Mosquitto (compose, a reboot) keeps trying, and serves once it is up."""
    port = free_port()
    settings = Settings.from_env({"ASSISTANT_DATA_DIR": str(tmp_path / "data"), "MQTT_URL": f"mqtt://127.0.0.1:{port}",
                                  "MQTT_CLIENT_ID": f"edge-{uuid.uuid4().hex[:8]}"})  # fmt: skip
    adapters = build_adapters(settings, migrate=True)
    submitted = Submitted()
    edge = MqttEdge(adapters, submitted, settings.mqtt)
    edge.start()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nuser {getpass.getuser()}\n")
    process: subprocess.Popen[bytes] | None = None
    try:
        time.sleep(1.5)
        assert not edge.wait_connected(0)
        process = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert edge.wait_connected(20), "the edge did not connect once the broker was up"
        device = Client(f"mqtt://127.0.0.1:{port}")
        try:
            assert device.connected.wait(10)
            device.publish(topics().request_topic("porch"), b'{"id": "1", "text": "hi"}')
            eventually(lambda: submitted.envelopes, 10, what="the request submitted")
        finally:
            device.close()
    finally:
        edge.stop()
        adapters.close()
        if process is not None:
            process.terminate()
            process.wait(10)
