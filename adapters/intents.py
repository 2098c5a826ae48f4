"""The intent classifier: character n-grams and logistic regression, trained with scikit-learn, run on onnxruntime."""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import time
import unicodedata
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from adapters.intent_chitchat import CHITCHAT
from pipeline.intents import NONE_LABEL, IntentGuess
from pipeline.language import normalize

logger = logging.getLogger(__name__)

#: The ONNX model in the model folder.
MODEL_FILE = "intents.onnx"
#: The label file beside it: ``{"labels": [...], ...}``, one label per column of the model's output.
LABELS_FILE = "labels.json"
#: The label of "no skill meant": ``classify`` returns it as an ``IntentGuess`` like any other label, and it names
#: no skill, so dispatch (which takes only a guess naming a registered skill) treats it as no match.
#: The model's input: a ``[N, 1]`` string tensor of normalized text.
INPUT_NAME = "text"
#: The model's output: ``[N, labels]`` probabilities, each row summing to 1.
OUTPUT_NAME = "probabilities"
#: Names the normalization below; a model trained under another one is refused rather than silently misread.
NORMALIZATION = "nfkc-casefold-nopunct-pad-v1"
#: Characters of a message the model reads: intents show in the first sentences, and the cost stays bounded.
MAX_CHARS = 300

#: Character n-gram lengths: 1..3 covers Chinese words (one to three characters) and English word pieces.
NGRAM_RANGE = (1, 3)
#: Inverse regularization strength: high enough that a clear paraphrase gets a confident probability.
REGULARIZATION_C = 20.0
_OPSET = {"": 17, "ai.onnx.ml": 3}
_SPACES = re.compile(r"\s+")
_SCORES = ("intent_scores", "intent_logits")


class IntentModelError(Exception):
    """The intent model on disk cannot be used: not ONNX, the wrong shape, or labels that do not fit it."""


@dataclass(frozen=True, slots=True)
class TrainReport:
    """What ``train_intent_model`` produced."""

    #: The model's labels, in output order (skill names and ``NONE_LABEL``).
    labels: tuple[str, ...]
    #: Training sentences used, the chat sentences of the none class included.
    samples: int
    #: Wall time of fitting, exporting and checking the model.
    seconds: float
    #: The ONNX file written.
    path: Path
    #: Its size in bytes.
    size_bytes: int


def normalize_text(text: str) -> str:
    """The form the model reads, the same in training and use.

    NFKC and casefold (full-width ``ＷＥＡＴＨＥＲ？`` reads as ``weather?``), punctuation and symbols become spaces
    (``几点了？`` and ``几点了`` are one request), runs of spaces become one, and one space pads each end so n-grams see
    where the text starts and stops. Empty when nothing is left.
    """
    folded = normalize(text)[:MAX_CHARS]
    kept = "".join(" " if unicodedata.category(ch)[0] in "PSZC" else ch for ch in folded)
    words = _SPACES.sub(" ", kept).strip()
    return f" {words} " if words else ""


def read_labelled(path: Path) -> list[tuple[str, str]]:
    """``text<TAB>label`` lines of a file (``#`` comments and blank lines skipped), as the held-out set is written."""
    pairs = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        text, tab, label = line.rpartition("\t")
        if not tab or not text.strip() or not label.strip():
            raise ValueError(f"{path}:{number}: expected text<TAB>label")
        pairs.append((text.strip(), label.strip()))
    return pairs


