"""MQTT benchmark: simulated devices ask for lights at a fixed rate; each must get its reply and its lamp a command.

``python -m bench.mqtt`` starts the real embedded layout (``assistant run`` with ``MQTT_URL``) and the Redis layout
(``assistant mqtt`` and two ``assistant worker`` processes) as child processes against the local Mosquitto, and
prints requests/s and p50/p99 from the request's publish to its device command and to its reply.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from bench.layout import BIN, HOST, POSTGRES_ADMIN, CpuMeter, Layout, ServerError, base_env, free_port
from bench.voice import DEFAULT_MODELS_DIR

logger = logging.getLogger(__name__)

#: The local Mosquitto as installed (its defaults: Nagle's algorithm on).
SHARED_PORT = 1883
#: Redis databases of the Redis layout (broker, state); flushed before and after.
BROKER_DB, STATE_DB = 13, 12
#: Rooms of the simulated home: (area id, name); each has one light, ``<name>灯``.
ROOMS = [
    ("living_room", "客厅"), ("bedroom", "卧室"), ("kitchen", "厨房"), ("study", "书房"), ("bathroom", "浴室"),
    ("dining_room", "餐厅"), ("balcony", "阳台"), ("garage", "车库"), ("guest_room", "客房"), ("hallway", "走廊"),
]  # fmt: skip


def devices_yaml(devices: int) -> str:
    """The home: ten rooms with a light each, and ``devices`` speakers spread over the rooms."""
    lines = ["areas:"]
    lines += [f"  - id: {area}\n    name: {name}" for area, name in ROOMS]
    lines.append("devices:")
    lines += [f"  - id: {device_id(n)}\n    area: {ROOMS[n % len(ROOMS)][0]}" for n in range(devices)]
    lines.append("entities:")
    lines += [
        f'  - id: light.{area}_light\n    name: {name}灯\n    area: {area}\n    state: "off"' for area, name in ROOMS
    ]
    return "\n".join(lines) + "\n"


def device_id(n: int) -> str:
    return f"dev{n:03d}"


def request_text(n: int) -> str:
    """What request ``n`` asks: a device's own room's light, on or off in turn."""
    _, name = ROOMS[n % len(ROOMS)]
    return f"打开{name}灯" if (n // len(ROOMS)) % 2 == 0 else f"关闭{name}灯"


@dataclass
class Tally:
    """What came back, by request id, with arrival times (``time.perf_counter``)."""

    sent: dict[str, float] = field(default_factory=dict)
    replies: dict[str, list[tuple[float, str]]] = field(default_factory=dict)
    commands: dict[str, list[float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reply(self, at: float, body: dict[str, Any]) -> None:
        with self.lock:
            self.replies.setdefault(str(body.get("id")), []).append((at, str(body.get("message_id"))))

    def command(self, at: float, body: dict[str, Any]) -> None:
        with self.lock:
            self.commands.setdefault(str(body.get("message_id")), []).append(at)

    def done(self, ids: list[str]) -> bool:
        with self.lock:
            return all(i in self.replies and self.replies[i][0][1] in self.commands for i in ids)


class Devices:
    """``devices`` simulated devices on ``clients`` paho clients (each client publishes and listens for several
    devices), and one listener on the lights' command topics."""

    def __init__(self, port: int, prefix: str, state_prefix: str, devices: int, clients: int, tally: Tally) -> None:
        self.port = port
        self.prefix = prefix
        self.tally = tally
        self.devices = devices
        tag = uuid.uuid4().hex[:6]
        self.clients = [self._client(f"bench-{tag}-{k}") for k in range(clients)]
        for k, client in enumerate(self.clients):
            mine = [n for n in range(devices) if n % clients == k]
            filters = [(f"{prefix}/{device_id(n)}/{kind}", 1) for n in mine for kind in ("reply", "error")]
            self._connect(client, filters)
        self.lights = self._client(f"bench-{tag}-lights")
        self._connect(self.lights, [(f"{state_prefix}/+/+/set", 1)])

    def _client(self, client_id: str) -> paho.Client:
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
        client.max_inflight_messages_set(200)
        client.on_message = self._on_message
        return client

    def _connect(self, client: paho.Client, filters: list[tuple[str, int]]) -> None:
        subscribed = threading.Event()
        client.on_connect = lambda c, *_: c.subscribe(filters)
        client.on_subscribe = lambda *_: subscribed.set()
        client.connect(HOST, self.port)
        client.loop_start()
        if not subscribed.wait(10):
            raise ServerError("a bench client could not subscribe on the local Mosquitto")

    def _on_message(self, _client: paho.Client, _userdata: Any, message: paho.MQTTMessage) -> None:
        at = time.perf_counter()
        body = json.loads(message.payload)
        if message.topic.endswith("/set"):
            self.tally.command(at, body)
        elif message.topic.endswith("/reply"):
            self.tally.reply(at, body)
        else:
            with self.tally.lock:
                self.tally.errors.append(str(body.get("error", body))[:200])

    def send(self, n: int, request_id: str) -> None:
        device = n % self.devices
        client = self.clients[device % len(self.clients)]
        payload = json.dumps({"text": request_text(device), "id": request_id}, ensure_ascii=False)
        with self.tally.lock:
            self.tally.sent[request_id] = time.perf_counter()
        client.publish(f"{self.prefix}/{device_id(device)}/request", payload, qos=1)

    def close(self) -> None:
        for client in [*self.clients, self.lights]:
            client.disconnect()
            client.loop_stop()


