"""The audio kept for an utterance on ``/audio`` and the stream's clock that the echo guard reads."""

from __future__ import annotations

import numpy as np

from adapters.speech import SAMPLE_RATE
from ingress.voice_ws import CLOCK_RESET_SECONDS, PRE_ROLL_SECONDS, AudioStream

FRAME = 320  # 20 ms


def stream() -> AudioStream:
    return AudioStream(format="pcm16", sample_rate=SAMPLE_RATE, reply_audio=True, language=None, endpointer=None,
                       max_samples=60 * SAMPLE_RATE, pad=3200)  # fmt: skip


def frames(count: int, first: int = 0) -> list[np.ndarray]:
    """Frames whose samples hold their own stream position, to check what is cut."""
    return [np.arange(first + i * FRAME, first + (i + 1) * FRAME, dtype=np.float32) for i in range(count)]


def test_a_real_time_stream_keeps_its_clock_through_a_stall_of_the_server() -> None:
    audio = stream()
    start = 100.0
    for index, frame in enumerate(frames(100)):
        arrived = start + (index + 1) * FRAME / SAMPLE_RATE + 0.003 * (index % 3)  # network jitter
        if 50 <= index < 60:
            arrived = start + 61 * FRAME / SAMPLE_RATE + 0.001 * index  # the server caught up on ten frames at once
        audio.append(frame, arrived)
    # Sample 55 * FRAME was sent 1.1 s in, and reached the server then, whatever the server was doing.
    assert abs(audio.arrival_of(55 * FRAME) - (start + 55 * FRAME / SAMPLE_RATE)) < 0.001


def test_a_pause_of_the_client_starts_a_new_clock() -> None:
    audio = stream()
    for index, frame in enumerate(frames(10)):
        audio.append(frame, 10.0 + (index + 1) * FRAME / SAMPLE_RATE)
    pause = CLOCK_RESET_SECONDS + 1.0
    resumed = 10.0 + 10 * FRAME / SAMPLE_RATE + pause
    for index, frame in enumerate(frames(5, first=10 * FRAME)):
        audio.append(frame, resumed + (index + 1) * FRAME / SAMPLE_RATE)
    assert abs(audio.arrival_of(12 * FRAME) - (resumed + 2 * FRAME / SAMPLE_RATE)) < 0.001


def test_cut_returns_exactly_the_samples_asked_for() -> None:
    audio = stream()
    for frame in frames(10):
        audio.append(frame, 0.0)
    cut = audio.cut(500, 2100)
    assert np.array_equal(cut, np.arange(500, 2100, dtype=np.float32))


def test_between_utterances_only_the_pre_roll_is_kept() -> None:
    audio = stream()
    for frame in frames(400):  # 8 s
        audio.append(frame, 0.0)
        audio.trim()
    kept = audio.position - audio.kept_start()
    assert PRE_ROLL_SECONDS * SAMPLE_RATE <= kept < PRE_ROLL_SECONDS * SAMPLE_RATE + FRAME
    audio.utterance_from = audio.position
    for frame in frames(400, first=audio.position):  # an utterance: everything from its start is kept
        audio.append(frame, 0.0)
        audio.trim()
    assert audio.kept_start() <= audio.utterance_from