def train_intent_model(
    samples: Sequence[tuple[str, str]], out_dir: Path, negatives: Iterable[str] = CHITCHAT
) -> TrainReport:
    """Fit the classifier on ``(text, skill_name)`` pairs and write ``out_dir/intents.onnx`` and ``labels.json``.

    ``negatives`` (everyday chat by default) become the ``__none__`` class. Both files are written under temporary
    names and renamed into place, labels first; the model also carries its labels, so a reader never pairs one
    model with another's labels.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    started = time.perf_counter()
    if any(label == NONE_LABEL for _, label in samples):
        # Its sentences would teach "no skill"; a skill by that name can never be chosen by the model.
        logger.warning("samples of a skill named %s are not learned: the name means no skill", NONE_LABEL)
    pairs = [(normalize_text(text), label) for text, label in samples if label != NONE_LABEL]
    pairs += [(normalize_text(text), NONE_LABEL) for text in negatives]
    pairs = [(text, label) for text, label in pairs if text and label]
    labels_seen = {label for _, label in pairs}
    if len(labels_seen - {NONE_LABEL}) < 1:
        raise ValueError("no training samples: give at least one (text, skill) pair")
    if len(labels_seen) < 2:
        raise ValueError("training needs at least two labels (give negatives, or samples of two skills)")
    texts = [text for text, _ in pairs]
    targets = [label for _, label in pairs]
    # "char", not "char_wb": skl2onnx converts only the former. The spaces padding each text (normalize_text) give
    # the word-boundary n-grams char_wb would add. No sublinear_tf: the converter computes it differently.
    vectorizer = TfidfVectorizer(analyzer="char", ngram_range=NGRAM_RANGE, lowercase=False, dtype=np.float32)
    features = vectorizer.fit_transform(texts)
    # Balanced class weights: a skill with few examples is not drowned by one with many, or by the chat class.
    classifier = LogisticRegression(C=REGULARIZATION_C, max_iter=5000, class_weight="balanced")
    classifier.fit(features, targets)
    labels = tuple(str(label) for label in classifier.classes_)
    model = _export(vectorizer, classifier, labels, len(texts))
    _check_export(model, vectorizer, classifier, texts)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / MODEL_FILE
    _write_atomically(out_dir / LABELS_FILE, json.dumps(_label_document(labels, len(texts)), indent=2).encode())
    _write_atomically(path, model.SerializeToString())
    seconds = time.perf_counter() - started
    logger.info("intent model trained: %d labels, %d samples, %.2f s", len(labels), len(texts), seconds)
    return TrainReport(labels=labels, samples=len(texts), seconds=seconds, path=path, size_bytes=path.stat().st_size)


class OnnxIntentClassifier:
    """The trained model on onnxruntime; ``classify`` is safe to call from many threads at once."""

    def __init__(self, session: Any, labels: Sequence[str]) -> None:
        self._session = session
        #: The model's labels in output order.
        self.labels: tuple[str, ...] = tuple(labels)

    @classmethod
    def load(cls, model_dir: Path, threads: int = 1, model_file: str = MODEL_FILE) -> OnnxIntentClassifier:
        """Load ``model_dir/intents.onnx`` (or ``model_file``) once; onnxruntime uses ``threads`` intra-op threads.

        Raises ``FileNotFoundError`` when there is no model, ``IntentModelError`` when it cannot be used.
        """
        import onnxruntime as ort

        path = Path(model_dir) / model_file
        try:
            # One read: a model renamed into place meanwhile is seen whole, old or new, never mixed.
            data = path.read_bytes()
        except FileNotFoundError:
            raise FileNotFoundError(f"no intent model at {path}: run `assistant train-intents`") from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        try:
            session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own pybind classes for every kind of bad file
            raise IntentModelError(f"{path} is not a usable ONNX model: {exc}") from exc
        labels = _model_labels(session, path)
        inputs, outputs = session.get_inputs(), session.get_outputs()
        if [i.name for i in inputs] != [INPUT_NAME] or inputs[0].type != "tensor(string)":
            raise IntentModelError(f"{path} does not take one string input named {INPUT_NAME!r}")
        if OUTPUT_NAME not in {o.name for o in outputs}:
            raise IntentModelError(f"{path} has no output named {OUTPUT_NAME!r}")
        width = next(o.shape for o in outputs if o.name == OUTPUT_NAME)[-1]
        if isinstance(width, int) and width != len(labels):
            raise IntentModelError(f"{path} scores {width} labels but names {len(labels)}")
        return cls(session, labels)

    def classify(self, text: str) -> IntentGuess | None:
        """The most likely label and its probability; None for text with nothing to read."""
        scores = self.probabilities(text)
        if scores is None:
            return None
        best = int(np.argmax(scores))
        return IntentGuess(skill=self.labels[best], confidence=float(scores[best]))

    def probabilities(self, text: str) -> np.ndarray | None:
        """Every label's probability, in ``labels`` order; None for text with nothing to read."""
        folded = normalize_text(text)
        if not folded:
            return None
        result = self._session.run([OUTPUT_NAME], {INPUT_NAME: np.array([[folded]], dtype=object)})
        return np.asarray(result[0][0], dtype=np.float32)


