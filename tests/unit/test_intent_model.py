"""The intent classifier trained with scikit-learn and run on the real onnxruntime: labels, errors, files, threads."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from adapters.intents import (
    LABELS_FILE,
    MODEL_FILE,
    NONE_LABEL,
    IntentModelError,
    OnnxIntentClassifier,
    normalize_text,
    read_labelled,
    train_intent_model,
)
from adapters.quantize import (
    QuantizeReport,
    compare_intent_models,
    compare_models,
    is_intent_model,
    quantize_file,
)
from pipeline.intents import IntentClassifier, IntentGuess
from skills.base import BaseSkill
from skills.intents import training_samples

#: A small training set, as skills' triggers and examples would give it.
SAMPLES = [
    *[(text, "time") for text in [
        "几点", "时间", "现在几点", "现在几点了", "今天几号", "今天星期几", "现在什么时间", "日期",
        "time", "date", "what time is it", "what's the time now", "what is today's date", "what day is it",
        "tell me the time", "current time",
    ]],
    *[(text, "weather") for text in [
        "天气", "气温", "今天天气怎么样", "明天会下雨吗", "外面热吗", "上海气温多少", "要不要带伞", "会下雪吗",
        "weather", "temperature", "what's the weather", "will it rain tomorrow", "is it cold outside",
        "do i need an umbrella", "how hot is it", "weather forecast for tomorrow",
    ]],
    *[(text, "help") for text in [
        "帮助", "你能做什么", "你会什么", "怎么用", "有什么功能", "你有什么技能",
        "help", "what can you do", "how do i use this", "what are your skills", "show me the commands",
        "what do you support",
    ]],
]  # fmt: skip


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("intents")
    train_intent_model(SAMPLES, folder)
    return folder


@pytest.fixture(scope="module")
def classifier(model_dir: Path) -> OnnxIntentClassifier:
    return OnnxIntentClassifier.load(model_dir)


def test_train_writes_model_and_labels_that_agree(tmp_path: Path) -> None:
    report = train_intent_model(SAMPLES, tmp_path / "out")
    assert report.labels == (NONE_LABEL, "help", "time", "weather")
    assert report.path == tmp_path / "out" / MODEL_FILE
    assert report.size_bytes == report.path.stat().st_size > 0
    assert report.samples > len(SAMPLES)  # the none class's chat comes on top
    assert report.seconds > 0
    document = json.loads((tmp_path / "out" / LABELS_FILE).read_text(encoding="utf-8"))
    assert tuple(document["labels"]) == report.labels
    model = onnx.load(str(report.path))
    assert json.loads({p.key: p.value for p in model.metadata_props}["labels"]) == list(report.labels)
    assert OnnxIntentClassifier.load(tmp_path / "out").labels == report.labels
    # Nothing half-written is left behind.
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted([MODEL_FILE, LABELS_FILE])


@pytest.mark.parametrize(
    ("text", "skill"),
    [
        ("现在是几点钟", "time"),
        ("请问今天几号", "time"),
        ("what time is it please", "time"),
        ("北京明天会下雨吗", "weather"),
        ("杭州气温多少", "weather"),
        ("will it rain in paris tomorrow", "weather"),
        ("你都能做什么", "help"),
        ("what else can you do", "help"),
    ],
)
def test_unseen_paraphrases_reach_their_skill(classifier: OnnxIntentClassifier, text: str, skill: str) -> None:
    guess = classifier.classify(text)
    assert guess is not None
    assert guess.skill == skill
    assert 0.5 <= guess.confidence <= 1.0


@pytest.mark.parametrize("text", ["讲个笑话", "who won the football game", "我想吃火锅", "write me a poem"])
def test_out_of_domain_chat_is_no_skill(classifier: OnnxIntentClassifier, text: str) -> None:
    guess = classifier.classify(text)
    assert guess is not None
    assert guess.skill == NONE_LABEL or guess.confidence < 0.5


def test_probabilities_are_a_distribution(classifier: OnnxIntentClassifier) -> None:
    scores = classifier.probabilities("明天天气")
    assert scores is not None
    assert scores.shape == (len(classifier.labels),)
    assert np.all(scores >= 0)
    assert float(scores.sum()) == pytest.approx(1.0, abs=1e-5)
    guess = classifier.classify("明天天气")
    assert guess == IntentGuess(skill="weather", confidence=pytest.approx(float(scores.max())))


def test_is_an_intent_classifier(classifier: OnnxIntentClassifier) -> None:
    checked: IntentClassifier = classifier
    assert checked.classify("help") is not None


@pytest.mark.parametrize("text", ["", "   ", "？？！", "..."])
def test_nothing_to_read_gives_none(classifier: OnnxIntentClassifier, text: str) -> None:
    assert classifier.classify(text) is None


def test_width_case_and_punctuation_do_not_matter(classifier: OnnxIntentClassifier) -> None:
    plain = classifier.probabilities("what time is it")
    assert plain is not None
    for variant in ["ＷＨＡＴ ＴＩＭＥ ＩＳ ＩＴ？", "What  time is it?!", "\twhat time, is it "]:
        scores = classifier.probabilities(variant)
        assert scores is not None
        np.testing.assert_allclose(scores, plain, atol=1e-6)


def test_normalize_text() -> None:
    assert normalize_text("  几点了？  ") == " 几点了 "
    assert normalize_text("ＷＥＡＴＨＥＲ,  Beijing!") == " weather beijing "
    assert normalize_text("？！") == ""
    assert len(normalize_text("天" * 10_000)) <= 302  # bounded work for any message


def test_concurrent_classify_gives_the_sequential_answers(classifier: OnnxIntentClassifier) -> None:
    texts = [text for text, _ in SAMPLES] + ["北京明天会下雨吗", "what else can you do", "讲个笑话"]
    expected = [classifier.classify(text) for text in texts]
    with ThreadPoolExecutor(max_workers=8) as pool:
        rounds = list(pool.map(lambda _: [classifier.classify(text) for text in texts], range(32)))
    assert all(result == expected for result in rounds)


def test_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="train-intents"):
        OnnxIntentClassifier.load(tmp_path)


def test_corrupt_model_is_a_clear_error(tmp_path: Path, model_dir: Path) -> None:
    (tmp_path / MODEL_FILE).write_bytes(b"not a model at all")
    with pytest.raises(IntentModelError, match="not a usable ONNX model"):
        OnnxIntentClassifier.load(tmp_path)
    data = (model_dir / MODEL_FILE).read_bytes()
    (tmp_path / MODEL_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(IntentModelError):
        OnnxIntentClassifier.load(tmp_path)


def test_model_of_another_shape_is_refused(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["probabilities"])],
        "other",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 3])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / MODEL_FILE))
    with pytest.raises(FileNotFoundError, match=LABELS_FILE):
        OnnxIntentClassifier.load(tmp_path)
    (tmp_path / LABELS_FILE).write_text(json.dumps({"labels": ["a", "b", "c"]}), encoding="utf-8")
    with pytest.raises(IntentModelError, match="string input"):
        OnnxIntentClassifier.load(tmp_path)
    (tmp_path / LABELS_FILE).write_text("{broken", encoding="utf-8")
    with pytest.raises(IntentModelError, match="not a label file"):
        OnnxIntentClassifier.load(tmp_path)


def test_training_needs_samples(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no training samples"):
        train_intent_model([], tmp_path)
    with pytest.raises(ValueError, match="two labels"):
        train_intent_model([("几点", "time")], tmp_path, negatives=())
    assert not (tmp_path / MODEL_FILE).exists()


def test_a_skill_called_like_the_none_class_is_not_learned(tmp_path: Path) -> None:
    samples = [*SAMPLES, ("讲个故事", NONE_LABEL), ("现在几点", NONE_LABEL)]
    train_intent_model(samples, tmp_path)
    guess = OnnxIntentClassifier.load(tmp_path).classify("现在几点")
    assert guess is not None and guess.skill == "time"


def test_one_skill_and_the_none_class(tmp_path: Path) -> None:
    # Two classes: scikit-learn's one-row binary model is exported as a two-column softmax.
    train_intent_model([(text, "time") for text, skill in SAMPLES if skill == "time"], tmp_path)
    classifier = OnnxIntentClassifier.load(tmp_path)
    assert classifier.labels == (NONE_LABEL, "time")
    guess = classifier.classify("现在是几点钟")
    assert guess is not None and guess.skill == "time"


def test_readers_never_see_a_half_written_model(tmp_path: Path) -> None:
    """Retraining with other labels while readers load: every load is whole and its labels fit its output."""
    first = SAMPLES
    second = [*SAMPLES, ("开灯", "lights"), ("把灯打开", "lights"), ("turn on the light", "lights")]
    train_intent_model(first, tmp_path)
    stop = threading.Event()
    problems: list[str] = []
    loads = [0]

    def read() -> None:
        while not stop.is_set():
            try:
                loaded = OnnxIntentClassifier.load(tmp_path)
                scores = loaded.probabilities("几点")
                if scores is None or scores.shape != (len(loaded.labels),):
                    problems.append(f"labels {loaded.labels} do not fit scores {scores}")
                loads[0] += 1
            except Exception as exc:
                problems.append(repr(exc))

    readers = [threading.Thread(target=read) for _ in range(2)]
    for thread in readers:
        thread.start()
    try:
        for round_ in range(6):
            train_intent_model(second if round_ % 2 == 0 else first, tmp_path)
    finally:
        stop.set()
        for thread in readers:
            thread.join()
    assert problems == []
    assert loads[0] > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([MODEL_FILE, LABELS_FILE])


def test_training_samples_come_from_triggers_and_examples() -> None:
    clock = BaseSkill("time", triggers=["几点", "time"], examples=["what hour is it", "几点"])
    lights = BaseSkill("lights", triggers=["开灯"], examples=["把灯打开"])
    assert training_samples([clock, lights]) == [
        ("几点", "time"),
        ("time", "time"),
        ("what hour is it", "time"),
        ("开灯", "lights"),
        ("把灯打开", "lights"),
    ]


def test_read_labelled(tmp_path: Path) -> None:
    path = tmp_path / "set.tsv"
    path.write_text("# comment\n\n几点了\ttime\nhow do I use you\thelp\n", encoding="utf-8")
    assert read_labelled(path) == [("几点了", "time"), ("how do I use you", "help")]
    path.write_text("no tab here\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"set\.tsv:1"):
        read_labelled(path)


@pytest.fixture
def quantized(model_dir: Path, tmp_path: Path) -> Iterator[Path]:
    target = tmp_path / "intents.int8.onnx"
    quantize_file(model_dir / MODEL_FILE, target)
    yield target


def test_quantized_intent_model_is_smaller_and_agrees(model_dir: Path, quantized: Path) -> None:
    source = model_dir / MODEL_FILE
    assert is_intent_model(source)
    texts = [text for text, _ in SAMPLES] + ["北京明天会下雨吗", "what else can you do", "讲个笑话", "现在是几点钟"]
    report = compare_intent_models(source, quantized, [("texts", texts)], runs=20)
    assert report.size_after < report.size_before
    assert report.intent_model
    (agreement,) = report.agreements
    assert agreement.count == len(texts)
    assert agreement.top1 >= 0.95
    assert report.p50_ms_before > 0 and report.p50_ms_after > 0
    # The int8 file carries its labels, so it loads from anywhere.
    loaded = OnnxIntentClassifier.load(quantized.parent, model_file=quantized.name)
    assert loaded.labels == OnnxIntentClassifier.load(model_dir).labels


def test_quantize_any_model_compares_generated_inputs(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    weights = helper.make_tensor("w", TensorProto.FLOAT, [64, 10], rng.standard_normal(640).astype(np.float32))
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "dense",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 10])],
        initializer=[weights],
    )
    source = tmp_path / "dense.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(source))
    target = tmp_path / "dense.int8.onnx"
    quantize_file(source, target)
    assert not is_intent_model(source)
    report = compare_models(source, target, runs=20)
    assert report.size_after < report.size_before
    (agreement,) = report.agreements
    assert agreement.max_abs_diff is not None and 0 < agreement.max_abs_diff < 1.0
    assert agreement.top1 >= 0.8


def test_quantize_refuses_missing_or_same_file(tmp_path: Path, model_dir: Path) -> None:
    with pytest.raises(FileNotFoundError):
        quantize_file(tmp_path / "absent.onnx", tmp_path / "out.onnx")
    with pytest.raises(ValueError, match="another file name"):
        quantize_file(model_dir / MODEL_FILE, model_dir / MODEL_FILE)


def test_report_says_larger_when_quantization_grew_the_file(tmp_path: Path) -> None:
    def report(before: int, after: int) -> QuantizeReport:
        return QuantizeReport(tmp_path, tmp_path, before, after, 3.0, 1.0, 10, False)

    assert report(1000, 300).size_change == "70% smaller"
    assert report(1000, 1190).size_change == "19% larger"
    assert report(1000, 300).speedup == pytest.approx(3.0)
