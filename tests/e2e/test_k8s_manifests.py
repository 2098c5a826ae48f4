"""The Kubernetes manifests (deploy/k8s), rendered as kustomize would, against the code and compose.yaml."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from pipeline.model_config import ModelConfig
from pipeline.settings import Settings
from pipeline.stages import Channel, Stage, all_queues
from tasks.celery_app import TASK_TIME_LIMIT, create_celery_app

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "deploy" / "k8s" / "base"
#: The stages whose pods load models: scaled to zero when idle, models mounted read-only.
COSTLY = {"worker-asr", "worker-tts", "worker-inference"}
#: Settings the manifests add to compose's: the operations issue's (compose's monitoring profile has its own).
OPERATIONS = {"METRICS_PORT", "LOG_FORMAT", "SENTRY_DSN", "SENTRY_ENVIRONMENT", "SENTRY_TRACES_SAMPLE_RATE"}
#: Kinds that live outside any namespace.
CLUSTER_KINDS = {"Namespace"}


def read_env_file(path: Path) -> dict[str, str]:
    """A kustomize ``envs`` file: KEY=VALUE lines; blank lines and # comments skipped."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"{path.name}: not KEY=VALUE: {line!r}"
            values[key.strip()] = value
    return values


def render(base: Path) -> list[dict[str, Any]]:
    """The subset of kustomize the base uses: resources, namespace, labels (with selectors and templates),
    configurations (read by kustomize only), and env-file generators; generated names keep no hash suffix.

    secrets.env is the operator's (never committed); its example stands in when it is absent.
    """
    kustomization = yaml.safe_load((base / "kustomization.yaml").read_text())
    known = {"apiVersion", "kind", "namespace", "labels", "resources", "configurations",
             "configMapGenerator", "secretGenerator"}  # fmt: skip
    assert set(kustomization) <= known, f"the renderer does not know {set(kustomization) - known}"
    docs = [doc for name in kustomization["resources"] for doc in yaml.safe_load_all((base / name).read_text()) if doc]
    for kind, key in (("ConfigMap", "configMapGenerator"), ("Secret", "secretGenerator")):
        for generator in kustomization.get(key, []):
            data: dict[str, str] = {}
            for name in generator["envs"]:
                path = base / name
                data |= read_env_file(path if path.exists() else path.with_name(f"{name}.example"))
            docs.append({"apiVersion": "v1", "kind": kind, "metadata": {"name": generator["name"]}, "data": data})
    for doc in docs:
        if doc["kind"] not in CLUSTER_KINDS:
            doc["metadata"]["namespace"] = kustomization["namespace"]
    for entry in kustomization.get("labels", []):
        assert entry.get("includeSelectors") and entry.get("includeTemplates"), "only labels on selectors too"
        for doc in docs:
            doc["metadata"].setdefault("labels", {}).update(entry["pairs"])
            spec = doc.get("spec", {})
            if doc["kind"] in {"Deployment", "Job"} and "selector" in spec:
                spec["selector"]["matchLabels"].update(entry["pairs"])
            if doc["kind"] == "Service":
                spec["selector"].update(entry["pairs"])
            if "template" in spec:
                spec["template"]["metadata"].setdefault("labels", {}).update(entry["pairs"])
    return docs


def render_with_kustomize(base: Path, work: Path) -> list[dict[str, Any]]:
    """``kubectl kustomize`` (offline) on a copy of the base with the example secrets, normalized as ``render``
    returns it: the generators' hash suffixes dropped, the Secret's data decoded."""
    copy = work / "base"
    shutil.copytree(base, copy, ignore=shutil.ignore_patterns("secrets.env"))
    shutil.copy(copy / "secrets.env.example", copy / "secrets.env")
    out = subprocess.run(["kubectl", "kustomize", str(copy)], capture_output=True, text=True, timeout=60, check=True)
    generated = {doc["metadata"]["name"] for doc in yaml.safe_load_all(out.stdout)
                 if doc["kind"] in {"ConfigMap", "Secret"}}  # fmt: skip
    text = out.stdout
    for name in generated:
        text = re.sub(rf"\b{re.escape(name)}\b", name.rsplit("-", 1)[0], text)
    docs = [doc for doc in yaml.safe_load_all(text) if doc]
    for doc in docs:
        if doc["kind"] == "Secret":
            assert doc.pop("type") == "Opaque"
            doc["data"] = {k: base64.b64decode(v).decode() for k, v in doc["data"].items()}
    return docs


