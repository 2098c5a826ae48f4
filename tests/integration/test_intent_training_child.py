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


def test_a_worker_loads_a_model_trained_before_instead_of_training(tmp_path: Path) -> None:
    """What `assistant train-intents` wrote into INTENT_MODEL_DIR serves at once when it knows the same skills."""
    from pipeline.model_config import IntentConfig
    from skills.base import BaseSkill
    from skills.intents import training_samples
    from tasks.intent_model import IntentModel

    skills = [BaseSkill("time", triggers=["几点", "what time is it"]), BaseSkill("weather", triggers=["天气"])]
    train_in_child(training_samples(skills), tmp_path / "intents")
    trainings: list[int] = []

    def no_training(samples: object, folder: Path) -> None:
        trainings.append(1)
        raise AssertionError("trained although a fitting model was on disk")

    model = IntentModel(IntentConfig(model_dir=tmp_path / "intents"), OnnxIntentClassifier.load, no_training,
                        NONE_LABEL)  # fmt: skip
    model.refresh(skills)
    assert model.wait_idle(30)
    assert trainings == [] and model.skills == {"time", "weather"}
    guess = model.classify("现在几点")
    assert guess is not None and guess.skill == "time"
