"""Trains the intent model in a child process, so a dispatch worker never holds scikit-learn and skl2onnx.

A worker that trains in its own process keeps about 150 MiB more for good (the libraries stay imported); one that
only loads the model with onnxruntime keeps about 30 MiB. The child gets the samples as JSON on stdin, writes the
model with ``train_intent_model`` and exits.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

#: Seconds a training may take before the child is killed (it takes about a second for a few hundred samples).
TRAIN_TIMEOUT_SECONDS = 300
#: The child yields the CPU to the worker's messages: training is never urgent.
NICENESS = 10


class IntentTrainingError(Exception):
    """The training child failed; the message holds its exit status only (its output may quote samples)."""


def train_in_child(samples: Sequence[tuple[str, str]], out_dir: Path) -> None:
    """Train on ``samples`` into ``out_dir`` in a child Python process; raises ``IntentTrainingError``."""
    payload = json.dumps([list(pair) for pair in samples], ensure_ascii=False)
    # The child imports this package from where the worker did, whatever its working folder (a source checkout).
    root = str(Path(__file__).resolve().parents[1])
    paths = [root, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    try:
        child = subprocess.run(
            [sys.executable, "-m", __name__, str(out_dir)],
            input=payload,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(paths)},
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=TRAIN_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise IntentTrainingError(f"training took longer than {TRAIN_TIMEOUT_SECONDS} s and was stopped") from None
    if child.returncode != 0:
        raise IntentTrainingError(f"the training process exited with status {child.returncode}")


def _main(argv: list[str]) -> int:
    from adapters.intents import train_intent_model

    if hasattr(os, "nice"):
        os.nice(NICENESS)
    samples = [(str(text), str(label)) for text, label in json.load(sys.stdin)]
    report = train_intent_model(samples, Path(argv[0]))
    print(json.dumps({"labels": list(report.labels), "samples": report.samples, "seconds": report.seconds}))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
