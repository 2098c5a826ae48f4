"""``assistant train-intents`` and ``assistant quantize``: build the samples, call the adapters, print the figures."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from pipeline.settings import Settings
from skills.base import BaseSkill

logger = logging.getLogger(__name__)

#: The held-out paraphrases in a source checkout; ``assistant quantize`` compares an intent model on them too.
HELDOUT = Path(__file__).resolve().parents[1] / "bench" / "data" / "intents_heldout.tsv"


def registry_skills(settings: Settings) -> list[BaseSkill]:
    """The skills a dispatch worker would have: built-ins, folder and entry-point plugins, then the database's."""
    from assistant.bootstrap import build_adapters, build_registry
    from skills.declarative import DeclarativeSkill

    adapters = build_adapters(settings)
    try:
        # Training never calls a skill: the weather provider is built but not asked anything.
        skills: list[BaseSkill] = list(build_registry(adapters))
        taken = {skill.name for skill in skills}
        try:
            definitions = adapters.repository.list_skills()
        except Exception as exc:  # a database not migrated yet has no skills table: train on the others
            logger.warning("declarative skills not read (%s); run `assistant migrate`", type(exc).__name__)
            definitions = []
        skills += [DeclarativeSkill(d, adapters.post_json) for d in definitions if d.name not in taken]
    finally:
        adapters.close()
    return skills


def train_intents(settings: Settings, out: Path | None) -> int:
    from adapters.intents import train_intent_model
    from skills.intents import training_samples

    out_dir = out if out is not None else settings.intents.model_dir
    samples = training_samples(registry_skills(settings))
    try:
        report = train_intent_model(samples, out_dir)
    except ValueError as exc:
        print(f"assistant train-intents: {exc}", file=sys.stderr)
        return 1
    print(f"labels:  {', '.join(report.labels)}")
    print(f"samples: {report.samples} ({len(samples)} from skills, the rest everyday chat for the none class)")
    print(f"seconds: {report.seconds:.2f}")
    print(f"model:   {report.path} ({report.size_bytes / 1024:.1f} KiB)")
    return 0


def quantize(settings: Settings, model: Path, output: Path | None, runs: int, heldout: Path | None) -> int:
    from adapters.intents import read_labelled
    from adapters.quantize import compare_intent_models, compare_models, is_intent_model, quantize_file
    from skills.intents import training_samples

    target = output if output is not None else model.with_name(f"{model.stem}.int8.onnx")
    if runs < 1:
        print("assistant quantize: --runs must be at least 1", file=sys.stderr)
        return 2
    # onnxruntime's quantizer logs advice on the root logger ("consider pre-processing") that does not apply here.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        quantize_file(model, target)
    except (FileNotFoundError, ValueError) as exc:
        print(f"assistant quantize: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # onnx and onnxruntime raise their own classes for a file that is no model
        print(f"assistant quantize: cannot quantize {model}: {exc}", file=sys.stderr)
        return 1
    finally:
        root.setLevel(level)
    if is_intent_model(model):
        sets: list[tuple[str, list[str]]] = []
        held = heldout if heldout is not None else HELDOUT
        if held.is_file():
            sets.append((f"held-out set ({held.name})", [text for text, _ in read_labelled(held)]))
        elif heldout is not None:
            print(f"assistant quantize: no held-out file at {heldout}", file=sys.stderr)
            return 2
        try:
            sets.append(("training samples", [text for text, _ in training_samples(registry_skills(settings))]))
        except Exception as exc:  # the registry needs the database; the held-out comparison stands without it
            print(f"assistant quantize: training samples not compared: {exc}", file=sys.stderr)
        report = compare_intent_models(model, target, sets, runs)
    else:
        report = compare_models(model, target, runs)
    print(f"wrote {report.output}")
    print(f"size:    {report.size_before / 1024:.1f} KiB -> {report.size_after / 1024:.1f} KiB "
          f"({report.size_change})")  # fmt: skip
    print(f"latency: p50 {report.p50_ms_before:.3f} ms -> {report.p50_ms_after:.3f} ms "
          f"({report.speedup:.2f}x, {report.runs} runs each, one input a run)")  # fmt: skip
    for agreement in report.agreements:
        gap = f", max |diff| {agreement.max_abs_diff:.4f}" if agreement.max_abs_diff is not None else ""
        print(f"agreement on {agreement.name}: top-1 {agreement.top1 * 100:.1f}% of {agreement.count}{gap}")
    return 0
