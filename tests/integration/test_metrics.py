"""Prometheus metrics of every stage: the embedded pipeline's ``/metrics``, and a distributed worker process on
``METRICS_PORT`` (threads and prefork pools). Each test runs its own pipeline: the in-memory broker is one per
process, so no other pipeline may run beside the embedded one."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from e2e.servers import free_port
from fakes.openai_server import FakeOpenAI
from prometheus_client.parser import text_string_to_metric_families
from support import eventually

from adapters.tokens import issue_token
from assistant.bootstrap import build_adapters, build_gateway, warm_model_in_background
from assistant.embedded import build_embedded
from pipeline.settings import Settings
from pipeline.stages import TASK_NAMES, Stage

REDIS = "redis://127.0.0.1:6379"
BROKER_DB, STATE_DB = 12, 13
JWT_SECRET = "metrics-test-secret-" + "x" * 24
DEADLINE = 30.0
ROOT = Path(__file__).resolve().parents[2]

SKILLS_SOURCE = '''
"""Folder skills for the metrics tests: one raises, one hangs past the skill time limit."""

import time
from pathlib import Path

from skills.base import BaseSkill

GATE = Path({gate!r})


class BoomSkill(BaseSkill):
    def __init__(self):
        super().__init__(name="boom", description="总是出错 / always fails", triggers=["爆炸"])

    def execute(self, context):
        raise RuntimeError("kaboom")


class HangSkill(BaseSkill):
    def __init__(self):
        super().__init__(name="hang", description="从不回答 / never answers", triggers=["卡住"])

    def execute(self, context):
        deadline = time.monotonic() + 30
        while not GATE.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        return "too late"
'''

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    """Every sample of a ``/metrics`` page, by name and labels."""
    response = requests.get(url, timeout=10)
    response.raise_for_status()
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def scraped_when(url: str, name: str, at_least: float, **labels: str) -> Samples | None:
    """The page once ``name{labels}`` reached ``at_least``, else None (for ``eventually``)."""
    samples = scrape(url)
    return samples if value(samples, name, **labels) >= at_least else None


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def post(base: str, token: str, text: str, **body: Any) -> requests.Response:
    return requests.post(
        f"{base}/api/messages",
        json={"text": text, **body},
        params={"wait": "20"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=40,
    )


# -- embedded ----------------------------------------------------------------------------------------------------------


def test_embedded_metrics_show_every_stage(tmp_path: Path, serve: Any) -> None:
    gate = tmp_path / "release"
    skills_dir = tmp_path / "skills"
    skills_dir.mkdir()
    (skills_dir / "metrics_skills.py").write_text(SKILLS_SOURCE.format(gate=str(gate)), encoding="utf-8")
    with FakeOpenAI(tokens=("Once ", "upon ", "a ", "time.")) as fake:
        settings = Settings.from_env(
            {
                "ASSISTANT_DATA_DIR": str(tmp_path / "data"),
                "ASSISTANT_CONFIG_DIR": str(tmp_path / "config"),
                "SKILLS_DIR": str(skills_dir),
                "SKILL_TIMEOUT_SECONDS": "1",
                "MODEL_BACKEND": "openai",
                "MODEL_ENDPOINT": fake.endpoint,
                "MODEL_NAME": "fake-model",
                "INTENT_MODEL": "off",
                "MAX_WAIT_SECONDS": "30",
            }
        )
        adapters, celery_app, workers = build_embedded(settings)
        flask_app = build_gateway(settings, adapters, celery_app)
        workers.start()
        try:
            warmed = warm_model_in_background(celery_app.runtime)
            assert warmed is not None
            warmed.join(10)
            with serve(flask_app) as base:
                run_embedded_checks(base, settings, celery_app)
        finally:
            gate.touch()
            flask_app.extensions["assistant"]["hub"].close()
            workers.stop()
            adapters.close()


def run_embedded_checks(base: str, settings: Settings, celery_app: Any) -> None:
    alice = issue_token(settings, "alice", ("user",), 3600)
    bob = issue_token(settings, "bob", ("user",), 3600)
    first = post(base, alice, "现在几点")
    assert first.status_code == 200, first.text
    session = first.json()["session_id"]
    assert post(base, alice, "现在几点", session_id=session, client_msg_id="c-1").status_code == 200
    assert post(base, alice, "现在几点", session_id=session, client_msg_id="c-1").json().get("duplicate") is True
    assert post(base, bob, "现在几点", session_id=session).status_code == 404  # another's session
    boom = post(base, alice, "爆炸", session_id=session).json()
    assert boom["reply"]["error"], boom
    assert post(base, alice, "卡住", session_id=session).status_code == 200  # answered after the time limit
    story = post(base, alice, "tell me a short story about a cat", session_id=session).json()
    assert story["reply"]["text"] == "Once upon a time.", story
    # A message no stage can read is dead-lettered at once.
    celery_app.send_task(TASK_NAMES[Stage.DISPATCH], args=("not an envelope",))
    url = f"{base}/metrics"
    samples = eventually(
        lambda: scraped_when(url, "assistant_dead_letters_total", 1, stage="dispatch"),
        DEADLINE,
        what="the dead letter counted",
    )

    assert value(samples, "assistant_messages_total", channel="web", outcome="accepted") == 5
    assert value(samples, "assistant_messages_total", channel="web", outcome="duplicate") == 1
    assert value(samples, "assistant_messages_total", channel="web", outcome="rejected") == 1
    assert value(samples, "assistant_stage_seconds_count", stage="dispatch") >= 5
    assert value(samples, "assistant_stage_seconds_count", stage="inference") >= 1
    assert value(samples, "assistant_stage_seconds_count", stage="deliver") >= 5
    assert value(samples, "assistant_stage_seconds_sum", stage="dispatch") > 1.0  # the hung skill's second
    assert value(samples, "assistant_end_to_end_seconds_count", channel="web") >= 5
    assert 0 < value(samples, "assistant_end_to_end_seconds_sum", channel="web") < 60
    assert value(samples, "assistant_skill_calls_total", skill="time", outcome="ok") == 2
    assert value(samples, "assistant_skill_calls_total", skill="boom", outcome="error") == 1
    assert value(samples, "assistant_skill_calls_total", skill="hang", outcome="timeout") == 1
    assert value(samples, "assistant_model_seconds_count", model="openai") == 1
    assert value(samples, "assistant_model_load_seconds_count", model="openai") == 1
    assert value(samples, "assistant_dead_letters_total", stage="dispatch") == 1
    assert ("assistant_queue_depth", frozenset({("queue", "dispatch")})) in samples
    assert value(samples, "assistant_queue_depth", queue="reply.web") == 0
    text = requests.get(url, timeout=10).text
    assert "# TYPE assistant_model_errors_total counter" in text
    assert "# TYPE assistant_stage_seconds histogram" in text


# -- a distributed worker process -------------------------------------------------------------------------------------


@pytest.fixture
def redis_dbs() -> Iterator[None]:
    def flush() -> None:
        for db in (BROKER_DB, STATE_DB):
            client = redis.Redis.from_url(f"{REDIS}/{db}")
            client.flushdb()
            client.close()

    flush()
    yield
    flush()


def distributed_env(tmp_path: Path, database_url: str, metrics_port: int) -> dict[str, str]:
    return {
        "ASSISTANT_DATA_DIR": str(tmp_path / "data"),
        "ASSISTANT_CONFIG_DIR": str(tmp_path / "config"),
        "BROKER_URL": f"{REDIS}/{BROKER_DB}",
        "REDIS_URL": f"{REDIS}/{STATE_DB}",
        "DATABASE_URL": database_url,
        "JWT_SECRET": JWT_SECRET,
        "INTENT_MODEL": "off",
        "METRICS_PORT": str(metrics_port),
        "MAX_WAIT_SECONDS": "30",
        "RATE_LIMIT_PER_USER": "100000/minute",
        "RATE_LIMIT_PER_IP": "100000/minute",
    }


@contextmanager
def worker_process(env: dict[str, str], *options: str) -> Iterator[subprocess.Popen[bytes]]:
    """``assistant worker`` as compose runs it, until the block ends (SIGTERM, then SIGKILL)."""
    command = [sys.executable, "-m", "assistant.cli", "worker", "--queues", "dispatch,inference,reply.web", *options]
    child_env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"} | env
    process = subprocess.Popen(command, cwd=ROOT, env=child_env, start_new_session=True)
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def serving(url: str, process: subprocess.Popen[bytes]) -> Samples | None:
    assert process.poll() is None, f"the worker exited with {process.returncode}"
    try:
        return scrape(url)
    except requests.RequestException:
        return None


@contextmanager
def gateway(settings: Settings, serve: Any) -> Iterator[str]:
    adapters = build_adapters(settings, migrate=True)
    flask_app = build_gateway(settings, adapters)
    try:
        with serve(flask_app) as base:
            yield base
    finally:
        flask_app.extensions["assistant"]["hub"].close()
        adapters.close()


@pytest.mark.servers
def test_a_worker_process_serves_its_metrics_and_queue_depths(
    tmp_path: Path, serve: Any, postgres_url: str, redis_dbs: None
) -> None:
    port = free_port()
    env = distributed_env(tmp_path, postgres_url, port)
    settings = Settings.from_env(env)
    with gateway(settings, serve) as base, worker_process(env, "--concurrency", "2") as worker:
        url = f"http://127.0.0.1:{port}/metrics"
        before = eventually(lambda: serving(url, worker), DEADLINE, what="the worker's metrics", interval=0.2)
        assert value(before, "assistant_stage_seconds_count", stage="dispatch") == 0
        token = issue_token(settings, "alice", ("user",), 3600)
        answered = post(base, token, "现在几点")
        assert answered.status_code == 200 and answered.json()["reply"]["skill"] == "time", answered.text

        after = eventually(
            lambda: scraped_when(url, "assistant_stage_seconds_count", 1, stage="deliver"),
            DEADLINE,
            what="the delivery counted",
        )
        assert value(after, "assistant_stage_seconds_count", stage="dispatch") == 1
        assert value(after, "assistant_skill_calls_total", skill="time", outcome="ok") == 1
        assert value(after, "assistant_end_to_end_seconds_count", channel="web") == 1
        assert value(after, "process_resident_memory_bytes") > 0
        # The gateway counts what its edges accepted; the worker none.
        edge = scrape(f"{base}/metrics")
        assert value(edge, "assistant_messages_total", channel="web", outcome="accepted") == 1
        assert value(after, "assistant_messages_total", channel="web", outcome="accepted") == 0

        # Messages waiting in a queue this worker does not consume.
        app = build_gateway_celery(settings)
        for n in range(3):
            app.send_task(TASK_NAMES[Stage.ASR], args=(f"waiting {n}",))
        depths = scrape(url)
        assert value(depths, "assistant_queue_depth", queue="asr") == 3
        assert value(depths, "assistant_queue_depth", queue="dispatch") == 0


def build_gateway_celery(settings: Settings) -> Any:
    from tasks.celery_app import create_celery_app

    def no_runtime(_app: Any) -> Any:
        raise RuntimeError("the test only sends")

    return create_celery_app(settings, no_runtime)


@pytest.mark.servers
def test_a_prefork_worker_adds_up_its_children(tmp_path: Path, serve: Any, postgres_url: str, redis_dbs: None) -> None:
    port = free_port()
    env = distributed_env(tmp_path, postgres_url, port)
    settings = Settings.from_env(env)
    with gateway(settings, serve) as base, worker_process(env, "--pool", "prefork", "--concurrency", "2") as worker:
        url = f"http://127.0.0.1:{port}/metrics"
        eventually(lambda: serving(url, worker), DEADLINE, what="the worker's metrics", interval=0.2)
        token = issue_token(settings, "alice", ("user",), 3600)
        sent = 6
        for _ in range(sent):  # each in a session of its own, so the two children share them
            reply = post(base, token, "现在几点", client_msg_id=uuid.uuid4().hex)
            assert reply.status_code == 200, reply.text
        started = time.monotonic()
        samples = eventually(
            lambda: scraped_when(url, "assistant_stage_seconds_count", sent, stage="deliver"),
            DEADLINE,
            what="every delivery counted",
        )
        assert time.monotonic() - started < DEADLINE
        assert value(samples, "assistant_stage_seconds_count", stage="dispatch") == sent
        assert value(samples, "assistant_skill_calls_total", skill="time", outcome="ok") == sent
        assert value(samples, "assistant_end_to_end_seconds_count", channel="web") == sent
        # Written by the children: the parent handles no message.
        assert value(samples, "assistant_queue_depth", queue="dispatch") == 0


@pytest.mark.servers
def test_the_mqtt_edge_serves_its_messages_on_metrics_port(tmp_path: Path, postgres_url: str, redis_dbs: None) -> None:
    from adapters.mqtt import mqtt_client, topics
    from pipeline.channel_config import MqttConfig

    port = free_port()
    root = f"t{uuid.uuid4().hex[:10]}"
    env = distributed_env(tmp_path, postgres_url, port) | {
        "MQTT_URL": "mqtt://127.0.0.1:1883",
        "MQTT_CLIENT_ID": f"edge-{root}",
        "MQTT_TOPIC_PREFIX": f"{root}/assistant",
        "MQTT_STATE_PREFIX": f"{root}/home",
        "MQTT_SESSION_EXPIRY_SECONDS": "5",
    }
    build_adapters(Settings.from_env(env), migrate=True).close()
    child_env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"} | env
    edge = subprocess.Popen([sys.executable, "-m", "assistant.cli", "mqtt"], cwd=ROOT, env=child_env,
                            start_new_session=True)  # fmt: skip
    connected = threading.Event()
    device = mqtt_client(MqttConfig(url="mqtt://127.0.0.1:1883"), f"dev-{root}", clean=True,
                         on_connected=lambda _client: connected.set())  # fmt: skip
    device.loop_start()
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        eventually(lambda: serving(url, edge), DEADLINE, what="the edge's metrics", interval=0.2)
        request_topic = topics(f"{root}/assistant").request_topic("porch")
        assert connected.wait(10)

        def refused() -> Samples | None:
            # Sent until the edge has subscribed (what comes before is not delivered to it).
            device.publish(request_topic, b"not json", qos=1).wait_for_publish(5)
            return scraped_when(url, "assistant_messages_total", 1, channel="mqtt", outcome="rejected")

        eventually(refused, DEADLINE, what="a refused request counted", interval=0.3)
        device.publish(request_topic, b'{"id": "r-1", "text": "\\u73b0\\u5728\\u51e0\\u70b9"}', qos=1)
        samples = eventually(
            lambda: scraped_when(url, "assistant_messages_total", 1, channel="mqtt", outcome="accepted"),
            DEADLINE,
            what="the request counted",
        )
        assert value(samples, "assistant_messages_total", channel="mqtt", outcome="accepted") == 1
        assert value(samples, "process_resident_memory_bytes") > 0
    finally:
        device.loop_stop()
        device.disconnect()
        edge.terminate()
        try:
            edge.wait(15)
        except subprocess.TimeoutExpired:
            edge.kill()
            edge.wait(5)
