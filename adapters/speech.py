"""The speech engines as the stages see them: a recognizer and a synthesizer behind two small interfaces.

The real ones (faster-whisper, piper) live in ``adapters.whisper`` and ``adapters.piper``; they are built once
per worker process, on first use, by the composition root.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

#: Every recognizer takes 16 kHz mono audio, the rate Whisper and Silero VAD work at.
SAMPLE_RATE = 16_000


@dataclass(frozen=True, slots=True)
class Transcription:
    """What a recognizer heard in one utterance."""

    #: The words, in simplified characters when ``language`` is ``zh``; empty when no speech was found.
    text: str
    #: ``zh`` or ``en`` (or another Whisper language code), detected or as asked; empty when no speech was found
    #: and the language was to be detected.
    language: str
    #: Seconds of audio given.
    duration_seconds: float
    #: Seconds of it that the voice activity detector took for speech (0.0: none, and ``text`` is empty).
    speech_seconds: float
    #: Milliseconds per step, in order: ``(("vad", 12.0), ("asr", 980.0))``.
    timings: tuple[tuple[str, float], ...] = ()


class Recognizer(Protocol):
    """Speech to text."""

    def transcribe(
        self,
        samples: npt.NDArray[np.float32],
        language: str | None = None,
        on_partial: Callable[[str], None] | None = None,
    ) -> Transcription:
        """Transcribe 16 kHz mono float32 ``samples`` in ``language`` (None: the configured one, or detect);
        ``on_partial`` is called with the text recognised so far as each segment is decoded."""
        ...

    def warm_up(self) -> None:
        """Load the model and run it once, so the first utterance does not pay for it."""
        ...


@dataclass(frozen=True, slots=True)
class SpeechChunk:
    """Synthesized audio for one sentence of a reply."""

    #: The sentence spoken.
    text: str
    #: 16-bit little-endian mono PCM.
    pcm16: bytes
    #: Samples per second of ``pcm16``.
    sample_rate: int


class Synthesizer(Protocol):
    """Text to speech, a sentence at a time so the first one can be played while the rest is made."""

    def voice_for(self, language: str) -> str | None:
        """The name of the installed voice that speaks ``language``, or None when there is none."""
        ...

    def sample_rate(self, language: str) -> int:
        """The sample rate of ``language``'s voice."""
        ...

    def speak(self, text: str, language: str) -> Iterator[SpeechChunk]:
        """``text`` spoken in ``language``, sentence by sentence; raises ``LookupError`` without a voice."""
        ...

    def warm_up(self) -> None:
        """Load the installed voices and speak once, so the first reply does not pay for it."""
        ...