def _model_labels(session: Any, path: Path) -> tuple[str, ...]:
    """The labels the model carries; ``labels.json`` beside it only for models that carry none."""
    meta = session.get_modelmeta().custom_metadata_map
    if meta.get("normalization", NORMALIZATION) != NORMALIZATION:
        raise IntentModelError(f"{path} expects text normalized as {meta['normalization']!r}, not {NORMALIZATION!r}")
    if "labels" in meta:
        try:
            labels = json.loads(meta["labels"])
        except ValueError as exc:
            raise IntentModelError(f"{path} carries unreadable labels: {exc}") from exc
    else:
        labels_path = path.parent / LABELS_FILE
        try:
            labels = json.loads(labels_path.read_text(encoding="utf-8")).get("labels")
        except FileNotFoundError:
            raise FileNotFoundError(f"{path} names no labels and {labels_path} is missing") from None
        except (ValueError, AttributeError) as exc:
            raise IntentModelError(f"{labels_path} is not a label file: {exc}") from exc
    if not isinstance(labels, list) or not labels or not all(isinstance(label, str) for label in labels):
        raise IntentModelError(f"the labels of {path} are not a list of names")
    return tuple(labels)


def _label_document(labels: tuple[str, ...], samples: int) -> dict[str, Any]:
    return {
        "labels": list(labels),
        "none_label": NONE_LABEL,
        "input": INPUT_NAME,
        "output": OUTPUT_NAME,
        "normalization": NORMALIZATION,
        "samples": samples,
    }


def _export(vectorizer: Any, classifier: Any, labels: tuple[str, ...], samples: int) -> Any:
    """The vectorizer as skl2onnx converts it, then softmax(features · Wᵀ + b) as plain ONNX nodes.

    The linear part is written out as MatMul rather than skl2onnx's LinearClassifier, so onnxruntime's dynamic
    quantization can turn its weights into int8 (it does not touch LinearClassifier). Multinomial logistic
    regression's ``predict_proba`` is exactly that softmax.
    """
    from onnx import TensorProto, helper, numpy_helper
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import StringTensorType

    with warnings.catch_warnings():
        # skl2onnx warns that analyzer="char" "may not work"; _check_export compares it against scikit-learn.
        warnings.simplefilter("ignore", UserWarning)
        model = convert_sklearn(
            vectorizer, initial_types=[(INPUT_NAME, StringTensorType([None, 1]))], target_opset=_OPSET
        )
    graph = model.graph
    features = graph.output[0].name
    coef = np.asarray(classifier.coef_, dtype=np.float32)
    intercept = np.asarray(classifier.intercept_, dtype=np.float32)
    if coef.shape[0] == 1:
        # Two classes: scikit-learn keeps one row z and gives p = sigmoid(z), which is softmax over (0, z).
        coef = np.vstack([np.zeros_like(coef), coef])
        intercept = np.concatenate([np.zeros(1, dtype=np.float32), intercept])
    graph.initializer.extend(
        [numpy_helper.from_array(coef.T.copy(), "intent_weights"), numpy_helper.from_array(intercept, "intent_bias")]
    )
    graph.node.extend(
        [
            helper.make_node("MatMul", [features, "intent_weights"], ["intent_scores"], name="IntentMatMul"),
            helper.make_node("Add", ["intent_scores", "intent_bias"], ["intent_logits"], name="IntentAdd"),
            helper.make_node("Softmax", ["intent_logits"], [OUTPUT_NAME], axis=-1, name="IntentSoftmax"),
        ]
    )
    # Typed intermediate values: onnxruntime's quantizer cannot infer types past the contrib Tokenizer node.
    graph.value_info.extend(
        [graph.output[0]]
        + [helper.make_tensor_value_info(name, TensorProto.FLOAT, [None, len(labels)]) for name in _SCORES]
    )
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [None, len(labels)]))
    graph.name = "intents"
    model.doc_string = "Intent classifier: character 1-3-grams, TF-IDF, multinomial logistic regression"
    for key, value in _label_document(labels, samples).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value) if key == "labels" else str(value)
    return model


def _check_export(model: Any, vectorizer: Any, classifier: Any, texts: Sequence[str]) -> None:
    """Refuse a model whose probabilities differ from scikit-learn's on the training texts (a converter change)."""
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    batch = np.array([[text] for text in texts], dtype=object)
    exported = session.run([OUTPUT_NAME], {INPUT_NAME: batch})[0]
    expected = classifier.predict_proba(vectorizer.transform(texts))
    gap = float(np.max(np.abs(exported - expected)))
    if gap > 1e-3:
        raise IntentModelError(f"the exported model differs from the trained one by {gap:.2g}; not written")


def _write_atomically(path: Path, data: bytes) -> None:
    """Write under a temporary name in the same folder, flush to disk, then rename over ``path``."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
