"""A worker's intent model: loaded or trained in the background, swapped in when ready, retrained when the skills
change, kept when a training fails. The trainer and loader are small fakes that write and read a JSON file."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from pipeline.intents import IntentGuess
from pipeline.model_config import IntentConfig
from skills.base import BaseSkill
from tasks.intent_model import IntentModel

NONE = "__none__"
WAIT = 10.0


class FakeClassifier:
    """Knows its training sentences word for word."""

    def __init__(self, samples: dict[str, str]) -> None:
        self.samples = samples
        self.labels = (NONE, *sorted(set(samples.values())))

    def classify(self, text: str) -> IntentGuess | None:
        skill = self.samples.get(text)
        return IntentGuess(skill, 0.9) if skill else IntentGuess(NONE, 0.9)


class FakeTrainer:
    """Writes the samples as the model file; can be held at a gate or made to fail."""

    def __init__(self) -> None:
        self.calls: list[list[tuple[str, str]]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.fail = False

    def train(self, samples: Sequence[tuple[str, str]], folder: Path) -> None:
        self.calls.append(list(samples))
        assert self.gate.wait(WAIT)
        if self.fail:
            raise RuntimeError(f"training broke on {samples[-1][0]!r}")  # quotes an admin's sentence
        write_model(folder, dict(samples))


def write_model(folder: Path, samples: dict[str, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.json").write_text(json.dumps(samples, ensure_ascii=False), encoding="utf-8")


def load(folder: Path) -> FakeClassifier:
    path = folder / "model.json"
    if not path.exists():
        raise FileNotFoundError(path)
    return FakeClassifier(json.loads(path.read_text(encoding="utf-8")))


def skills(*extra: BaseSkill) -> list[BaseSkill]:
    return [
        BaseSkill("time", triggers=["几点"], examples=["现在是什么时候"]),
        BaseSkill("weather", triggers=["天气"], examples=["今天要带伞吗"]),
        *extra,
    ]


@pytest.fixture
def trainer() -> FakeTrainer:
    return FakeTrainer()


@pytest.fixture
def model(trainer: FakeTrainer, tmp_path: Path) -> IntentModel:
    return IntentModel(IntentConfig(model_dir=tmp_path / "intents"), load, trainer.train, NONE)


def test_nothing_until_trained_then_the_model_answers(model: IntentModel, trainer: FakeTrainer) -> None:
    trainer.gate.clear()
    model.refresh(skills())  # returns at once while the training waits at the gate
    assert model.classify("今天要带伞吗") is None
    trainer.gate.set()
    assert model.wait_idle(WAIT)
    assert model.classify("今天要带伞吗") == IntentGuess("weather", 0.9)
    assert model.skills == {"time", "weather"}
    assert len(trainer.calls) == 1
    assert ("今天要带伞吗", "weather") in trainer.calls[0] and ("几点", "time") in trainer.calls[0]


def test_the_same_skills_train_once(model: IntentModel, trainer: FakeTrainer) -> None:
    model.refresh(skills())
    model.refresh(skills())
    assert model.wait_idle(WAIT)
    model.refresh(skills())
    assert model.wait_idle(WAIT)
    assert len(trainer.calls) == 1


def test_a_new_skill_retrains_and_the_old_model_serves_meanwhile(model: IntentModel, trainer: FakeTrainer) -> None:
    model.refresh(skills())
    assert model.wait_idle(WAIT)
    trainer.gate.clear()
    coffee = BaseSkill("coffee", triggers=["咖啡"], examples=["来一杯拿铁"])
    model.refresh(skills(coffee))
    assert model.classify("今天要带伞吗") == IntentGuess("weather", 0.9)  # the old model, not blocked
    assert model.classify("来一杯拿铁") == IntentGuess(NONE, 0.9)
    trainer.gate.set()
    assert model.wait_idle(WAIT)
    assert model.classify("来一杯拿铁") == IntentGuess("coffee", 0.9)
    model.refresh(skills())  # removed again
    assert model.wait_idle(WAIT)
    assert model.skills == {"time", "weather"}
    assert len(trainer.calls) == 3


def test_changes_during_a_training_end_with_the_newest(model: IntentModel, trainer: FakeTrainer) -> None:
    trainer.gate.clear()
    model.refresh(skills())
    one = BaseSkill("one", triggers=["一"])
    two = BaseSkill("two", triggers=["二"])
    model.refresh(skills(one))
    model.refresh(skills(two))  # replaces the pending one before it started
    trainer.gate.set()
    assert model.wait_idle(WAIT)
    assert model.skills == {"time", "weather", "two"}
    assert len(trainer.calls) == 2


def test_a_failed_training_keeps_the_model_in_use(
    model: IntentModel, trainer: FakeTrainer, caplog: pytest.LogCaptureFixture
) -> None:
    model.refresh(skills())
    assert model.wait_idle(WAIT)
    trainer.fail = True
    with caplog.at_level(logging.INFO, logger="tasks.intent_model"):
        model.refresh(skills(BaseSkill("coffee", triggers=["咖啡"])))
        assert model.wait_idle(WAIT)
    assert model.classify("今天要带伞吗") == IntentGuess("weather", 0.9)
    assert model.skills == {"time", "weather"}
    assert "training on 5 samples failed, the model in use stays" in caplog.text
    assert "咖啡" not in caplog.text
    # The same skills are not tried again and again; another change is.
    model.refresh(skills(BaseSkill("coffee", triggers=["咖啡"])))
    assert model.wait_idle(WAIT)
    assert len(trainer.calls) == 2
    trainer.fail = False
    model.refresh(skills(BaseSkill("coffee", triggers=["咖啡", "coffee"])))
    assert model.wait_idle(WAIT)
    assert model.skills == {"time", "weather", "coffee"}


def test_a_model_on_disk_that_knows_the_skills_is_loaded(
    trainer: FakeTrainer, tmp_path: Path, model: IntentModel
) -> None:
    write_model(tmp_path / "intents", {"现在是什么时候": "time", "今天要带伞吗": "weather", "zzz": "time"})
    model.refresh(skills())
    assert model.wait_idle(WAIT)
    assert trainer.calls == []
    assert model.classify("zzz") == IntentGuess("time", 0.9)  # only the disk model knows this one
    model.refresh(skills())  # the same skills again (the first message reloads them): still no training
    assert model.wait_idle(WAIT)
    assert trainer.calls == []
    # A change of skills trains, in a private folder: the disk model stays as it was.
    model.refresh(skills(BaseSkill("coffee", triggers=["咖啡"])))
    assert model.wait_idle(WAIT)
    assert len(trainer.calls) == 1 and model.skills == {"time", "weather", "coffee"}
    assert "咖啡" not in (tmp_path / "intents" / "model.json").read_text(encoding="utf-8")


def test_a_model_on_disk_for_other_skills_is_not_used(trainer: FakeTrainer, tmp_path: Path, model: IntentModel) -> None:
    write_model(tmp_path / "intents", {"现在是什么时候": "time", "来一杯拿铁": "coffee"})
    model.refresh(skills())
    assert model.wait_idle(WAIT)
    assert len(trainer.calls) == 1
    assert model.skills == {"time", "weather"}


def test_no_samples_no_model(model: IntentModel, trainer: FakeTrainer) -> None:
    model.refresh([BaseSkill("silent")])
    assert model.wait_idle(WAIT)
    assert trainer.calls == [] and model.classify("anything") is None


def test_intent_model_off_builds_none() -> None:
    from assistant.bootstrap import build_intents
    from pipeline.settings import Settings

    assert build_intents(Settings(intents=IntentConfig(enabled=False))) is None
    assert isinstance(build_intents(Settings()), IntentModel)
    assert Settings.from_env({"INTENT_MODEL": "off"}).intents.enabled is False
