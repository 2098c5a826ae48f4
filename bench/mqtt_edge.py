"""The MQTT edge's own cost: devices publish requests at a fixed rate; time from publish to the envelope submitted.

``python -m bench.mqtt_edge [--rate 100] [--requests 1500] [--devices 200]`` runs the real edge (paho, the request
checks, registration with in-process coordination) against the local Mosquitto, with a forwarder that only notes
the time each envelope reaches it: what the edge adds before the queue, apart from the pipeline (``bench.mqtt``
measures the whole way to the device command). Topic roots and client ids are unique per run.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as paho

from adapters.mqtt import mqtt_client, topics
from assistant.bootstrap import build_adapters
from ingress.mqtt_edge import MqttEdge
from pipeline.channel_config import MqttConfig
from pipeline.envelope import Envelope
from pipeline.settings import Settings
from pipeline.stages import Stage
from tasks.forward import Forwarder

BROKER = "mqtt://127.0.0.1:1883"


class Arrivals(Forwarder):
    """Notes when each request's envelope was submitted, by request id."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}

    def to_stage(self, stage: Stage, envelope: Envelope) -> None:
        self.at[envelope.client_msg_id or ""] = time.perf_counter()


def _connected_client(client_id: str) -> paho.Client:
    ready = threading.Event()
    client = mqtt_client(MqttConfig(url=BROKER), client_id, clean=True, on_connected=lambda _c: ready.set())
    client.loop_start()
    if not ready.wait(10):
        raise SystemExit(f"no connection to {BROKER}")
    return client


def _percentile(values: list[float], share: float) -> float:
    return values[min(len(values) - 1, int(share * len(values)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second, all devices together")
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--clients", type=int, default=20, help="paho clients the devices are spread over")
    args = parser.parse_args()
    root = f"b{uuid.uuid4().hex[:10]}"
    with tempfile.TemporaryDirectory() as data:
        settings = Settings.from_env({
            "ASSISTANT_DATA_DIR": str(Path(data)), "MQTT_URL": BROKER, "MQTT_CLIENT_ID": f"edge-{root}",
            "MQTT_TOPIC_PREFIX": f"{root}/assistant", "MQTT_STATE_PREFIX": f"{root}/home",
            "MQTT_SESSION_EXPIRY_SECONDS": "60",
        })  # fmt: skip
        adapters = build_adapters(settings, migrate=True)
        arrivals = Arrivals()
        edge = MqttEdge(adapters, arrivals, settings.mqtt)
        edge.start()
        if not edge.wait_connected(10):
            raise SystemExit(f"the edge did not connect to {BROKER}")
        devices = [_connected_client(f"{root}-dev{i}") for i in range(args.clients)]
        t = topics(settings.mqtt.topic_prefix)
        sent: dict[str, float] = {}
        start = time.perf_counter()
        try:
            for k in range(args.requests):
                pause = start + k / args.rate - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
                request_id = f"r{k}"
                body = json.dumps({"id": request_id, "text": "现在几点"}).encode()
                sent[request_id] = time.perf_counter()
                devices[k % args.clients].publish(t.request_topic(f"dev{k % args.devices}"), body, qos=1)
            deadline = time.monotonic() + 20
            while len(arrivals.at) < len(sent) and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            edge.stop()
            for client in devices:
                client.disconnect()
                client.loop_stop()
            # Drop the edge's persistent session from the shared broker.
            _connected_client(f"edge-{root}").disconnect()
            adapters.close()
    latencies = sorted((arrivals.at[r] - at) * 1000 for r, at in sent.items() if r in arrivals.at)
    print(f"{len(sent)} requests from {args.devices} devices at {args.rate:g}/s: {len(latencies)} submitted")
    if latencies:
        print(f"publish -> submitted: p50 {_percentile(latencies, 0.5):.1f} ms  p95 {_percentile(latencies, 0.95):.1f} "
              f"ms  p99 {_percentile(latencies, 0.99):.1f} ms  max {latencies[-1]:.1f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