@pytest.fixture(scope="module")
def manifests() -> list[dict[str, Any]]:
    return render(BASE)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (its built-in kustomize) is not installed")
def test_kustomize_renders_what_these_tests_check(manifests: list[dict[str, Any]], tmp_path: Path) -> None:
    """The renderer above against the real kustomize, so the checks below hold for what `kubectl apply -k` sends."""
    real = render_with_kustomize(BASE, tmp_path)

    def key(doc: dict[str, Any]) -> tuple[str, str]:
        return doc["kind"], doc["metadata"]["name"]

    assert sorted(map(key, real)) == sorted(map(key, manifests))
    ours = {key(doc): doc for doc in manifests}
    for doc in real:
        assert doc == ours[key(doc)], key(doc)


def of_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


def workloads(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every Deployment and Job by name, as compose names its services."""
    return of_kind(docs, "Deployment") | of_kind(docs, "Job")


def container(workload: dict[str, Any]) -> dict[str, Any]:
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, workload["metadata"]["name"]
    return dict(containers[0])


def environment(docs: list[dict[str, Any]], workload: dict[str, Any]) -> dict[str, str]:
    """The container's environment as the pod sees it: envFrom ConfigMaps, then env (literals and Secret keys)."""
    config_maps, secrets = of_kind(docs, "ConfigMap"), of_kind(docs, "Secret")
    values: dict[str, str] = {}
    spec = container(workload)
    for source in spec.get("envFrom", []):
        assert set(source) == {"configMapRef"}, "secrets go by name (secretKeyRef), not wholesale"
        values |= config_maps[source["configMapRef"]["name"]]["data"]
    for item in spec.get("env", []):
        if "value" in item:
            values[item["name"]] = str(item["value"])
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            values[item["name"]] = secrets[ref["name"]]["data"][ref["key"]]
    return values


def compose_services() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "compose.yaml").read_text())["services"])


def names_the_code_reads() -> set[str]:
    """Every quoted UPPER_CASE name in the modules that read settings (pipeline and the entry points)."""
    names: set[str] = set()
    for folder in ("pipeline", "assistant"):
        for path in (ROOT / folder).rglob("*.py"):
            names |= set(re.findall(r"""["']([A-Z][A-Z0-9_]{2,})["']""", path.read_text()))
    return names


def test_every_workload_runs_compose_s_command_with_its_settings(manifests: list[dict[str, Any]]) -> None:
    services = compose_services()
    read = names_the_code_reads()
    found = workloads(manifests)
    # Every assistant service of compose has its workload (flower and the servers are compose's own).
    assistant_services = {name for name, s in services.items() if s.get("image") == "assistant:latest"} - {"flower"}
    assert set(found) == assistant_services
    for name, workload in found.items():
        spec = container(workload)
        assert spec["command"] == services[name]["command"], name
        env = environment(manifests, workload)
        compose_env = set(services[name].get("environment", {}))
        assert compose_env <= set(env), (name, compose_env - set(env))
        assert set(env) - compose_env <= OPERATIONS, (name, set(env) - compose_env)
        assert set(env) <= read, (name, set(env) - read)
        # The values as the code reads them: nothing it would refuse, and the distributed layout.
        settings = Settings.from_env(env)
        assert settings.broker_url and settings.redis_url and not settings.embedded, name
        if "worker" in spec["command"] or name == "mqtt":
            assert settings.metrics.port is not None, name


