"""WebSocket ``/audio`` through the real ``assistant gateway`` (gunicorn, gevent worker) and a real stage worker
with the real models, on Redis and PostgreSQL: the distributed layout, as processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import redis
import requests
import sqlalchemy
from simple_websocket import Client
from simple_websocket import ConnectionError as HandshakeRefused
from voice_ws_support import VoiceClient, assert_spoken_in_order, recording, silence

from adapters.tokens import issue_token
from pipeline.settings import Settings

pytestmark = pytest.mark.servers

ROOT = Path(__file__).resolve().parents[2]
ASSISTANT = str(Path(sys.executable).parent / "assistant")
BROKER_DB, STATE_DB = 5, 6
PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
SECRET = uuid.uuid4().hex + uuid.uuid4().hex
DEADLINE = 90.0  # the worker loads and warms Whisper and Piper before its first utterance


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Gateway:
    base: str
    logs: Path

    @property
    def ws(self) -> str:
        return self.base.replace("http://", "ws://") + "/audio"

    def token(self, subject: str) -> str:
        return issue_token(Settings(jwt_secret=SECRET), subject, ("user",), 600)

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")


@pytest.fixture(scope="module")
def gateway(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    database = f"voice_ws_{uuid.uuid4().hex[:10]}"
    admin = sqlalchemy.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sqlalchemy.text(f'CREATE DATABASE "{database}"'))
    for db in (BROKER_DB, STATE_DB):
        redis.Redis(db=db).flushdb()
    logs = tmp_path_factory.mktemp("voice-ws-gateway")
    env = {
        **os.environ,
        "BROKER_URL": f"redis://127.0.0.1:6379/{BROKER_DB}",
        "REDIS_URL": f"redis://127.0.0.1:6379/{STATE_DB}",
        "DATABASE_URL": f"postgresql://postgres@127.0.0.1:5432/{database}",
        "JWT_SECRET": SECRET,
        "HOST": "127.0.0.1",
        "MODELS_DIR": str(models_dir),
        "ASSISTANT_CONFIG_DIR": str(logs),  # no config files: the defaults
        "GATEWAY_ACCESS_LOG": "-",  # gunicorn's access log, to check what it writes
        "LOG_LEVEL": "INFO",
    }
    processes: list[subprocess.Popen[bytes]] = []

    def start(name: str, *args: str) -> None:
        log = open(logs / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        processes.append(subprocess.Popen([ASSISTANT, *args], cwd=ROOT, env=env, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True))  # fmt: skip

    port = free_port()
    try:
        subprocess.run([ASSISTANT, "migrate"], cwd=ROOT, env=env, check=True, capture_output=True, timeout=60)
        start("gateway", "gateway", "--port", str(port))
        start("worker", "worker", "--queues", "asr,dispatch,inference,tts,reply.web", "--concurrency", "2",
              "--hostname", "voice@%h")  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline or processes[0].poll() is not None:
                pytest.fail(f"the gateway did not start:\n{(logs / 'gateway.log').read_text()[-3000:]}")
            time.sleep(0.2)
        yield Gateway(base, logs)
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        with admin.connect() as connection:
            connection.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()


def test_an_utterance_through_gunicorn_and_the_stage_workers(gateway: Gateway) -> None:
    token = gateway.token("ivy")
    client = VoiceClient(f"{gateway.ws}?access_token={token}")
    try:
        client.send({"type": "start", "sample_rate": 16000, "format": "pcm16", "reply_audio": True})
        client.send_audio(np.concatenate((silence(0.3), recording("living_room_light_en.wav"), silence(1.2))))
        transcript = client.event("transcript", DEADLINE)
        assert "living room" in transcript["text"].lower()
        assert client.event("audio_start", DEADLINE)["sample_rate"] == 22050
        client.event("audio_end", DEADLINE)
        assert_spoken_in_order(client, transcript["message_id"])
        # A text message on the same socket, through the same session.
        client.send({"type": "text", "text": "现在几点", "reply_audio": False})
        reply = client.event("reply", DEADLINE)
        reply = client.event("reply", DEADLINE)
        assert reply["skill"] == "time" and reply["session_id"] == transcript["session_id"]
    finally:
        client.close()
    # The gevent worker serves HTTP on after its WebSockets closed.
    assert requests.get(f"{gateway.base}/healthz", timeout=5).status_code == 200


def test_refusals_through_gunicorn_and_no_token_in_its_access_log(gateway: Gateway) -> None:
    token = gateway.token("jay")
    with pytest.raises(HandshakeRefused) as refused:
        Client.connect(f"{gateway.ws}?access_token={token}x&lang=en")
    assert refused.value.status_code == 401
    with pytest.raises(HandshakeRefused):
        Client.connect(gateway.ws, headers={"Authorization": f"Bearer {token}x"})
    client = VoiceClient(gateway.ws)
    client.send({"type": "auth", "token": token + "x"})
    assert client.event("error", 10)["code"] == "invalid_token"
    client.wait_closed()
    accepted = VoiceClient(f"{gateway.ws}?access_token={token}")
    accepted.send({"type": "text", "text": "现在几点", "reply_audio": False})
    accepted.event("reply", DEADLINE)
    accepted.close()
    time.sleep(0.5)
    log = gateway.log("gateway")
    refusals = [line for line in log.splitlines() if '"GET /audio' in line and '" 401 ' in line]
    assert refusals, f"gunicorn logged no refused handshake: the check below would prove nothing\n{log[-2000:]}"
    assert any("lang=en" in line for line in refusals)  # the rest of the query string is kept
    assert token not in log
