"""Int8 dynamic quantization of an ONNX model, and how the result compares with the original on this machine."""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from adapters.intents import LABELS_FILE, OnnxIntentClassifier

logger = logging.getLogger(__name__)

#: Runs per model when timing; the report gives the median of single-input runs.
DEFAULT_RUNS = 300
_NUMPY_TYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


@dataclass(frozen=True, slots=True)
class Agreement:
    """How often the quantized model gives the original's answer on one set of inputs."""

    #: What the inputs were (``held-out set``, ``training samples``, ``generated inputs``).
    name: str
    #: Inputs compared.
    count: int
    #: Share of inputs whose top-1 (argmax) answer is the same, 0..1.
    top1: float
    #: Largest absolute difference of any output value (None when not computed).
    max_abs_diff: float | None = None


@dataclass(frozen=True, slots=True)
class QuantizeReport:
    """Size, speed and agreement before and after quantization."""

    #: The original model.
    source: Path
    #: The int8 model written.
    output: Path
    #: Size of the original in bytes.
    size_before: int
    #: Size of the int8 model in bytes.
    size_after: int
    #: The original's median milliseconds per single-input run.
    p50_ms_before: float
    #: The int8 model's, on the same inputs, timed in alternation with the original.
    p50_ms_after: float
    #: Timed runs per model.
    runs: int
    #: True when the model is an intent model (a label file beside it).
    intent_model: bool
    #: Agreement on each input set compared.
    agreements: tuple[Agreement, ...] = field(default_factory=tuple)

    @property
    def size_ratio(self) -> float:
        """After / before: 0.3 means 70% smaller."""
        return self.size_after / self.size_before if self.size_before else 1.0

    @property
    def size_change(self) -> str:
        """``31% smaller``, or ``19% larger`` when quantization added more than it saved."""
        change = (1 - self.size_ratio) * 100
        return f"{change:.0f}% smaller" if change >= 0 else f"{-change:.0f}% larger"

    @property
    def speedup(self) -> float:
        """Before / after latency: 3.0 means three times faster."""
        return self.p50_ms_before / self.p50_ms_after if self.p50_ms_after else 0.0


