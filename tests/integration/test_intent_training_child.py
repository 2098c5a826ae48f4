"""The intent model trained in a child process: the real training, the model the worker loads, and a failure that
says no more than the exit status."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.intent_training import IntentTrainingError, train_in_child
from adapters.intents import NONE_LABEL, OnnxIntentClassifier

SAMPLES = [("几点", "time"), ("现在几点了", "time"), ("what time is it", "time"),
           ("天气", "weather"), ("出门要带伞吗", "weather"), ("is it raining", "weather")]  # fmt: skip


def test_the_child_trains_a_model_this_process_loads(tmp_path: Path) -> None:
    train_in_child(SAMPLES, tmp_path / "model")
    classifier = OnnxIntentClassifier.load(tmp_path / "model")
    assert set(classifier.labels) == {"time", "weather", NONE_LABEL}
    guess = classifier.classify("现在几点")
    assert guess is not None and guess.skill == "time"


def test_a_failed_training_reports_its_status_only(tmp_path: Path) -> None:
    private = "只有管理员知道的句子"
    with pytest.raises(IntentTrainingError) as raised:
        train_in_child([(private, "")], tmp_path / "model")  # no label: nothing to train on
    assert "exited with status" in str(raised.value)
    assert private not in str(raised.value)
    assert not (tmp_path / "model" / "intents.onnx").exists()
