"""``assistant train-intents`` and ``assistant quantize`` as processes, on an embedded layout in a scratch folder."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from adapters.db import Repository
from adapters.intents import LABELS_FILE, MODEL_FILE, NONE_LABEL, OnnxIntentClassifier
from pipeline.settings import Settings
from pipeline.skilldefs import SkillDefinition

_SERVERS = ("BROKER_URL", "REDIS_URL", "DATABASE_URL", "INTENT_MODEL_DIR", "SKILLS_DIR", "ASSISTANT_CONFIG_DIR")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The embedded defaults with their data in ``tmp_path/data``."""
    values = {k: v for k, v in os.environ.items() if k not in _SERVERS}
    values["ASSISTANT_DATA_DIR"] = str(tmp_path / "data")
    values["ASSISTANT_CONFIG_DIR"] = str(tmp_path / "config")
    return values


def assistant(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "assistant.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_train_intents_learns_builtin_and_registered_skills(env: dict[str, str], tmp_path: Path) -> None:
    settings = Settings.from_env(env)
    repository = Repository.from_url(settings.database_url)
    repository.migrate()
    repository.save_skill(
        SkillDefinition(
            name="lights",
            description="开关灯",
            triggers=("开灯",),
            response="好的，灯开了。",
            examples=("把客厅的灯打开", "屋里太暗了", "turn on the lights", "switch the lamp on", "lights on please"),
        )
    )
    repository.close()
    done = assistant(["train-intents"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    folder = settings.intents.model_dir  # the default: <data>/intents
    assert folder == tmp_path / "data" / "intents"
    assert (folder / MODEL_FILE).is_file() and (folder / LABELS_FILE).is_file()
    assert f"labels:  {NONE_LABEL}, help, lights, time, weather" in done.stdout
    assert re.search(r"samples: \d+ \(\d+ from skills", done.stdout)
    assert re.search(r"seconds: \d+\.\d\d", done.stdout)
    assert f"{folder / MODEL_FILE} (" in done.stdout and "KiB)" in done.stdout
    classifier = OnnxIntentClassifier.load(folder)
    guess = classifier.classify("请把灯打开")
    assert guess is not None and guess.skill == "lights"


def test_train_intents_out_and_quantize(env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "model"
    trained = assistant(["train-intents", "--out", str(out)], env, tmp_path)
    assert trained.returncode == 0, trained.stderr
    assert (out / MODEL_FILE).is_file()
    assert not (tmp_path / "data" / "intents").exists()

    done = assistant(["quantize", str(out / MODEL_FILE), "--runs", "30"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    target = out / "intents.int8.onnx"
    assert f"wrote {target}" in done.stdout
    assert target.stat().st_size < (out / MODEL_FILE).stat().st_size
    assert re.search(r"size: +[\d.]+ KiB -> [\d.]+ KiB \(\d+% smaller\)", done.stdout)
    assert re.search(r"latency: p50 [\d.]+ ms -> [\d.]+ ms \([\d.]+x, 30 runs each", done.stdout)
    agreements = dict(re.findall(r"agreement on (held-out set|training samples).*?top-1 ([\d.]+)%", done.stdout))
    assert set(agreements) == {"held-out set", "training samples"}
    assert all(float(share) >= 95 for share in agreements.values())
    assert "pre-processing" not in done.stdout + done.stderr


def test_quantize_other_model_to_chosen_output(env: dict[str, str], tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    weights = helper.make_tensor("w", TensorProto.FLOAT, [128, 16], rng.standard_normal(128 * 16).astype(np.float32))
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "dense",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 128])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 16])],
        initializer=[weights],
    )
    source = tmp_path / "dense.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(source))
    target = tmp_path / "out" / "small.onnx"
    done = assistant(["quantize", str(source), "-o", str(target), "--runs", "20"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert target.is_file() and target.stat().st_size < source.stat().st_size
    assert re.search(r"agreement on generated inputs: top-1 [\d.]+% of 20, max \|diff\| [\d.]+", done.stdout)


def test_quantize_bad_input_is_a_clear_error(env: dict[str, str], tmp_path: Path) -> None:
    missing = assistant(["quantize", str(tmp_path / "absent.onnx")], env, tmp_path)
    assert missing.returncode == 2
    assert "no model at" in missing.stderr
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"nope")
    broken = assistant(["quantize", str(junk)], env, tmp_path)
    assert broken.returncode == 1
    assert "cannot quantize" in broken.stderr
    assert "Traceback" not in broken.stderr