def quantize_file(source: Path, output: Path) -> None:
    """Write ``output``: ``source`` with its MatMul/Gemm weights as int8 (onnxruntime's ``quantize_dynamic``).

    Dynamic quantization needs no calibration data: weights are stored as int8, activations are quantized on the
    fly. Operators it does not know (text tokenizers, tree ensembles) are kept as they are.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if not source.is_file():
        raise FileNotFoundError(f"no model at {source}")
    if source.resolve() == output.resolve():
        raise ValueError("the quantized model needs another file name than the original")
    output.parent.mkdir(parents=True, exist_ok=True)
    quantize_dynamic(
        source,
        output,
        weight_type=QuantType.QInt8,
        # Types past contrib or ml-domain operators cannot be inferred; their values are float in the models seen.
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )


def is_intent_model(path: Path) -> bool:
    """An intent model is recognised by the label file beside it."""
    return (path.parent / LABELS_FILE).is_file()


def compare_intent_models(
    source: Path, output: Path, text_sets: Sequence[tuple[str, Sequence[str]]], runs: int = DEFAULT_RUNS
) -> QuantizeReport:
    """Top-1 agreement of the two intent models on each named set of texts, and their classify latency."""
    before = OnnxIntentClassifier.load(source.parent, model_file=source.name)
    after = OnnxIntentClassifier.load(output.parent, model_file=output.name)
    agreements = []
    all_texts: list[str] = []
    for name, texts in text_sets:
        texts = [t for t in texts if t.strip()]
        if not texts:
            continue
        all_texts += texts
        same = 0
        gap = 0.0
        for text in texts:
            p_before, p_after = before.probabilities(text), after.probabilities(text)
            if p_before is None or p_after is None:
                same += int(p_before is None and p_after is None)  # nothing to read: both answer None
                continue
            same += int(np.argmax(p_before)) == int(np.argmax(p_after))
            gap = max(gap, float(np.max(np.abs(p_before - p_after))))
        agreements.append(Agreement(name=name, count=len(texts), top1=same / len(texts), max_abs_diff=gap))
    timing_texts = all_texts or ["what time is it", "今天天气怎么样"]
    p50_before, p50_after = _p50_ms(
        lambda i: before.classify(timing_texts[i % len(timing_texts)]),
        lambda i: after.classify(timing_texts[i % len(timing_texts)]),
        runs,
    )
    return _report(source, output, p50_before, p50_after, runs, True, agreements)


def compare_models(source: Path, output: Path, runs: int = DEFAULT_RUNS, samples: int = 20) -> QuantizeReport:
    """Any model: outputs on ``samples`` generated inputs that fit its input signature, and latency."""
    before = _session(source)
    after = _session(output)
    rng = np.random.default_rng(0)
    feeds = [_generated_feed(before, rng) for _ in range(samples)]
    same = total = 0
    gap = 0.0
    for feed in feeds:
        for a, b in zip(before.run(None, feed), after.run(None, feed), strict=True):
            a, b = np.asarray(a), np.asarray(b)
            if a.dtype.kind not in "fiu" or a.shape != b.shape:
                continue
            gap = max(gap, float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)), initial=0.0)))
            if a.ndim >= 1 and a.shape[-1] > 1:
                flat_a, flat_b = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
                same += int(np.sum(np.argmax(flat_a, axis=-1) == np.argmax(flat_b, axis=-1)))
                total += flat_a.shape[0]
    agreement = Agreement(name="generated inputs", count=len(feeds), top1=same / total if total else 1.0,
                          max_abs_diff=gap)  # fmt: skip
    p50_before, p50_after = _p50_ms(
        lambda i: before.run(None, feeds[i % len(feeds)]), lambda i: after.run(None, feeds[i % len(feeds)]), runs
    )
    return _report(source, output, p50_before, p50_after, runs, False, [agreement])


def _report(
    source: Path, output: Path, before: float, after: float, runs: int, intent: bool, agreements: list[Agreement]
) -> QuantizeReport:
    return QuantizeReport(
        source=source,
        output=output,
        size_before=source.stat().st_size,
        size_after=output.stat().st_size,
        p50_ms_before=before,
        p50_ms_after=after,
        runs=runs,
        intent_model=intent,
        agreements=tuple(agreements),
    )


def _session(path: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _generated_feed(session: Any, rng: np.random.Generator) -> dict[str, Any]:
    """One input per model input, of its type, with every unnamed or symbolic dimension set to 1 (8 for the last)."""
    feed: dict[str, Any] = {}
    for spec in session.get_inputs():
        dims = list(spec.shape) or []
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in dims]
        if dims and not (isinstance(dims[-1], int) and dims[-1] > 0):
            shape[-1] = 8  # a sequence axis: a few positions rather than one
        if spec.type == "tensor(string)":
            feed[spec.name] = np.full(shape, "hello", dtype=object)
            continue
        dtype = _NUMPY_TYPES.get(spec.type)
        if dtype is None:
            raise ValueError(f"cannot generate inputs of type {spec.type} for {spec.name!r}")
        if np.issubdtype(dtype, np.floating):
            feed[spec.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype is np.bool_:
            feed[spec.name] = rng.integers(0, 2, shape).astype(dtype)
        else:
            # Small ids: token ids and positions of any vocabulary are valid from 0 up.
            feed[spec.name] = rng.integers(0, 10, shape).astype(dtype)
    return feed


def _p50_ms(first: Callable[[int], Any], second: Callable[[int], Any], runs: int) -> tuple[float, float]:
    """Median milliseconds of each, timed in alternation so load from elsewhere on the machine hits both alike."""
    for i in range(min(20, runs)):  # warm-up: first runs allocate
        first(i)
        second(i)
    timings: tuple[list[float], list[float]] = ([], [])
    for i in range(runs):
        for run, sink in ((first, timings[0]), (second, timings[1])):
            started = time.perf_counter()
            run(i)
            sink.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings[0]), statistics.median(timings[1])