def run_load(devices: Devices, rate: float, seconds: float, tag: str, settle: float = 15.0) -> dict[str, Any]:
    """Requests open-loop at ``rate``/s for ``seconds``, round-robin over the devices; then wait for stragglers."""
    total = int(rate * seconds)
    ids = [f"{tag}-{i}" for i in range(total)]
    start = time.perf_counter()
    for i, request_id in enumerate(ids):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        devices.send(i, request_id)
    sent_for = time.perf_counter() - start
    deadline = time.monotonic() + settle
    while not devices.tally.done(ids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return figures(devices.tally, ids, sent_for)


def figures(tally: Tally, ids: list[str], sent_for: float) -> dict[str, Any]:
    to_reply: list[float] = []
    to_command: list[float] = []
    twice = missing_replies = missing_commands = 0
    with tally.lock:
        for request_id in ids:
            sent = tally.sent[request_id]
            replies = tally.replies.get(request_id, [])
            if not replies:
                missing_replies += 1
                continue
            twice += len(replies) > 1
            at, message_id = replies[0]
            to_reply.append(1000 * (at - sent))
            commands = tally.commands.get(message_id, [])
            if not commands:
                missing_commands += 1
                continue
            twice += len(commands) > 1
            to_command.append(1000 * (commands[0] - sent))
        last = max((r[0][0] for i in ids if (r := tally.replies.get(i))), default=0.0)
        first = min(tally.sent[i] for i in ids)
    return {
        "requests": len(ids),
        "sent_per_s": round(len(ids) / sent_for, 1),
        "answered_per_s": round(len(to_reply) / max(1e-9, last - first), 1),
        "replies": len(to_reply),
        "commands": len(to_command),
        "missing_replies": missing_replies,
        "missing_commands": missing_commands,
        "twice": twice,
        "errors": len(tally.errors),
        "reply_ms": percentiles(to_reply),
        "command_ms": percentiles(to_command),
    }


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)

    return {"p50": round(statistics.median(ordered), 1), "p95": at(0.95), "p99": at(0.99), "max": round(ordered[-1], 1)}


