"""Smart-home understanding benchmark: accuracy on phrasings written apart from the templates, and hassil latency.

``.venv/bin/python -m bench.smarthome [--devices FILE] [--phrases FILE ...] [--passes N] [--misses]`` reads
``bench/data/smarthome_phrases.tsv`` and ``smarthome_phrases_fresh.tsv`` (text, expected intent or ``none``,
expected targets or ``ASK``, the request's area) and runs each sentence as the dispatch stage would:
``SmartHomeSkill.match`` decides whether the skill takes it, then the skill's reading and target resolution (with
the request's area) give the intent and the entities. A sentence is right when the intent and the sorted targets
both match (``ASK``: the skill asks which one). No server is used; nothing is cached between messages, so the
latency is hassil's on every message.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from adapters.home_state import MemoryHomeState
from assistant.config import load_devices
from pipeline.language import detect_language
from skills.smarthome import SmartHomeSkill
from skills.smarthome.recognizer import SmartHomeRecognizer

ROOT = Path(__file__).resolve().parents[1]
PHRASES = ROOT / "bench" / "data" / "smarthome_phrases.tsv"
#: Written after the templates its sibling set led to, scored once before any later change: the honest figure.
FRESH = ROOT / "bench" / "data" / "smarthome_phrases_fresh.tsv"
DEVICES = ROOT / "config" / "devices.example.yaml"
NONE = "none"
ASK = "ASK"


@dataclass(frozen=True, slots=True)
class Phrase:
    text: str
    intent: str
    targets: str
    area: str | None

    @property
    def language(self) -> str:
        return detect_language(self.text)


@dataclass(frozen=True, slots=True)
class Outcome:
    phrase: Phrase
    intent: str
    targets: str
    #: Milliseconds of ``match`` (hassil without the area), then of the reading with the area and the resolution.
    match_ms: float
    understand_ms: float
    #: CPU milliseconds of this thread for both: what the message costs whatever else the machine runs.
    cpu_ms: float = 0.0

    @property
    def right(self) -> bool:
        if self.phrase.intent == NONE:
            return self.intent == NONE
        return (self.intent, self.targets) == (self.phrase.intent, self.phrase.targets)


def read_phrases(path: Path) -> list[Phrase]:
    phrases = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        cells = line.split("\t")
        text, intent = cells[0].strip(), cells[1].strip()
        targets = cells[2].strip() if len(cells) > 2 else ""
        area = cells[3].strip() if len(cells) > 3 and cells[3].strip() else None
        phrases.append(Phrase(text, intent, ",".join(sorted(t for t in targets.split(",") if t)), area))
    return phrases


def run(skill: SmartHomeSkill, phrase: Phrase) -> Outcome:
    cpu = time.thread_time()
    outcome = _run(skill, phrase)
    return replace(outcome, cpu_ms=(time.thread_time() - cpu) * 1000)


def _run(skill: SmartHomeSkill, phrase: Phrase) -> Outcome:
    started = time.perf_counter()
    taken = skill.match(phrase.text) > 0
    matched = time.perf_counter()
    if not taken:
        return Outcome(phrase, NONE, "", (matched - started) * 1000, 0.0)
    area = skill.devices.area_named(phrase.area) if phrase.area else None
    readings, chosen = skill.understand(phrase.text, phrase.language, area)
    done = time.perf_counter()
    if chosen is None:
        intent, targets = (readings[0].intent if readings else NONE), ""
    else:
        reading, found = chosen
        intent = reading.intent
        targets = ASK if found.unclear else ",".join(sorted(e.id for e in found.entities))
    return Outcome(phrase, intent, targets, (matched - started) * 1000, (done - matched) * 1000)


def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def share(outcomes: Sequence[Outcome]) -> str:
    right = sum(o.right for o in outcomes)
    return f"{right / len(outcomes) * 100:5.1f}% ({right}/{len(outcomes)})" if outcomes else "  -"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=Path, default=DEVICES)
    parser.add_argument("--phrases", type=Path, action="append", help="phrase file(s); default: both sets")
    parser.add_argument("--passes", type=int, default=5, help="timed passes over every phrase (the first is warm-up)")
    parser.add_argument("--misses", action="store_true", help="print every sentence answered wrong")
    args = parser.parse_args(argv)

    devices = load_devices(args.devices)
    if devices is None:
        parser.error(f"no devices file at {args.devices}")
    skill = SmartHomeSkill(devices, MemoryHomeState())
    skill.recognizer = SmartHomeRecognizer(devices, cache_size=0)  # every message pays for its own recognition
    started = time.perf_counter()
    for language in ("zh", "en"):
        skill.recognizer.intents(language)
    print(f"templates loaded and compiled for zh and en in {(time.perf_counter() - started) * 1000:.0f} ms")
    for path in args.phrases or [PHRASES, FRESH]:
        report(skill, path, args.devices, args.passes, args.misses)
    return 0


def report(skill: SmartHomeSkill, path: Path, devices: Path, passes: int, misses: bool) -> None:
    """Score one phrase file and print its tables."""
    phrases = read_phrases(path)
    first = [run(skill, p) for p in phrases]  # warm-up, and the answers scored
    timed = [run(skill, p) for _ in range(max(1, passes - 1)) for p in phrases]

    print(f"\n{len(phrases)} phrasings from {path.name}, entities of {devices.name}\n")
    print("| language | all | smart-home requests | other messages (none) |")
    print("|---|---|---|---|")
    for label in ("zh", "en", "both"):
        chosen = [o for o in first if label == "both" or o.phrase.language == label]
        requests = [o for o in chosen if o.phrase.intent != NONE]
        others = [o for o in chosen if o.phrase.intent == NONE]
        print(f"| {label} | {share(chosen)} | {share(requests)} | {share(others)} |")

    print("\nlatency per message, ms (no cache; match = hassil on the text, understand = with the area + targets)")
    print("| language | match p50 | match p95 | match+understand p50 | match+understand p95 | CPU p50 | CPU p95 |")
    print("|---|---|---|---|---|---|---|")
    for label in ("zh", "en"):
        chosen = [o for o in timed if o.phrase.language == label]
        matches = [o.match_ms for o in chosen]
        totals = [o.match_ms + o.understand_ms for o in chosen]
        cpu = [o.cpu_ms for o in chosen]
        print(f"| {label} | {percentile(matches, 0.5):.2f} | {percentile(matches, 0.95):.2f} | "
              f"{percentile(totals, 0.5):.2f} | {percentile(totals, 0.95):.2f} | "
              f"{percentile(cpu, 0.5):.2f} | {percentile(cpu, 0.95):.2f} |")  # fmt: skip
    every = [o.match_ms + o.understand_ms for o in timed]
    print(f"\nall: p50 {percentile(every, 0.5):.2f} ms, p95 {percentile(every, 0.95):.2f} ms, "
          f"mean {statistics.fmean(every):.2f} ms, max {max(every):.2f} ms over {len(every)} messages")  # fmt: skip

    if misses:
        print("\nmisses:")
        for outcome in first:
            if not outcome.right:
                want = f"{outcome.phrase.intent} {outcome.phrase.targets}".strip()
                got = f"{outcome.intent} {outcome.targets}".strip()
                print(f"  {outcome.phrase.text!r} (area {outcome.phrase.area}): want {want}, got {got}")


if __name__ == "__main__":
    raise SystemExit(main())
