"""The distributed layout as compose.yaml runs it, started as plain processes against the local servers."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
import sqlalchemy
import yaml
from celery import Celery

from pipeline.model_config import ModelConfig

pytestmark = pytest.mark.servers

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
REDIS_BROKER_DB, REDIS_STATE_DB = 14, 15
PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# What .env would give compose's ${NAME:?...} variables in commands.
COMPOSE_VARIABLES = {"FLOWER_USER": "ops", "FLOWER_PASSWORD": uuid.uuid4().hex}


def compose_command(service: str, port: int | None = None) -> list[str]:
    """The service's command from compose.yaml, with the installed executables, its variables and a free port."""
    services = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    variable = re.compile(r"\$\{(\w+)[^}]*\}")  # ${NAME}, ${NAME:?message}, ${NAME:-default}
    parts = services[service]["command"]
    command = [variable.sub(lambda m: COMPOSE_VARIABLES[m.group(1)], str(part)) for part in parts]
    command[0] = str(BIN / command[0])
    if port is not None:
        command = [str(port) if part == "8080" else part for part in command]
        command = [f"--port={port}" if part == "--port=5555" else part for part in command]
    return command


class Layout:
    """The processes of one run, their logs, and the environment they share."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.processes: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, command: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(
            command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.processes.append((name, process))
        return process

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def stop(self) -> None:
        for _, process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for _, process in self.processes:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def wait_ready(url: str, layout: Layout, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        for name, process in layout.processes:
            if process.poll() is not None:
                pytest.fail(f"{name} exited with {process.returncode}:\n{layout.log(name)[-3000:]}")
        time.sleep(0.2)
    pytest.fail(f"{url} not ready after {timeout} s")


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[dict[str, Any]]:
    database = f"e2e_{uuid.uuid4().hex[:10]}"
    admin = sqlalchemy.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f'CREATE DATABASE "{database}"'))
    for db in (REDIS_BROKER_DB, REDIS_STATE_DB):
        redis.Redis(db=db).flushdb()
    env = {
        **os.environ,
        "BROKER_URL": f"redis://127.0.0.1:6379/{REDIS_BROKER_DB}",
        "REDIS_URL": f"redis://127.0.0.1:6379/{REDIS_STATE_DB}",
        "DATABASE_URL": f"postgresql://postgres@127.0.0.1:5432/{database}",
        "JWT_SECRET": uuid.uuid4().hex + uuid.uuid4().hex,
        "LOG_LEVEL": "INFO",
        "HOST": "127.0.0.1",
        # Many messages from one user and one address.
        "RATE_LIMIT_PER_USER": "off",
        "RATE_LIMIT_PER_IP": "off",
        # What compose mounts at /models for the voice workers.
        "MODELS_DIR": str(models_dir),
    }
    run = Layout(env, tmp_path_factory.mktemp("e2e-logs"))
    try:
        migrate = subprocess.run(compose_command("migrate"), cwd=ROOT, env=env, capture_output=True, timeout=60)
        assert migrate.returncode == 0, migrate.stderr.decode()
        ports = [free_port(), free_port()]
        for index, port in enumerate(ports):
            run.start(f"gateway{index}", compose_command("gateway", port))
        # Two replicas of the dispatch service, as `docker compose up --scale worker-dispatch=2` runs.
        for index in range(2):
            run.start(f"dispatch{index}", [*compose_command("worker-dispatch"), "--hostname", f"dispatch{index}@%h"])
        run.start("inference", [*compose_command("worker-inference"), "--hostname", "inference@%h"])
        run.start("reply-web", [*compose_command("worker-reply-web"), "--hostname", "reply@%h"])
        run.start("asr", [*compose_command("worker-asr"), "--hostname", "asr@%h"])
        run.start("tts", [*compose_command("worker-tts"), "--hostname", "tts@%h"])
        flower_port = free_port()
        run.start("flower", compose_command("flower", flower_port))
        for port in ports:
            wait_ready(f"http://127.0.0.1:{port}/readyz", run)
        token = subprocess.run(
            [str(BIN / "assistant"), "token", "--sub", "erin", "--role", "user"],
            cwd=ROOT, env=env, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        # The workers publish their skills when they start (worker_ready), before any message.
        deadline = time.monotonic() + 30
        listed: set[str] = set()
        while not {"time", "weather", "help"} <= listed and time.monotonic() < deadline:
            time.sleep(0.2)
            skills = requests.get(
                f"http://127.0.0.1:{ports[0]}/api/skills", headers={"Authorization": f"Bearer {token}"}, timeout=5
            ).json()["skills"]
            listed = {skill["name"] for skill in skills}
        assert {"time", "weather", "help"} <= listed, listed
        yield {"urls": [f"http://127.0.0.1:{p}" for p in ports], "token": token, "run": run, "flower": flower_port}
    finally:
        run.stop()
        admin = sqlalchemy.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()


def post(url: str, token: str, body: dict[str, Any], wait: float = 10) -> requests.Response:
    return requests.post(
        f"{url}/api/messages?wait={wait}", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=wait + 10
    )


def test_messages_are_answered_and_both_dispatch_workers_share_the_load(layout: dict[str, Any]) -> None:
    url, token = layout["urls"][0], layout["token"]
    texts = ["现在几点", "what time is it", "help", "今天星期几", "tell me a joke"]

    def send(i: int) -> dict[str, Any]:
        response = post(url, token, {"text": texts[i % len(texts)], "session_id": f"load-{i}"})
        assert response.status_code == 200, response.text
        return response.json()

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(send, range(80)))
    skills = {r["reply"]["skill"] for r in results}
    assert {"time", "help", "fallback"} <= skills
    # Each worker's own count of the tasks it ran, over Celery's remote control on the broker.
    control = Celery(broker=f"redis://127.0.0.1:6379/{REDIS_BROKER_DB}")
    try:
        stats = control.control.inspect(timeout=3).stats() or {}
    finally:
        control.close()
    ran = {name.partition("@")[0]: worker["total"].get("assistant.dispatch", 0) for name, worker in stats.items()}
    assert ran.get("dispatch0", 0) > 0 and ran.get("dispatch1", 0) > 0, (ran, stats.keys())
    assert ran["dispatch0"] + ran["dispatch1"] >= 80, ran


def test_any_gateway_replica_serves_any_session(layout: dict[str, Any]) -> None:
    first, second = layout["urls"]
    token = layout["token"]
    headers = {"Authorization": f"Bearer {token}"}
    session = f"replica-{uuid.uuid4().hex[:8]}"
    opened = post(first, token, {"text": "天气", "session_id": session})
    assert opened.json()["reply"]["text"] == "哪个城市？"
    events: list[dict[str, Any]] = []
    connected = threading.Event()

    def read_stream() -> None:
        with requests.get(f"{second}/api/sessions/{session}/events", headers=headers, stream=True, timeout=20) as r:
            connected.set()
            for line in r.iter_lines(decode_unicode=True):
                if line.startswith("data:"):
                    events.append(json.loads(line[5:]))
                    if len(events) == 2:
                        return

    reader = threading.Thread(target=read_stream, daemon=True)
    reader.start()
    assert connected.wait(10)
    accepted = post(second, token, {"text": "现在几点", "session_id": session}, wait=0)
    assert accepted.status_code == 202
    reader.join(15)
    # The stream replays the first reply (sent through the other replica), then the new one.
    assert [e["skill"] for e in events] == ["weather", "time"]
    assert "哪个城市" in events[1]["text"]  # the interrupted question is offered again
    transcript = requests.get(f"{first}/api/sessions/{session}", headers=headers, timeout=10).json()
    assert [e["kind"] for e in transcript["entries"]] == ["message", "reply", "message", "reply"]


def test_resent_client_msg_id_gets_one_reply(layout: dict[str, Any]) -> None:
    first, second = layout["urls"]
    token = layout["token"]
    session = f"dedup-{uuid.uuid4().hex[:8]}"
    body = {"text": "现在几点", "session_id": session, "client_msg_id": "c-1"}
    one = post(first, token, body).json()
    two = post(second, token, body).json()
    assert one["message_id"] == two["message_id"] and two.get("duplicate") is True
    replies = requests.get(
        f"{first}/api/sessions/{session}/replies?wait=0", headers={"Authorization": f"Bearer {token}"}, timeout=10
    ).json()["replies"]
    assert len(replies) == 1


def test_flower_shows_the_workers(layout: dict[str, Any]) -> None:
    url = f"http://127.0.0.1:{layout['flower']}/"
    login = (COMPOSE_VARIABLES["FLOWER_USER"], COMPOSE_VARIABLES["FLOWER_PASSWORD"])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if requests.get(url, auth=login, timeout=2).status_code == 200:
                # Only with the login from .env.
                assert requests.get(url, timeout=2).status_code == 401
                assert requests.get(url, auth=(login[0], "wrong"), timeout=2).status_code == 401
                return
        except requests.RequestException:
            time.sleep(0.5)
    pytest.fail(f"flower did not answer:\n{layout['run'].log('flower')[-2000:]}")


def test_the_voice_workers_get_the_models_read_only() -> None:
    services = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    for name, queue in (("worker-asr", "asr"), ("worker-tts", "tts"), ("worker-inference", "inference")):
        service = services[name]
        assert service["command"][:4] == ["assistant", "worker", "--queues", queue]
        assert service["environment"]["MODELS_DIR"] == "/models"
        assert "./models:/models:ro" in service["volumes"]
        # Still the shared settings: the same broker, Redis and database as every other service.
        assert service["environment"]["BROKER_URL"] == services["gateway"]["environment"]["BROKER_URL"]


def test_the_inference_workers_get_every_model_setting_with_the_code_s_defaults() -> None:
    services = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    service = services["worker-inference"]
    assert service["command"][:4] == ["assistant", "worker", "--queues", "inference"]
    environment = service["environment"]
    assert environment["BROKER_URL"] == services["gateway"]["environment"]["BROKER_URL"]
    read = set(re.findall(r'"(MODEL_[A-Z_]+)"', (ROOT / "pipeline" / "model_config.py").read_text()))
    passed = {name for name in environment if name.startswith("MODEL_")}
    assert passed == read
    # Each from .env, or else a value that means what leaving it out means to the code.
    unset = {}
    for name in passed:
        match = re.fullmatch(r"\$\{(\w+):-(.*)\}", str(environment[name]))
        assert match is not None and match[1] == name, environment[name]
        unset[name] = match[2]
    assert ModelConfig.from_env(unset) == ModelConfig.from_env({})
    documented = set(re.findall(r"\b(MODEL_[A-Z_]+)=", (ROOT / "deploy" / "env.example").read_text()))
    assert documented == read


def test_an_utterance_is_heard_answered_and_spoken_across_the_workers(
    layout: dict[str, Any], shared_audio: Path
) -> None:
    first, second = layout["urls"]
    headers = {"Authorization": f"Bearer {layout['token']}"}
    response = requests.post(
        f"{first}/api/audio",
        params={"wait": 60, "reply_audio": "true"},
        data=(shared_audio / "living_room_light_en.wav").read_bytes(),
        headers={**headers, "Content-Type": "audio/wav"},
        timeout=90,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert "living room" in body["transcript"]["text"].lower()
    reply = body["reply"]
    assert reply["audio"]["status"] == "ready", reply
    timings = reply["timings"]
    assert set(timings) == {"decode", "vad", "asr", "dispatch", "tts_first_audio", "tts"}
    print("stage timings (ms):", json.dumps(timings))
    # Any gateway replica serves the spoken reply: it is in Redis, not on one machine's disk.
    wav = requests.get(f"{second}{reply['audio']['url']}", headers=headers, timeout=10)
    assert wav.status_code == 200 and wav.headers["Content-Type"] == "audio/wav"
    assert wav.content[:4] == b"RIFF" and len(wav.content) > 22050
    # The voice events the WebSocket edge reads, in the Redis stream of the message.
    state = redis.Redis(db=REDIS_STATE_DB)
    try:
        entries = state.xrange(f"voice:{body['message_id']}")
    finally:
        state.close()
    kinds = [json.loads(fields[b"e"])["type"] for _, fields in entries]
    assert "transcript" in kinds and kinds[-1] == "audio_end"
    assert kinds.index("transcript") < kinds.index("audio_start") < kinds.index("chunk")
    # The two pools each did their part.
    control = Celery(broker=f"redis://127.0.0.1:6379/{REDIS_BROKER_DB}")
    try:
        stats = control.control.inspect(timeout=3).stats() or {}
    finally:
        control.close()
    ran = {name.partition("@")[0]: worker["total"] for name, worker in stats.items()}
    assert ran["asr"].get("assistant.asr", 0) >= 1 and ran["tts"].get("assistant.tts", 0) >= 1, ran


def test_every_service_reserves_and_limits_its_cpu_and_memory() -> None:
    services = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    for name, service in services.items():
        resources = service.get("deploy", {}).get("resources", {})
        for kind in ("reservations", "limits"):
            assert set(resources.get(kind, {})) >= {"cpus", "memory"}, (name, kind)
        reserved, limit = resources["reservations"], resources["limits"]
        # A reservation above its limit would never be granted.
        assert 0 < float(reserved["cpus"]) <= float(limit["cpus"]), name
        assert 0 < compose_bytes(reserved["memory"]) <= compose_bytes(limit["memory"]), name


def compose_bytes(size: str) -> int:
    """Compose's memory sizes (``512M``, ``1G``: binary units, as Docker reads them) in bytes."""
    match = re.fullmatch(r"(\d+)([KMG])", str(size))
    assert match is not None, size
    return int(match[1]) * 1024 ** " KMG".index(match[2])