class MqttLayout(Layout):
    """The servers of one layout, with a unique topic root and the bench home's devices file."""

    #: ``embedded`` or ``redis``.
    name = ""

    def __init__(self, port: int, devices: int, log_level: str, keep_logs: bool) -> None:
        super().__init__(keep_logs)
        self.port = port
        self.root = Path(__file__).resolve().parent.parent
        self.topic_root = f"bench{uuid.uuid4().hex[:8]}"
        (self.workdir / "config").mkdir()
        devices_file = self.workdir / "devices.yaml"
        devices_file.write_text(devices_yaml(devices), encoding="utf-8")
        self.env = base_env() | {
            "MQTT_URL": f"mqtt://{HOST}:{port}",
            "MQTT_CLIENT_ID": f"{self.topic_root}-edge",
            "MQTT_TOPIC_PREFIX": f"{self.topic_root}/assistant",
            "MQTT_STATE_PREFIX": f"{self.topic_root}/home",
            "DEVICES_FILE": str(devices_file),
            "ASSISTANT_CONFIG_DIR": str(self.workdir / "config"),
            "ASSISTANT_DATA_DIR": str(self.workdir / "data"),
            "LOG_LEVEL": log_level,
            # The embedded process does not start without its speech models (text requests never load them).
            "MODELS_DIR": str(DEFAULT_MODELS_DIR),
        }

    @property
    def prefix(self) -> str:
        return self.env["MQTT_TOPIC_PREFIX"]

    @property
    def state_prefix(self) -> str:
        return self.env["MQTT_STATE_PREFIX"]

    def start(self) -> MqttLayout:
        raise NotImplementedError

    def pids(self) -> dict[str, list[int]]:
        return {proc.name: [proc.pid] for proc in self.procs}


class EmbeddedMqtt(MqttLayout):
    """``assistant run``: the HTTP API, every stage and the MQTT edge in one process, on the in-memory broker."""

    name = "embedded"

    def start(self) -> EmbeddedMqtt:
        port = free_port()
        self.spawn("embedded", [str(BIN / "assistant"), "run", "--port", str(port)], self.env)
        self.wait_ready(f"http://{HOST}:{port}")
        return self


class RedisMqtt(MqttLayout):
    """``assistant mqtt``, a worker on dispatch and inference and one on the reply queues (Redis broker and state,
    PostgreSQL), as compose runs them."""

    name = "redis"

    def __init__(self, port: int, devices: int, log_level: str, keep_logs: bool, concurrency: int) -> None:
        super().__init__(port, devices, log_level, keep_logs)
        self.database = f"bench_mqtt_{os.getpid()}"
        self.concurrency = concurrency
        self.env |= {
            "BROKER_URL": f"redis://{HOST}:6379/{BROKER_DB}",
            "REDIS_URL": f"redis://{HOST}:6379/{STATE_DB}",
            "DATABASE_URL": f"postgresql://postgres@{HOST}:5432/{self.database}",
            "JWT_SECRET": secrets.token_urlsafe(48),
        }
        self._db_created = False

    def start(self) -> RedisMqtt:
        import psycopg

        _flush(BROKER_DB, STATE_DB)
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
            connection.execute(f'CREATE DATABASE "{self.database}"')
        self._db_created = True
        migrate = subprocess.run([str(BIN / "assistant"), "migrate"], cwd=self.root, env=self.env,
                                 capture_output=True, text=True, timeout=120)  # fmt: skip
        if migrate.returncode != 0:
            raise ServerError(f"assistant migrate failed:\n{migrate.stdout}\n{migrate.stderr}")
        c = str(self.concurrency)
        for name, queues in (("worker-d", "dispatch,inference"), ("worker-m", "reply.mqtt,reply.web")):
            argv = ["worker", "--queues", queues, "--concurrency", c, "--hostname", f"{name}@%h"]
            self.spawn(name, [str(BIN / "assistant"), *argv], self.env)
        self.spawn("mqtt", [str(BIN / "assistant"), "mqtt"], self.env)
        return self

    def cleanup(self) -> None:
        if self._db_created:
            import psycopg

            with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as connection:
                connection.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
        _flush(BROKER_DB, STATE_DB)


def _flush(*dbs: int) -> None:
    import redis

    for db in dbs:
        client = redis.Redis(host=HOST, db=db)
        try:
            client.flushdb()
        finally:
            client.close()


def warm_up(layout: MqttLayout, devices: Devices, timeout: float = 120.0) -> None:
    """One request per device (resent until the edge, which subscribes once it is up, answers it)."""
    ids = [f"warm-{n}" for n in range(devices.devices)]
    deadline = time.monotonic() + timeout
    while not devices.tally.done(ids):
        layout.check_alive()
        if time.monotonic() > deadline:
            raise ServerError(f"warm-up unanswered after {timeout:.0f} s; errors: {devices.tally.errors[:3]}")
        for n, request_id in enumerate(ids):
            with devices.tally.lock:
                answered = request_id in devices.tally.replies
            if not answered:
                devices.send(n, request_id)
                time.sleep(0.005)
        end = time.monotonic() + 3.0
        while not devices.tally.done(ids) and time.monotonic() < end:
            time.sleep(0.05)


