"""Voice benchmark: model time and real-time factor per stage, the pipeline's overhead around the models, end of
speech to first reply audio over the WebSocket, and how many utterances at once this machine keeps up with.

    .venv/bin/python -m bench.voice                       # whisper base and tiny.en, about 6 minutes
    .venv/bin/python -m bench.voice --model base --runs 10 --json /tmp/voice.json

It starts ``assistant run`` (the embedded layout: every stage in one process) as a child process per Whisper
model, with the models ``assistant models install`` put in ``--models-dir``. The model figures come from calling
faster-whisper and piper directly on the same audio in this process, before the servers start, so the two never
compete for the CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import threading
import time
import wave
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import requests
from simple_websocket import Client, ConnectionClosed

from bench.layout import ROOT, Embedded

AUDIO_DIR = ROOT / "tests" / "audio"
DEFAULT_MODELS_DIR = Path(os.environ.get("ASSISTANT_TEST_MODELS_DIR", Path.home() / ".cache/assistant/test-models"))
#: The English request every run sends, and the reply text piper speaks in the direct measurement.
RECORDING = "living_room_light_en.wav"
#: 20 ms frames, as a browser's audio worklet sends them.
FRAME_SECONDS = 0.02
SAMPLE_RATE = 16_000
#: Silence sent after the speech, so the server's VAD ends the utterance (it needs 600 ms by default).
TRAILING_SILENCE_SECONDS = 1.5
#: An utterance counts as kept up with when its transcript comes within this many seconds of the end of speech.
KEEP_UP_SECONDS = 3.0


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "p50": percentile(values, 50), "p95": percentile(values, 95), "max": max(values or [0])}


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """Mono float32 samples of a 16-bit WAV and its rate."""
    with wave.open(str(path), "rb") as handle:
        rate, channels = handle.getframerate(), handle.getnchannels()
        samples = np.frombuffer(handle.readframes(handle.getnframes()), dtype="<i2").astype(np.float32) / 32768.0
    return samples.reshape(-1, channels).mean(axis=1), rate


def speech_end_seconds(samples: np.ndarray) -> float:
    """Where the last speech in a 16 kHz clip ends, by Silero VAD: the moment "end of speech" is timed from.

    No padding, and a short minimum silence: the defaults would pad the end by 0.4 s and run on to the clip's end.
    """
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    stamps = get_speech_timestamps(samples, VadOptions(speech_pad_ms=0, min_silence_duration_ms=100))
    return float(stamps[-1]["end"]) / SAMPLE_RATE if stamps else len(samples) / SAMPLE_RATE


# --- the models alone ---------------------------------------------------------------------------------------


def whisper_folder(models_dir: Path, model: str) -> Path:
    return models_dir / f"whisper-{model}"


def direct_models(models_dir: Path, models: list[str], runs: int, reply_text: str) -> dict[str, Any]:
    """faster-whisper and piper called directly, with the options the stages use: load time, time per call, RTF."""
    from faster_whisper import WhisperModel
    from faster_whisper.audio import decode_audio
    from piper import PiperVoice

    results: dict[str, Any] = {}
    for model in models:
        started = time.perf_counter()
        whisper = WhisperModel(str(whisper_folder(models_dir, model)), device="cpu", compute_type="int8", cpu_threads=1)
        load = time.perf_counter() - started
        for name in sorted(p.name for p in AUDIO_DIR.glob("*.wav")):
            if model.endswith(".en") and "_zh" in name:
                continue  # an English-only model
            audio = decode_audio(str(AUDIO_DIR / name), sampling_rate=SAMPLE_RATE)
            language = "zh" if "_zh" in name else "en"
            prompt = "以下是普通话的句子。" if language == "zh" else None
            times, text = [], ""
            for _ in range(runs + 1):  # the first call warms up and is not counted
                started = time.perf_counter()
                segments, _ = model_transcribe(whisper, audio, language, prompt)
                text = "".join(segment.text for segment in segments).strip()
                times.append(time.perf_counter() - started)
            seconds = len(audio) / SAMPLE_RATE
            per_call = statistics.median(times[1:])
            results[f"whisper-{model} {name}"] = {
                "load_s": round(load, 3), "audio_s": round(seconds, 2), "p50_s": round(per_call, 3),
                "rtf": round(per_call / seconds, 3), "text": text,
            }  # fmt: skip
    voice_path = models_dir / "piper" / "en_US-joe-medium.onnx"
    started = time.perf_counter()
    voice = PiperVoice.load(str(voice_path))
    load = time.perf_counter() - started
    times, first, audio_seconds = [], [], 0.0
    for _ in range(runs + 1):
        started = time.perf_counter()
        samples, first_at = 0, None
        for chunk in voice.synthesize(reply_text):
            first_at = first_at if first_at is not None else time.perf_counter() - started
            samples += len(chunk.audio_int16_bytes) // 2
            rate = chunk.sample_rate
        times.append(time.perf_counter() - started)
        first.append(first_at or 0.0)
        audio_seconds = samples / rate
    per_call = statistics.median(times[1:])
    results["piper en_US-joe-medium"] = {
        "load_s": round(load, 3), "audio_s": round(audio_seconds, 2), "p50_s": round(per_call, 3),
        "first_sentence_p50_s": round(statistics.median(first[1:]), 3), "rtf": round(per_call / audio_seconds, 3),
        "characters": len(reply_text),
    }  # fmt: skip
    return results


def model_transcribe(whisper: Any, audio: np.ndarray, language: str, prompt: str | None) -> tuple[Any, Any]:
    segments, info = whisper.transcribe(
        audio, language=language, beam_size=1, vad_filter=True, condition_on_previous_text=False,
        without_timestamps=True, initial_prompt=prompt,
    )  # fmt: skip
    return list(segments), info


# --- the pipeline around them -------------------------------------------------------------------------------


@dataclass
class Server:
    """``assistant run`` with one Whisper model, and a token for it."""

    layout: Embedded
    token: str
    base_url: str

    @property
    def ws_url(self) -> str:
        return self.base_url.replace("http://", "ws://") + "/audio"


def start_server(models_dir: Path, model: str) -> Server:
    layout = Embedded()
    language = "en" if model.endswith(".en") else "auto"
    layout.env |= {"MODELS_DIR": str(models_dir), "ASR_MODEL": model, "ASR_LANGUAGE": language}
    layout.start()
    return Server(layout, layout.token("bench-voice"), layout.base_url)


def http_round_trips(server: Server, runs: int) -> dict[str, Any]:
    """POST /api/audio?reply_audio=true and wait for the spoken reply: total time, model time, the rest."""
    body = (AUDIO_DIR / RECORDING).read_bytes()
    headers = {"Authorization": f"Bearer {server.token}", "Content-Type": "audio/wav"}
    totals, models, overheads, stages = [], [], [], {}  # type: ignore[var-annotated]
    for attempt in range(runs + 1):
        started = time.perf_counter()
        answer = requests.post(
            f"{server.base_url}/api/audio", params={"reply_audio": "true", "wait": "60"}, data=body,
            headers=headers, timeout=90,
        )  # fmt: skip
        total = time.perf_counter() - started
        answer.raise_for_status()
        reply = answer.json()["reply"]
        timings: dict[str, float] = reply.get("timings") or {}
        model_ms = sum(timings.get(stage, 0.0) for stage in ("vad", "asr", "tts"))
        if attempt == 0:
            continue  # warm-up
        totals.append(total * 1000)
        models.append(model_ms)
        overheads.append(total * 1000 - model_ms)
        for stage, ms in timings.items():
            stages.setdefault(stage, []).append(ms)
    return {
        "total_ms": summary(totals),
        "model_ms": summary(models),
        "overhead_ms": summary(overheads),
        "stage_ms_p50": {stage: round(percentile(values, 50), 1) for stage, values in stages.items()},
    }


@dataclass
class Utterance:
    """What one streamed utterance saw, in seconds since the end of its speech was sent."""

    transcript: float | None = None
    reply: float | None = None
    first_audio: float | None = None
    text: str = ""
    events: list[str] = field(default_factory=list)


def frames(samples: np.ndarray) -> Iterator[bytes]:
    step = int(SAMPLE_RATE * FRAME_SECONDS)
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
    for start in range(0, len(pcm), step):
        yield pcm[start : start + step].tobytes()


def stream_utterance(
    ws: Client, samples: np.ndarray, speech_end: float, reply_audio: bool, session_id: str | None
) -> tuple[Utterance, str | None]:
    """Send one utterance at real time, then read events until its reply (and its audio) is done."""
    start: dict[str, Any] = {"type": "start", "sample_rate": SAMPLE_RATE, "format": "pcm16", "reply_audio": reply_audio}
    if session_id:
        start["session_id"] = session_id
    ws.send(json.dumps(start))
    padded = np.concatenate([samples, np.zeros(int(TRAILING_SILENCE_SECONDS * SAMPLE_RATE), dtype=np.float32)])
    received: list[tuple[float, Any]] = []
    reader_done = threading.Event()
    end_sent: list[float] = []

    def read() -> None:
        try:
            while not reader_done.is_set():
                data = ws.receive(timeout=0.5)
                if data is not None:
                    received.append((time.perf_counter(), data))
                    if isinstance(data, str) and _finishes(json.loads(data), reply_audio):
                        return
        except ConnectionClosed:
            return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    began = time.perf_counter()
    speech_end_at = began + speech_end
    for index, frame in enumerate(frames(padded)):
        due = began + index * FRAME_SECONDS
        time.sleep(max(0.0, due - time.perf_counter()))
        ws.send(frame)
    end_sent.append(time.perf_counter())
    reader.join(60)
    reader_done.set()
    result = Utterance()
    session = None
    for at, data in received:
        since = at - speech_end_at
        if isinstance(data, bytes):
            result.first_audio = result.first_audio if result.first_audio is not None else since
            continue
        event = json.loads(data)
        result.events.append(event.get("type", "?"))
        session = event.get("session_id") or session
        if event.get("type") == "transcript" and result.transcript is None:
            result.transcript, result.text = since, event.get("text", "")
        elif event.get("type") == "reply" and result.reply is None:
            result.reply = since
    return result, session


def _finishes(event: dict[str, Any], reply_audio: bool) -> bool:
    kind = event.get("type")
    if kind == "error":
        return True
    return kind == "audio_end" if reply_audio else kind == "reply"


def connect(server: Server) -> Client:
    return Client.connect(server.ws_url, headers={"Authorization": f"Bearer {server.token}"})


def first_audio(server: Server, runs: int) -> dict[str, Any]:
    """End of speech to the first reply audio frame, one utterance at a time on one connection."""
    samples, _ = read_wav(AUDIO_DIR / RECORDING)
    end = speech_end_seconds(samples)
    ws = connect(server)
    seen: list[Utterance] = []
    session = None
    try:
        for _ in range(runs + 1):
            utterance, session = stream_utterance(ws, samples, end, True, session)
            seen.append(utterance)
    finally:
        ws.close()
    counted = seen[1:]  # the first one warms up
    return {
        "speech_end_to_transcript_ms": summary([u.transcript * 1000 for u in counted if u.transcript is not None]),
        "speech_end_to_reply_ms": summary([u.reply * 1000 for u in counted if u.reply is not None]),
        "speech_end_to_first_audio_ms": summary([u.first_audio * 1000 for u in counted if u.first_audio is not None]),
        "missing_audio": sum(1 for u in counted if u.first_audio is None),
        "event_order": counted[-1].events if counted else [],
        "transcript": counted[-1].text if counted else "",
    }


def concurrency(server: Server, levels: list[int], seconds: float) -> list[dict[str, Any]]:
    """N sockets at once, each streaming utterances at real time, back to back: does every transcript keep up?"""
    rows = []
    for level in levels:
        rows.append(one_level(server, level, seconds))
        print(f"  {level} sockets: {_line(rows[-1])}", flush=True)
        if not rows[-1]["keeps_up"]:
            break
    return rows


def one_level(server: Server, level: int, seconds: float) -> dict[str, Any]:
    samples, _ = read_wav(AUDIO_DIR / RECORDING)
    end = speech_end_seconds(samples)
    latencies: list[float] = []
    counts = {"sent": 0, "lost": 0}
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def client(offset: float) -> None:
        time.sleep(offset)  # staggered, as independent speakers are
        ws = connect(server)
        session = None
        try:
            while time.perf_counter() < deadline:
                utterance, session = stream_utterance(ws, samples, end, False, session)
                with lock:
                    counts["sent"] += 1
                    if utterance.transcript is None:
                        counts["lost"] += 1
                    else:
                        latencies.append(utterance.transcript)
        finally:
            ws.close()

    threads = [threading.Thread(target=client, args=(i * 0.7,)) for i in range(level)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {
        "sockets": level, "utterances": counts["sent"], "no_transcript": counts["lost"],
        "transcript_ms": summary([s * 1000 for s in latencies]),
        "keeps_up": counts["lost"] == 0 and bool(latencies) and percentile(latencies, 95) <= KEEP_UP_SECONDS,
    }  # fmt: skip


def _line(row: dict[str, Any]) -> str:
    ms = row["transcript_ms"]
    verdict = "keeps up" if row["keeps_up"] else "falls behind"
    return (f"{row['utterances']} utterances, {row['no_transcript']} without transcript, end of speech to transcript "
            f"p50 {ms['p50']:.0f} ms p95 {ms['p95']:.0f} ms, {verdict}")  # fmt: skip


def pipeline_figures(server: Server, model: str, runs: int, levels: list[int], seconds: float) -> dict[str, Any]:
    """The HTTP round trip, the WebSocket's first audio and the concurrency levels, on one running server."""
    try:
        http = timed(f"[{model}] POST /api/audio round trips", lambda: http_round_trips(server, runs))
        print(f"  {http}")
        websocket = timed(f"[{model}] WebSocket first audio", lambda: first_audio(server, runs))
        print(f"  {websocket}")
        levels_seen = timed(f"[{model}] concurrent sockets", lambda: concurrency(server, levels, seconds))
        return {"http": http, "websocket": websocket, "concurrency": levels_seen}
    finally:
        server.layout.close()


def timed(label: str, step: Callable[[], Any]) -> Any:
    started = time.perf_counter()
    print(f"{label} ...", flush=True)
    value = step()
    print(f"{label}: done in {time.perf_counter() - started:.0f} s", flush=True)
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", choices=["base", "tiny.en"], help="Whisper model (both by default)")
    parser.add_argument("--runs", type=int, default=10, help="measured round trips per figure (after one warm-up)")
    parser.add_argument("--levels", default="1,2,3,4,6,8", help="sockets at once for the concurrency figure")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each concurrency level")
    parser.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS_DIR)
    parser.add_argument("--json", type=Path, help="also write every figure here")
    args = parser.parse_args()
    models = args.model or ["base", "tiny.en"]
    report: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "cpu": platform.processor() or platform.machine()}}
    reply_text = 'Sorry, I don\'t understand that yet. Say "help" to see what I can do.'
    report["direct"] = timed("models alone", lambda: direct_models(args.models_dir, models, args.runs, reply_text))
    for name, row in report["direct"].items():
        print(f"  {name}: {row}")
    levels = [int(level) for level in args.levels.split(",")]
    for model in models:
        report[model] = pipeline_figures(start_server(args.models_dir, model), model, args.runs, levels, args.seconds)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
