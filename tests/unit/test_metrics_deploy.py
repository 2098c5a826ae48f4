"""The metrics' names, and the deploy files that use them: the Grafana dashboard, Prometheus' scrape targets,
compose's ``METRICS_PORT``."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import generate_latest

from adapters.metrics import StageMetrics, timed_classifier_loader
from adapters.queue_depth import QueueDepthCollector, priority_lists
from ingress.metrics import GatewayMetrics
from pipeline.ops_config import MetricsConfig

ROOT = Path(__file__).resolve().parents[2]
#: The names the operations issue fixes; dashboards and alerts rely on them.
STABLE = {
    "assistant_messages_total",
    "assistant_stage_seconds",
    "assistant_end_to_end_seconds",
    "assistant_queue_depth",
    "assistant_skill_calls_total",
    "assistant_model_seconds",
    "assistant_model_load_seconds",
    "assistant_dead_letters_total",
    "assistant_model_errors_total",
}


def exposed_names() -> set[str]:
    """Every sample name a process's ``/metrics`` can show (each labelled metric observed once)."""
    metrics = StageMetrics()
    metrics.count_message("web", "accepted")
    metrics.stage_seconds.labels("dispatch").observe(0.1)
    metrics.end_to_end.labels("web").observe(0.1)
    metrics.skill_calls.labels("time", "ok").inc()
    metrics.model_seconds.labels("whisper").observe(0.1)
    metrics.model_load_seconds.labels("whisper").observe(0.1)
    metrics.dead_letters.labels("dispatch").inc()
    metrics.model_errors.labels("openai").inc()
    metrics.registry.register(QueueDepthCollector(["dispatch"], lambda queues: {q: 2 for q in queues}))
    gateway = GatewayMetrics(metrics.registry)
    text = gateway.render().decode()
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}


def test_the_stable_names_are_exposed() -> None:
    names = exposed_names()
    for name in STABLE:
        assert name in names or f"{name}_count" in names, name
    assert "assistant_stage_seconds_bucket" in names


def test_the_dashboard_uses_only_metrics_that_exist() -> None:
    dashboard = json.loads((ROOT / "deploy/grafana/assistant.json").read_text(encoding="utf-8"))
    names = exposed_names()
    used: set[str] = set()
    panels = [panel for panel in dashboard["panels"] if panel["type"] != "row"]
    for panel in panels:
        for target in panel["targets"]:
            used |= set(re.findall(r"\bassistant_[a-z_]+", target["expr"]))
    assert used, "the dashboard queries no metric"
    assert used <= names, used - names
    # Latency per stage, queue depth, errors, throughput: every stable metric is on it.
    assert {re.sub(r"_(bucket|count|sum)$", "", name) for name in used} >= STABLE


def test_the_dashboard_is_provisioned() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    grafana = compose["grafana"]
    assert grafana["profiles"] == ["monitoring"] and compose["prometheus"]["profiles"] == ["monitoring"]
    mounts = " ".join(grafana["volumes"])
    assert "./deploy/grafana/assistant.json:" in mounts and "./deploy/grafana/provisioning:" in mounts
    provider = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/assistant.yml").read_text())
    folder = provider["providers"][0]["options"]["path"]
    assert f"./deploy/grafana/assistant.json:{folder}/assistant.json:ro" in grafana["volumes"]
    source = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    dashboard = json.loads((ROOT / "deploy/grafana/assistant.json").read_text(encoding="utf-8"))
    uids = {panel["datasource"]["uid"] for panel in dashboard["panels"] if "datasource" in panel}
    assert uids == {source["datasources"][0]["uid"]}


def _environment(service: dict[str, Any], anchor: dict[str, Any]) -> dict[str, Any]:
    return service.get("environment") or anchor


def test_prometheus_scrapes_every_worker_the_mqtt_edge_and_the_gateway() -> None:
    document = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = document["services"]
    anchor = document["x-assistant"]["environment"]
    scrape = yaml.safe_load((ROOT / "deploy/prometheus.yml").read_text())
    targets: dict[str, int] = {}
    for job in scrape["scrape_configs"]:
        for sd in job.get("dns_sd_configs", []):
            for name in sd["names"]:
                targets[name] = int(sd["port"])
    served = {name for name, service in services.items() if name.startswith("worker-") or name == "mqtt"}
    assert served, "no worker service in compose.yaml"
    for name in served:
        port = MetricsConfig.from_env({"METRICS_PORT": str(_environment(services[name], anchor)["METRICS_PORT"])})
        assert targets.get(name) == port.port, name
    assert targets["gateway"] == 8080


def test_queue_depths_count_kombu_s_priority_lists() -> None:
    assert priority_lists("dispatch") == ["dispatch", "dispatch\x06\x163", "dispatch\x06\x166", "dispatch\x06\x169"]

    def down(_queues: Any) -> dict[str, int]:
        raise ConnectionError("broker down")

    metrics = StageMetrics()
    metrics.registry.register(QueueDepthCollector(["dispatch"], down))
    text = generate_latest(metrics.registry).decode()
    assert "assistant_queue_depth{" not in text  # left out, not a scrape error


def test_the_intent_classifier_is_timed_when_loaded_and_when_it_classifies() -> None:
    class Classifier:
        labels = ("time", "__none__")

        def classify(self, text: str) -> str:
            return "time"

    metrics = StageMetrics()
    load = timed_classifier_loader(lambda _folder: Classifier(), metrics)
    classifier = load(Path("."))
    assert classifier.labels == ("time", "__none__")
    assert classifier.classify("what time is it") == "time"
    registry = metrics.registry
    assert registry.get_sample_value("assistant_model_load_seconds_count", {"model": "intent"}) == 1
    assert registry.get_sample_value("assistant_model_seconds_count", {"model": "intent"}) == 1
