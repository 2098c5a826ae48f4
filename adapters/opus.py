"""Speech as an OGG/Opus voice note (what Telegram's ``sendVoice`` shows with a waveform), encoded with PyAV."""

from __future__ import annotations

import io

import av
import numpy as np
import numpy.typing as npt

from adapters.audio import decode_audio
from adapters.speech import SAMPLE_RATE

#: Longest reply encoded, seconds; a spoken reply is far shorter.
MAX_SECONDS = 600.0


def ogg_opus(samples: npt.NDArray[np.float32], sample_rate: int = SAMPLE_RATE) -> bytes:
    """Mono float32 ``samples`` (a rate Opus takes: 8, 12, 16, 24 or 48 kHz) as an OGG/Opus file."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="ogg") as container:
        stream = container.add_stream("libopus", rate=sample_rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(samples, dtype=np.float32).reshape(1, -1), format="flt", layout="mono"
        )
        frame.sample_rate = sample_rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()


def wav_to_voice_note(wav: bytes) -> tuple[bytes, int]:
    """A WAV file (any rate, as the synthesizer writes it) as an OGG/Opus voice note, and its whole seconds."""
    samples = decode_audio(wav, MAX_SECONDS)  # 16 kHz mono, a rate Opus takes
    return ogg_opus(samples), max(1, round(len(samples) / SAMPLE_RATE))
