"""The streaming endpointer on the real Silero model: real recordings, espeak-ng speech, silence and noise."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from adapters.audio import decode_audio
from adapters.speech import SAMPLE_RATE
from adapters.vad import WINDOW, Boundary, SileroVad, SpeechBoundary
from pipeline.audio_config import VadConfig

AUDIO = Path(__file__).resolve().parents[1] / "audio"
RECORDINGS = ["living_room_light_en.wav", "living_room_light_zh.wav", "turn_on_the_living_room_lamp.wav"]
#: 20 ms, what a browser's audio worklet hands over at a time.
FRAME = 320
# Start and end only: the pause before a confirmed end has tests of its own below.
CONFIG = VadConfig(speculate_ms=0)


def recording(name: str) -> npt.NDArray[np.float32]:
    return decode_audio((AUDIO / name).read_bytes(), 60)


def espeak(text: str, tmp_path: Path) -> npt.NDArray[np.float32]:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install -y espeak-ng)")
    wav = tmp_path / f"{abs(hash(text))}.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), text], check=True, capture_output=True)
    return decode_audio(wav.read_bytes(), 60)


def trimmed(audio: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Without the silence espeak-ng puts before and after the words."""
    loud = np.flatnonzero(np.abs(audio) > 0.01)
    return audio[loud[0] : loud[-1] + 1]


def silence(seconds: float) -> npt.NDArray[np.float32]:
    return np.zeros(int(seconds * SAMPLE_RATE), dtype=np.float32)


def stream(vad: SileroVad, audio: npt.NDArray[np.float32], frame: int = FRAME, config: VadConfig = CONFIG
           ) -> list[SpeechBoundary]:  # fmt: skip
    endpointer = vad.endpointer(config)
    found: list[SpeechBoundary] = []
    for offset in range(0, len(audio), frame):
        found += endpointer.feed(audio[offset : offset + frame])
    return found


def kinds(found: list[SpeechBoundary]) -> list[Boundary]:
    return [b.kind for b in found]


@pytest.mark.parametrize("name", RECORDINGS)
def test_speech_in_each_recording_is_one_utterance(vad: SileroVad, name: str) -> None:
    audio = np.concatenate((silence(0.5), recording(name), silence(1.0)))
    found = stream(vad, audio)
    assert kinds(found) == [Boundary.SPEECH_START, Boundary.SPEECH_END], found
    start, end = found[0].seconds, found[1].seconds
    # The recordings hold speech of about a second after a short lead-in (see their README): not the padding.
    assert 0.5 <= start < 1.5
    assert start + 0.6 < end < len(audio) / SAMPLE_RATE - CONFIG.end_of_speech_ms / 1000


def test_two_utterances_separated_by_silence(vad: SileroVad, tmp_path: Path) -> None:
    first = espeak("Turn on the kitchen light", tmp_path)
    second = espeak("What time is it", tmp_path)
    audio = np.concatenate((silence(0.3), first, silence(1.5), second, silence(1.0)))
    found = stream(vad, audio)
    assert kinds(found) == [Boundary.SPEECH_START, Boundary.SPEECH_END] * 2, found
    second_begins = 0.3 + len(first) / SAMPLE_RATE + 1.5
    assert found[1].seconds < second_begins <= found[2].seconds + 0.1


def test_a_pause_shorter_than_end_of_speech_keeps_one_utterance(vad: SileroVad, tmp_path: Path) -> None:
    words = trimmed(espeak("Turn on the light", tmp_path))
    audio = np.concatenate((words, silence(0.3), words, silence(1.0)))
    assert kinds(stream(vad, audio)) == [Boundary.SPEECH_START, Boundary.SPEECH_END]


def test_a_pause_comes_before_the_end_at_the_same_place(vad: SileroVad) -> None:
    audio = np.concatenate((silence(0.5), recording("living_room_light_en.wav"), silence(1.0)))
    config = VadConfig(speculate_ms=250, end_of_speech_ms=600)
    endpointer = vad.endpointer(config)
    found: list[tuple[SpeechBoundary, int]] = []
    for offset in range(0, len(audio), FRAME):
        found += [(b, endpointer.position) for b in endpointer.feed(audio[offset : offset + FRAME])]
    assert [b.kind for b, _ in found] == [Boundary.SPEECH_START, Boundary.PAUSE, Boundary.SPEECH_END], found
    (pause, paused_at), (end, ended_at) = found[1], found[2]
    assert pause.sample == end.sample  # both name where the silence began
    # Reported once speculate_ms of silence was heard, end_of_speech_ms - speculate_ms before the end.
    assert abs((ended_at - paused_at) / SAMPLE_RATE - 0.35) <= 2 * FRAME / SAMPLE_RATE + WINDOW / SAMPLE_RATE