def test_the_inference_model_settings_mean_the_code_s_defaults(manifests: list[dict[str, Any]]) -> None:
    env = environment(manifests, workloads(manifests)["worker-inference"])
    passed = {name: value for name, value in env.items() if name.startswith("MODEL_")}
    read = set(re.findall(r'"(MODEL_[A-Z_]+)"', (ROOT / "pipeline" / "model_config.py").read_text()))
    assert set(passed) == read
    assert ModelConfig.from_env(passed) == ModelConfig.from_env({})


def test_only_the_telegram_services_hold_the_bot_token(manifests: list[dict[str, Any]]) -> None:
    holders = {name for name, w in workloads(manifests).items() if "TELEGRAM_BOT_TOKEN" in environment(manifests, w)}
    assert holders == {"gateway", "worker-reply-telegram"}


def test_ports_probes_and_metrics(manifests: list[dict[str, Any]]) -> None:
    services = compose_services()
    deployments = of_kind(manifests, "Deployment")
    gateway = container(deployments["gateway"])
    port = int(services["gateway"]["command"][services["gateway"]["command"].index("--port") + 1])
    assert {p["name"]: p["containerPort"] for p in gateway["ports"]} == {"http": port}
    assert gateway["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert gateway["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    service = of_kind(manifests, "Service")["gateway"]
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    pod_labels = deployments["gateway"]["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    for name, deployment in deployments.items():
        if name == "gateway":
            continue
        spec = container(deployment)
        metrics = int(environment(manifests, deployment)["METRICS_PORT"])
        assert {p["name"]: p["containerPort"] for p in spec["ports"]} == {"metrics": metrics}, name
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/port"] == str(metrics)
        if name == "mqtt":
            continue
        # Scaled down, a worker finishes its tasks before it is killed: they are bounded by the task time limit.
        grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert grace > TASK_TIME_LIMIT, name
        # Workers answer Celery's ping under their default node name, celery@<pod name>.
        for probe in ("startupProbe", "livenessProbe"):
            command = " ".join(spec[probe]["exec"]["command"])
            assert "celery --app assistant.worker inspect ping" in command and "celery@$HOSTNAME" in command
            # The ping imports the app and waits for the broker's round trip: seconds, not milliseconds.
            assert spec[probe]["timeoutSeconds"] >= 10, (name, probe)
    # One MQTT client id: never two edges at once, not even during an update.
    assert deployments["mqtt"]["spec"]["replicas"] == 1
    assert deployments["mqtt"]["spec"]["strategy"] == {"type": "Recreate"}


def test_resources_are_compose_s_reservations_and_limits(manifests: list[dict[str, Any]]) -> None:
    services = compose_services()
    for name, workload in workloads(manifests).items():
        resources = container(workload)["resources"]
        compose = services[name]["deploy"]["resources"]
        for k8s_kind, compose_kind in (("requests", "reservations"), ("limits", "limits")):
            assert cpu(resources[k8s_kind]["cpu"]) == float(compose[compose_kind]["cpus"]), (name, k8s_kind)
            assert k8s_bytes(resources[k8s_kind]["memory"]) == compose_bytes(compose[compose_kind]["memory"]), name


def test_models_are_mounted_read_only_where_they_are_used(manifests: list[dict[str, Any]]) -> None:
    claims = of_kind(manifests, "PersistentVolumeClaim")
    for name, workload in workloads(manifests).items():
        spec = container(workload)
        pod = workload["spec"]["template"]["spec"]
        mounts = {m["name"]: m for m in spec.get("volumeMounts", [])}
        if name not in COSTLY:
            assert "models" not in mounts, name
            continue
        assert mounts["models"]["readOnly"] is True
        assert mounts["models"]["mountPath"] == environment(manifests, workload)["MODELS_DIR"]
        volume = next(v for v in pod["volumes"] if v["name"] == "models")
        assert volume["persistentVolumeClaim"]["readOnly"] is True
        assert volume["persistentVolumeClaim"]["claimName"] in claims


def test_every_queue_a_stage_consumes_has_a_scaler_on_its_list(manifests: list[dict[str, Any]]) -> None:
    deployments = of_kind(manifests, "Deployment")
    consumers = {}
    for name, deployment in deployments.items():
        command = container(deployment)["command"]
        if "worker" in command:
            for queue in command[command.index("--queues") + 1].split(","):
                consumers[queue] = name
    queues = all_queues(list(Channel))
    assert set(consumers) == set(queues)
    scalers = of_kind(manifests, "ScaledObject")
    by_queue = {}
    auths = of_kind(manifests, "TriggerAuthentication")
    secrets = of_kind(manifests, "Secret")
    broker_db = int(str(secrets["assistant-secrets"]["data"]["BROKER_URL"]).rsplit("/", 1)[1])
    for scaler in scalers.values():
        [trigger] = scaler["spec"]["triggers"]
        assert trigger["type"] == "redis"
        assert int(trigger["metadata"]["databaseIndex"]) == broker_db
        assert int(trigger["metadata"]["listLength"]) > 0
        queue = trigger["metadata"]["listName"]
        by_queue[queue] = scaler
        target = scaler["spec"]["scaleTargetRef"]["name"]
        assert consumers[queue] == target, (queue, target)
        # KEDA owns the replica count: a Deployment that set it would be reset on every apply.
        assert "replicas" not in deployments[target]["spec"], target
        expected_min = 0 if target in COSTLY else 1
        assert scaler["spec"]["minReplicaCount"] == expected_min, target
        assert scaler["spec"]["maxReplicaCount"] >= max(1, expected_min)
        auth = auths[trigger["authenticationRef"]["name"]]
        for ref in auth["spec"]["secretTargetRef"]:
            assert ref["key"] in secrets[ref["name"]]["data"], ref
        assert {ref["parameter"] for ref in auth["spec"]["secretTargetRef"]} == {"address", "password"}
    assert set(by_queue) == set(queues)


@pytest.fixture
def broker_db() -> Iterator[redis.Redis]:
    client = redis.Redis(db=14)  # this module's and the compose test's (not run at the same time)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.mark.servers
def test_the_scalers_lists_are_where_celery_puts_each_stage_s_messages(
    manifests: list[dict[str, Any]], broker_db: redis.Redis
) -> None:
    """KEDA reads LLEN of listName: kombu's Redis transport must keep each queue as a list of exactly that name.

    No task is sent with a priority, so none goes to kombu's priority lists (``<queue>\\x06\\x16<n>``).
    """
    env = {
        "BROKER_URL": "redis://127.0.0.1:6379/14",
        "REDIS_URL": "redis://127.0.0.1:6379/14",
        "MQTT_URL": "mqtt://127.0.0.1:1883",
        "TELEGRAM_ENABLED": "true",
        "TELEGRAM_BOT_TOKEN": "1:x",
        "TELEGRAM_WEBHOOK_SECRET": "s",
        "JWT_SECRET": uuid.uuid4().hex * 2,
    }
    settings = Settings.from_env(env)
    app = create_celery_app(settings, lambda app: pytest.fail("no runtime: nothing runs a task here"))
    try:
        routes = app.conf.task_routes
        tasks = {str(route["queue"]): task for task, route in routes.items()}
        assert set(tasks) == set(all_queues(list(Channel)))
        for task in tasks.values():
            app.send_task(task, args=[{}])
        lists = {
            str(scaler["spec"]["triggers"][0]["metadata"]["listName"])
            for scaler in of_kind(manifests, "ScaledObject").values()
        }
        for name in lists:
            assert broker_db.type(name) == b"list" and broker_db.llen(name) == 1, name
        assert str(Stage.ASR) in lists
    finally:
        app.close()


def cpu(value: str | int | float) -> float:
    text = str(value)
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


def k8s_bytes(value: str) -> int:
    match = re.fullmatch(r"(\d+)(Ki|Mi|Gi)", value)
    assert match is not None, f"memory in binary units: {value}"
    return int(match[1]) * 1024 ** ["", "Ki", "Mi", "Gi"].index(match[2])


def compose_bytes(size: str) -> int:
    match = re.fullmatch(r"(\d+)([KMG])", str(size))
    assert match is not None, size
    return int(match[1]) * 1024 ** " KMG".index(match[2])
