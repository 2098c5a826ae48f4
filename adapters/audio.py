"""Audio decoding and conversion with PyAV: any container or codec FFmpeg reads, to 16 kHz mono float32.

Kept free of faster-whisper so the gateway, which decodes uploads to check them, stays light.
"""

from __future__ import annotations

import io
import wave
from collections.abc import Iterator

import av
import av.audio.resampler
import numpy as np
import numpy.typing as npt

from adapters.speech import SAMPLE_RATE
from pipeline.errors import AssistantError

#: Full scale of 16-bit PCM.
_PCM16_SCALE = 32768.0


class AudioError(AssistantError):
    """Audio that cannot be used; the edges answer with the subclass's status."""

    code = "bad_audio"


class UndecodableAudio(AudioError):
    """Not audio, or audio too broken to decode (HTTP 415)."""

    code = "undecodable_audio"


class AudioTooLong(AudioError):
    """Longer than the configured limit (HTTP 413)."""

    code = "audio_too_long"


def decode_audio(data: bytes, max_seconds: float) -> npt.NDArray[np.float32]:
    """``data`` in any format PyAV reads (WAV at any rate and channel count, OGG/Opus, MP3, ...) as 16 kHz mono.

    Raises ``UndecodableAudio`` when it is not audio and ``AudioTooLong`` as soon as more than ``max_seconds``
    have been decoded, without decoding the rest.
    """
    limit = int(max_seconds * SAMPLE_RATE)
    pieces: list[npt.NDArray[np.float32]] = []
    decoded = 0
    try:
        with av.open(io.BytesIO(data), mode="r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise UndecodableAudio("the data holds no audio stream")
            resampler = av.audio.resampler.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
            for frame in _frames(container):
                for out in resampler.resample(frame):
                    samples = np.asarray(out.to_ndarray(), dtype=np.float32).reshape(-1)
                    decoded += len(samples)
                    if decoded > limit:
                        raise AudioTooLong(f"the audio is longer than {max_seconds:g} seconds")
                    pieces.append(samples)
    except AudioError:
        raise
    except (av.error.FFmpegError, ValueError, OSError) as exc:
        # FFmpeg's own words ("[Errno 1094995529] Invalid data found ...") tell a client nothing more.
        raise UndecodableAudio("the data is not audio in a format that decodes (WAV, OGG/Opus, MP3, WebM)") from exc
    if not pieces:
        raise UndecodableAudio("no audio could be decoded from the data")
    return np.concatenate(pieces).astype(np.float32, copy=False)


def _frames(container: av.container.InputContainer) -> Iterator[av.AudioFrame | None]:
    """The audio frames, skipping damaged ones, then None to flush the resampler."""
    frames = container.decode(audio=0)
    while True:
        try:
            frame = next(frames)
        except StopIteration:
            break
        except av.error.InvalidDataError:
            # One damaged packet in an otherwise good stream (common in OGG from phones): skip it.
            continue
        # The resampler checks timestamps for continuity, which some muxers break; the order is enough.
        frame.pts = None
        yield frame
    yield None


def pcm16_to_float32(pcm16: bytes) -> npt.NDArray[np.float32]:
    """16-bit little-endian PCM as float32 samples in [-1, 1)."""
    usable = len(pcm16) - len(pcm16) % 2
    return np.frombuffer(pcm16[:usable], dtype="<i2").astype(np.float32) / _PCM16_SCALE


def float32_to_pcm16(samples: npt.NDArray[np.float32]) -> bytes:
    """Float samples (clipped to [-1, 1]) as 16-bit little-endian PCM."""
    scaled = np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0) * (_PCM16_SCALE - 1)
    return scaled.astype("<i2").tobytes()


def resample(samples: npt.NDArray[np.float32], from_rate: int, to_rate: int) -> npt.NDArray[np.float32]:
    """Mono float32 ``samples`` at ``from_rate`` converted to ``to_rate`` (FFmpeg's resampler, band-limited)."""
    if from_rate <= 0 or to_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {from_rate} and {to_rate}")
    samples = np.ascontiguousarray(samples, dtype=np.float32).reshape(-1)
    if from_rate == to_rate or len(samples) == 0:
        return samples
    frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="flt", layout="mono")
    frame.sample_rate = from_rate
    resampler = av.audio.resampler.AudioResampler(format="flt", layout="mono", rate=to_rate)
    out = [piece.to_ndarray().reshape(-1) for chunk in (frame, None) for piece in resampler.resample(chunk)]
    return np.concatenate(out).astype(np.float32, copy=False) if out else np.zeros(0, dtype=np.float32)


def wav_bytes(pcm16: bytes, sample_rate: int) -> bytes:
    """A complete mono 16-bit WAV file around ``pcm16``."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(pcm16)
    return buffer.getvalue()