def test_speech_after_a_pause_resumes_the_utterance(vad: SileroVad, tmp_path: Path) -> None:
    words = trimmed(espeak("Turn on the light", tmp_path))
    audio = np.concatenate((words, silence(0.45), words, silence(1.0)))
    found = stream(vad, audio, config=VadConfig(speculate_ms=250, end_of_speech_ms=600))
    assert kinds(found) == [Boundary.SPEECH_START, Boundary.PAUSE, Boundary.RESUME, Boundary.PAUSE,
                            Boundary.SPEECH_END], found  # fmt: skip


def test_no_pause_when_speculation_is_off(vad: SileroVad) -> None:
    audio = np.concatenate((recording("living_room_light_en.wav"), silence(1.0)))
    for config in (VadConfig(speculate_ms=0), VadConfig(speculate_ms=600, end_of_speech_ms=600)):
        assert kinds(stream(vad, audio, config=config)) == [Boundary.SPEECH_START, Boundary.SPEECH_END]


@pytest.mark.parametrize("amplitude", [0.01, 0.1, 0.5])
def test_noise_is_not_speech(vad: SileroVad, amplitude: float) -> None:
    rng = np.random.default_rng(7)
    white = (rng.standard_normal(5 * SAMPLE_RATE) * amplitude).astype(np.float32)
    hum = (amplitude * np.sin(2 * np.pi * 50 * np.arange(5 * SAMPLE_RATE) / SAMPLE_RATE)).astype(np.float32)
    assert stream(vad, np.clip(white, -1, 1)) == []
    assert stream(vad, hum) == []


def test_silence_is_not_speech(vad: SileroVad) -> None:
    assert stream(vad, silence(5)) == []


def test_speech_shorter_than_min_speech_is_ignored(vad: SileroVad) -> None:
    audio = recording("living_room_light_en.wav")
    found = stream(vad, audio)
    onset = found[0].sample
    snippet = audio[onset : onset + WINDOW * 3]  # 96 ms of speech: a click, as far as the endpointer knows
    assert stream(vad, np.concatenate((silence(1), snippet, silence(1)))) == []
    assert stream(vad, np.concatenate((silence(1), snippet, silence(1))), config=VadConfig(min_speech_ms=60))


def test_frame_size_does_not_change_the_result(vad: SileroVad) -> None:
    audio = np.concatenate((silence(0.4), recording("living_room_light_zh.wav"), silence(1.0)))
    reference = stream(vad, audio, frame=len(audio))
    assert kinds(reference) == [Boundary.SPEECH_START, Boundary.SPEECH_END]
    for frame in (160, 320, 441, 512, 1000, 4096):
        assert stream(vad, audio, frame=frame) == reference


def test_end_of_speech_follows_the_setting(vad: SileroVad) -> None:
    audio = np.concatenate((recording("living_room_light_en.wav"), silence(2.0)))
    for end_ms in (300, 1200):
        endpointer = vad.endpointer(VadConfig(end_of_speech_ms=end_ms, speculate_ms=0))
        for offset in range(0, len(audio), FRAME):
            ends = [b for b in endpointer.feed(audio[offset : offset + FRAME]) if b.kind == Boundary.SPEECH_END]
            if ends:
                break
        assert ends, f"no end of speech with end_of_speech_ms={end_ms}"
        # Said once end_of_speech_ms of silence were heard after the speech, to the window.
        heard_silence = (endpointer.position - ends[0].sample) / SAMPLE_RATE
        assert abs(heard_silence - end_ms / 1000) <= WINDOW / SAMPLE_RATE


def test_cost_per_second_of_audio(vad: SileroVad, tmp_path: Path) -> None:
    audio = np.concatenate([recording(name) for name in RECORDINGS] + [silence(5)])
    seconds = len(audio) / SAMPLE_RATE
    best = float("inf")
    for _ in range(3):
        endpointer = vad.endpointer(CONFIG)
        started = time.perf_counter()
        for offset in range(0, len(audio), FRAME):
            endpointer.feed(audio[offset : offset + FRAME])
        best = min(best, time.perf_counter() - started)
    per_second_ms = best / seconds * 1000
    print(f"\nVAD: {per_second_ms:.2f} ms of CPU per second of audio in 20 ms frames ({seconds:.1f} s of audio)")
    # One core keeps up with well over a hundred streams at this cost.
    assert per_second_ms < 10
