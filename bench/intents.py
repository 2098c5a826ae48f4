"""Intent benchmark: held-out accuracy of triggers, the model and the dispatch rule, classify latency, int8 model.

``.venv/bin/python -m bench.intents [--passes 30] [--threshold 0.5] [--misses]``: trains the intent model on the
samples ``assistant train-intents`` uses (every registered skill's triggers and examples, plus the none class's
chat), in a temporary folder, then reads ``bench/data/intents_heldout.tsv``: paraphrases written apart from the
skills' examples and never trained on. For each sentence it compares the expected skill (``none``: no skill)
with what three rules pick:

- triggers: ``SkillRegistry.match`` alone, as dispatch chose before the model;
- model: the classifier's top label when its confidence reaches the threshold and it names a registered skill;
- dispatch: an exact trigger match wins, else the model above the threshold, else none.

It prints accuracy overall and per language, classification latency per message (p50/p95 over every held-out
sentence, ``--passes`` times each, one message a call), and the same for the int8 model ``assistant quantize``
writes, with its top-1 agreement. No server is used.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from adapters.intents import NONE_LABEL, OnnxIntentClassifier, normalize_text, read_labelled, train_intent_model
from adapters.quantize import compare_models, quantize_file
from assistant.intent_commands import registry_skills
from pipeline.language import detect_language
from pipeline.settings import Settings
from skills.intents import training_samples
from skills.registry import SkillRegistry

HELDOUT = Path(__file__).resolve().parent / "data" / "intents_heldout.tsv"
#: What "no skill" is called in the held-out file.
NONE = "none"
_DISTRIBUTED = ("BROKER_URL", "REDIS_URL", "DATABASE_URL")
#: The misses the issue names; printed one by one whatever the set.
ISSUE_EXAMPLES = ("will it rain tomorrow in Beijing", "今天要带伞吗", "杭州热不热", "你都会些什么", "how do I use you")


@dataclass(frozen=True, slots=True)
class Score:
    """Correct answers of one rule on one slice of the held-out set."""

    #: Sentences answered right.
    right: int
    #: Sentences in the slice.
    total: int

    def __str__(self) -> str:
        share = self.right / self.total * 100 if self.total else 0.0
        return f"{share:5.1f}% ({self.right}/{self.total})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.intents", description=__doc__.split("\n\n")[0])
    parser.add_argument("--heldout", type=Path, default=HELDOUT, help="text<TAB>skill file (default: ours)")
    parser.add_argument("--threshold", type=float, default=0.5, help="confidence a guess needs (INTENT_THRESHOLD)")
    parser.add_argument("--passes", type=int, default=30, help="timed passes over the held-out set (default 30)")
    parser.add_argument("--misses", action="store_true", help="list the sentences the dispatch rule gets wrong")
    parser.add_argument("--dense", type=int, default=1024, metavar="WIDTH",
                        help="also quantize a float32 MLP of four WIDTH x WIDTH MatMul layers, for contrast "
                        "(default 1024; 0: skip)")  # fmt: skip
    args = parser.parse_args(argv)
    written = read_labelled(args.heldout)
    # onnxruntime's quantizer logs advice on the root logger ("consider pre-processing") that does not apply here.
    logging.getLogger().setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="bench-intents-") as scratch:
        folder = Path(scratch)
        skills = registry_skills(_embedded_settings(folder / "data"))
        registry = SkillRegistry(skills)
        samples = training_samples(skills)
        report = train_intent_model(samples, folder / "model")
        # A held-out sentence someone also wrote as a skill example (the likeliest phrasings, "what time is it")
        # was trained on: it is left out of the scores, so every scored sentence is unseen.
        trained = {normalize_text(text) for text, _ in samples}
        heldout = [(text, skill) for text, skill in written if normalize_text(text) not in trained]
        size = report.size_bytes / 1024
        print(f"trained on {report.samples} samples ({len(samples)} from {len(skills)} skills' triggers and "
              f"examples) in {report.seconds:.2f} s: {', '.join(report.labels)}; {size:.1f} KiB")  # fmt: skip
        print(f"held-out set: {len(heldout)} sentences scored ({args.heldout.name}: {len(written)} written, "
              f"{len(written) - len(heldout)} left out as they are also training samples), "
              f"threshold {args.threshold}")  # fmt: skip
        model = OnnxIntentClassifier.load(folder / "model")
        quantized_path = folder / "model" / "intents.int8.onnx"
        quantize_file(report.path, quantized_path)
        quantized = OnnxIntentClassifier.load(folder / "model", model_file=quantized_path.name)
        triggers = _trigger_rule(registry)
        rules = {
            "triggers": triggers,
            "model": _model_rule(model, registry, args.threshold),
            "dispatch": _dispatch_rule(triggers, _model_rule(model, registry, args.threshold)),
            "dispatch int8": _dispatch_rule(triggers, _model_rule(quantized, registry, args.threshold)),
        }
        _print_accuracy(heldout, rules)
        _print_sweep(heldout, triggers, model, registry)
        for text in ISSUE_EXAMPLES:
            guess = model.classify(text)
            seen = f"{guess.skill} {guess.confidence:.2f}" if guess else "-"
            note = " (a training sample)" if normalize_text(text) in trained else ""
            print(f"  {text!r}: triggers {triggers(text)}, dispatch {rules['dispatch'](text)} (model: {seen}){note}")
        texts = [text for text, _ in heldout]
        _print_latency("trigger match", lambda text: registry.match(text), texts, args.passes)
        _print_latency("classify", model.classify, texts, args.passes)
        _print_latency("classify int8", quantized.classify, texts, args.passes)
        same = sum(_top(model, text) == _top(quantized, text) for text in texts + [t for t, _ in samples])
        print(f"int8 model: {quantized_path.stat().st_size / 1024:.1f} KiB vs {report.size_bytes / 1024:.1f} KiB; "
              f"top-1 agreement with the float model {same}/{len(texts) + len(samples)} "
              "(held-out set and training samples)")  # fmt: skip
        if args.dense:
            _print_dense(folder, args.dense)
        if args.misses:
            dispatch = rules["dispatch"]
            for text, expected in heldout:
                if (got := dispatch(text)) != expected:
                    guess = model.classify(text)
                    seen = f"{guess.skill} {guess.confidence:.2f}" if guess else "-"
                    print(f"  miss: {text!r} expected {expected}, got {got} (model: {seen})")
    return 0


def _embedded_settings(data_dir: Path) -> Settings:
    """This environment's settings on an embedded layout in a scratch folder: the registry without any server."""
    env = {k: v for k, v in os.environ.items() if k not in _DISTRIBUTED}
    env["ASSISTANT_DATA_DIR"] = str(data_dir)
    return Settings.from_env(env)