@dataclass
class OwnMosquitto:
    """A ``mosquitto`` of the benchmark's own on a free port, with Nagle's algorithm off (``set_tcp_nodelay``)."""

    port: int
    process: subprocess.Popen[bytes]


@contextlib.contextmanager
def own_mosquitto() -> Iterator[OwnMosquitto]:
    folder = Path(tempfile.mkdtemp(prefix="bench-mosquitto-"))
    port = free_port()
    config = folder / "mosquitto.conf"
    config.write_text(f"listener {port} {HOST}\nallow_anonymous true\nset_tcp_nodelay true\nmax_queued_messages 0\n")
    process = subprocess.Popen(["mosquitto", "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection((HOST, port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise ServerError("mosquitto did not start") from None
                time.sleep(0.05)
        yield OwnMosquitto(port, process)
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(folder, ignore_errors=True)


def mosquitto_pids() -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as handle:
                    if handle.read().strip() == "mosquitto":
                        found.append(int(entry))
            except OSError:
                continue
    return found


def measure(layout: MqttLayout, args: argparse.Namespace) -> dict[str, Any]:
    tally = Tally()
    devices = Devices(layout.port, layout.prefix, layout.state_prefix, args.devices, args.clients, tally)
    try:
        warm_up(layout, devices)
        time.sleep(1.0)
        meter = CpuMeter(layout.pids() | {"client": [os.getpid()], "mosquitto": mosquitto_pids()})
        meter.start()
        result = run_load(devices, args.rate, args.seconds, tag=layout.name)
        result["cpu_percent"] = meter.stop()
        layout.check_alive()
    finally:
        devices.close()
    return result


def show(name: str, result: dict[str, Any]) -> None:
    reply, command = result["reply_ms"], result["command_ms"]
    print(f"\n== {name}: {result['requests']} requests, sent at {result['sent_per_s']}/s, "
          f"answered at {result['answered_per_s']}/s")  # fmt: skip
    print(f"   replies {result['replies']}, commands {result['commands']}, missing replies "
          f"{result['missing_replies']}, missing commands {result['missing_commands']}, twice {result['twice']}, "
          f"errors {result['errors']}")  # fmt: skip
    for label, values in (("publish -> command", command), ("publish -> reply  ", reply)):
        if values:
            print(f"   {label}: p50 {values['p50']} ms  p95 {values['p95']} ms  p99 {values['p99']} ms  "
                  f"max {values['max']} ms")  # fmt: skip
    cpu = ", ".join(f"{k} {v}" for k, v in result["cpu_percent"].items())
    print(f"   CPU, % of one core: {cpu}")
    target = bool(command) and command["p99"] < 100 and not result["missing_commands"] and not result["twice"]
    print(f"   target (p99 publish -> command < 100 ms, every request answered once): {'met' if target else 'MISSED'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.mqtt", description=__doc__)
    parser.add_argument("--layout", choices=["embedded", "redis", "both"], default="both")
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second, all devices together")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the measured window")
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--clients", type=int, default=20, help="paho clients the devices are spread over")
    parser.add_argument("--broker", choices=["shared", "own"], default="shared",
                        help="the local Mosquitto on 1883, or one of its own with set_tcp_nodelay true")  # fmt: skip
    parser.add_argument("--concurrency", type=int, default=4, help="threads per worker (Redis layout)")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--keep-logs", action="store_true")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    results: dict[str, Any] = {}
    names = ["embedded", "redis"] if args.layout == "both" else [args.layout]
    for name in names:
        with contextlib.ExitStack() as stack:
            port = SHARED_PORT if args.broker == "shared" else stack.enter_context(own_mosquitto()).port
            layout: MqttLayout = (
                EmbeddedMqtt(port, args.devices, args.log_level, args.keep_logs)
                if name == "embedded"
                else RedisMqtt(port, args.devices, args.log_level, args.keep_logs, args.concurrency)
            )
            with layout:
                layout.start()
                results[name] = measure(layout, args)
        show(f"{name} (broker: {args.broker})", results[name])
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
