"""Audio decoding and conversion with PyAV: formats, rates and channels in; 16 kHz mono float32 out; bad input out."""

from __future__ import annotations

import io
import os
import time
import wave
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
import pytest

from adapters.audio import (
    AudioError,
    AudioTooLong,
    UndecodableAudio,
    decode_audio,
    float32_to_pcm16,
    pcm16_to_float32,
    resample,
    wav_bytes,
)
from adapters.speech import SAMPLE_RATE


def tone(frequency: float, seconds: float, rate: int, amplitude: float = 0.5) -> npt.NDArray[np.float32]:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def dominant_frequency(samples: npt.NDArray[np.float32], rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])


def wav(samples: npt.NDArray[np.float32], rate: int, channels: int = 1) -> bytes:
    interleaved = np.repeat(samples, channels) if channels > 1 else samples
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(float32_to_pcm16(interleaved))
    return buffer.getvalue()


def encoded(samples: npt.NDArray[np.float32], rate: int, container: str, codec: str) -> bytes:
    """``samples`` compressed with PyAV, the way a phone or Telegram would send them."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=container) as output:
        stream = output.add_stream(codec, rate=rate, layout="mono")
        frame_size = 960 if codec == "libopus" else 1152
        for start in range(0, len(samples), frame_size):
            piece = samples[start : start + frame_size]
            frame = av.AudioFrame.from_ndarray(piece.reshape(1, -1), format="flt", layout="mono")
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                output.mux(packet)
        for packet in stream.encode(None):
            output.mux(packet)
    return buffer.getvalue()


def test_a_wav_at_16k_mono_decodes_to_the_same_samples() -> None:
    source = tone(440, 1.0, SAMPLE_RATE)
    decoded = decode_audio(wav(source, SAMPLE_RATE), max_seconds=60)
    assert decoded.dtype == np.float32
    assert len(decoded) == len(source)
    assert np.max(np.abs(decoded - source)) < 1e-3


@pytest.mark.parametrize(("rate", "channels"), [(44_100, 2), (48_000, 1), (8_000, 1), (22_050, 2)])
def test_any_wav_rate_and_channel_count_becomes_16k_mono(rate: int, channels: int) -> None:
    decoded = decode_audio(wav(tone(440, 2.0, rate), rate, channels), max_seconds=60)
    assert decoded.ndim == 1
    assert abs(len(decoded) - 2 * SAMPLE_RATE) <= 32
    assert dominant_frequency(decoded, SAMPLE_RATE) == pytest.approx(440, abs=2)


def test_the_44k_stereo_recording_decodes_to_16k_mono(shared_audio: Path) -> None:
    path = shared_audio / "turn_on_the_living_room_lamp.wav"
    with wave.open(str(path)) as source:
        assert (source.getframerate(), source.getnchannels()) == (44_100, 2)
        seconds = source.getnframes() / source.getframerate()
    decoded = decode_audio(path.read_bytes(), max_seconds=60)
    assert decoded.ndim == 1 and decoded.dtype == np.float32
    assert len(decoded) / SAMPLE_RATE == pytest.approx(seconds, abs=0.01)
    assert 0.05 < np.max(np.abs(decoded)) <= 1.0


@pytest.mark.parametrize(("container", "codec", "rate"), [("ogg", "libopus", 48_000), ("mp3", "libmp3lame", 44_100)])
def test_compressed_formats_decode(container: str, codec: str, rate: int) -> None:
    data = encoded(tone(440, 1.5, rate), rate, container, codec)
    assert not data.startswith(b"RIFF")
    decoded = decode_audio(data, max_seconds=60)
    # Encoders add a little padding at each end.
    assert len(decoded) / SAMPLE_RATE == pytest.approx(1.5, abs=0.1)
    assert dominant_frequency(decoded, SAMPLE_RATE) == pytest.approx(440, abs=3)


@pytest.mark.parametrize(
    "data",
    [
        os.urandom(8000),
        b"",
        b"hello, this is plain text and not audio at all\n" * 50,
        b"RIFF\x00\x00\x00\x00WAVEfmt " + os.urandom(200),
        b"\x89PNG\r\n\x1a\n" + os.urandom(500),
    ],
    ids=["noise-bytes", "empty", "text", "broken-wav-header", "png"],
)
def test_bytes_that_are_not_audio_are_undecodable(data: bytes) -> None:
    with pytest.raises(UndecodableAudio):
        decode_audio(data, max_seconds=60)


def test_a_two_minute_recording_is_too_long() -> None:
    with pytest.raises(AudioTooLong, match="longer than 60 seconds"):
        decode_audio(wav(tone(300, 120.0, SAMPLE_RATE, amplitude=0.1), SAMPLE_RATE), max_seconds=60)


def test_decoding_stops_as_soon_as_the_limit_is_passed() -> None:
    ten_minutes = wav(tone(300, 600.0, SAMPLE_RATE, amplitude=0.1), SAMPLE_RATE)
    started = time.perf_counter()
    with pytest.raises(AudioTooLong):
        decode_audio(ten_minutes, max_seconds=30)
    refused_after = time.perf_counter() - started
    started = time.perf_counter()
    assert len(decode_audio(ten_minutes, max_seconds=601)) == 600 * SAMPLE_RATE
    decoded_after = time.perf_counter() - started
    # Refusing after 30 s of audio is a twentieth of the work of decoding all ten minutes.
    assert refused_after < decoded_after / 3


def test_the_limit_is_on_duration_not_bytes() -> None:
    assert len(decode_audio(wav(tone(300, 59.0, SAMPLE_RATE), SAMPLE_RATE), max_seconds=60)) == 59 * SAMPLE_RATE


def test_audio_errors_share_one_base_with_codes() -> None:
    assert issubclass(UndecodableAudio, AudioError) and issubclass(AudioTooLong, AudioError)
    assert (UndecodableAudio.code, AudioTooLong.code) == ("undecodable_audio", "audio_too_long")


def test_pcm16_round_trip() -> None:
    samples = np.array([0.0, 0.5, -0.5, 1.0, -1.0, 0.25], dtype=np.float32)
    pcm = float32_to_pcm16(samples)
    assert len(pcm) == 2 * len(samples)
    assert np.max(np.abs(pcm16_to_float32(pcm) - samples)) < 1e-4


def test_pcm16_clips_and_ignores_a_dangling_byte() -> None:
    pcm = float32_to_pcm16(np.array([2.0, -3.0], dtype=np.float32))
    assert np.frombuffer(pcm, dtype="<i2").tolist() == [32767, -32767]
    assert len(pcm16_to_float32(pcm + b"\x01")) == 2


@pytest.mark.parametrize(("from_rate", "to_rate"), [(48_000, 16_000), (22_050, 16_000), (8_000, 16_000)])
def test_resample_keeps_length_and_pitch(from_rate: int, to_rate: int) -> None:
    out = resample(tone(440, 1.0, from_rate), from_rate, to_rate)
    assert out.dtype == np.float32
    assert abs(len(out) - to_rate) <= 32
    assert dominant_frequency(out, to_rate) == pytest.approx(440, abs=2)


def test_resample_to_the_same_rate_changes_nothing() -> None:
    samples = tone(440, 0.1, SAMPLE_RATE)
    assert np.array_equal(resample(samples, SAMPLE_RATE, SAMPLE_RATE), samples)


def test_wav_bytes_is_a_complete_wav_file() -> None:
    pcm = float32_to_pcm16(tone(440, 0.5, 22_050))
    data = wav_bytes(pcm, 22_050)
    with wave.open(io.BytesIO(data)) as read:
        assert (read.getnchannels(), read.getsampwidth(), read.getframerate()) == (1, 2, 22_050)
        assert read.readframes(read.getnframes()) == pcm
    assert len(decode_audio(data, max_seconds=60)) == pytest.approx(SAMPLE_RATE / 2, abs=16)