def _trigger_rule(registry: SkillRegistry) -> Callable[[str], str]:
    def rule(text: str) -> str:
        skill = registry.match(text)
        return skill.name if skill is not None else NONE

    return rule


def _model_rule(model: OnnxIntentClassifier, registry: SkillRegistry, threshold: float) -> Callable[[str], str]:
    def rule(text: str) -> str:
        guess = model.classify(text)
        if guess is None or guess.confidence < threshold or guess.skill == NONE_LABEL or guess.skill not in registry:
            return NONE
        return guess.skill

    return rule


def _dispatch_rule(triggers: Callable[[str], str], model: Callable[[str], str]) -> Callable[[str], str]:
    def rule(text: str) -> str:
        matched = triggers(text)
        return matched if matched != NONE else model(text)

    return rule


def _score(pairs: Sequence[tuple[str, str]], rule: Callable[[str], str]) -> Score:
    return Score(right=sum(rule(text) == expected for text, expected in pairs), total=len(pairs))


def _print_accuracy(heldout: list[tuple[str, str]], rules: dict[str, Callable[[str], str]]) -> None:
    slices = {
        "all": heldout,
        "zh": [(t, s) for t, s in heldout if detect_language(t) == "zh"],
        "en": [(t, s) for t, s in heldout if detect_language(t) == "en"],
        "skills only": [(t, s) for t, s in heldout if s != NONE],
        "none only": [(t, s) for t, s in heldout if s == NONE],
    }
    print("top-1 accuracy on the held-out set")
    print(f"  {'rule':<14}" + "".join(f"{name:>18}" for name in slices))
    for name, rule in rules.items():
        print(f"  {name:<14}" + "".join(f"{_score(part, rule)!s:>18}" for part in slices.values()))


def _print_sweep(
    heldout: list[tuple[str, str]],
    triggers: Callable[[str], str],
    model: OnnxIntentClassifier,
    registry: SkillRegistry,
) -> None:
    cells = []
    for threshold in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8):
        rule = _dispatch_rule(triggers, _model_rule(model, registry, threshold))
        cells.append(f"{threshold}: {_score(heldout, rule).right / len(heldout) * 100:.1f}%")
    print("dispatch rule by threshold: " + ", ".join(cells))


def _print_latency(name: str, call: Callable[[str], object], texts: Sequence[str], passes: int) -> None:
    for text in texts:  # warm-up
        call(text)
    timings = []
    for _ in range(passes):
        for text in texts:
            started = time.perf_counter()
            call(text)
            timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    p95 = timings[min(len(timings) - 1, int(len(timings) * 0.95))]
    print(f"{name:<14} p50 {statistics.median(timings):.3f} ms  p95 {p95:.3f} ms  ({len(timings)} calls)")


def _print_dense(folder: Path, width: int) -> None:
    """Quantization where it pays: a model that is all MatMul weights (random, so only size and speed mean much)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    nodes, weights, current = [], [], "x"
    for layer in range(4):
        matrix = (rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32)
        weights.append(onnx.numpy_helper.from_array(matrix, f"w{layer}"))
        nodes.append(helper.make_node("MatMul", [current, f"w{layer}"], [f"h{layer}"]))
        current = f"h{layer}"
        if layer < 3:
            nodes.append(helper.make_node("Relu", [current], [f"r{layer}"]))
            current = f"r{layer}"
    graph = helper.make_graph(
        nodes,
        "dense",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info(current, TensorProto.FLOAT, ["batch", width])],
        initializer=weights,
    )
    source = folder / "dense.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(source))
    target = folder / "dense.int8.onnx"
    quantize_file(source, target)
    report = compare_models(source, target, runs=200)
    (agreement,) = report.agreements
    print(f"for contrast, a float32 MLP of four {width}x{width} MatMul layers: "
          f"{report.size_before / 1024:.0f} KiB -> {report.size_after / 1024:.0f} KiB "
          f"({report.size_change}), p50 {report.p50_ms_before:.3f} ms -> "
          f"{report.p50_ms_after:.3f} ms ({report.speedup:.2f}x), argmax agreement {agreement.top1 * 100:.0f}% "
          f"on {agreement.count} random inputs")  # fmt: skip


def _top(model: OnnxIntentClassifier, text: str) -> str | None:
    guess = model.classify(text)
    return guess.skill if guess is not None else None


if __name__ == "__main__":
    raise SystemExit(main())
