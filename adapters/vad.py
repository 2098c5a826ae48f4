"""Streaming end-of-speech detection on Silero VAD, the ONNX model faster-whisper ships, run with onnxruntime.

One ``SileroVad`` per process (the model); one ``Endpointer`` per audio stream (its state). The endpointer is fed
16 kHz float32 frames of any size, runs the model once per new 512-sample window, carries the model's recurrent
state from call to call, and says where speech starts and where an utterance ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from adapters.speech import SAMPLE_RATE
from pipeline.audio_config import VadConfig

if TYPE_CHECKING:
    import numpy.typing as npt

#: Samples the model judges at a time at 16 kHz (32 ms).
WINDOW = 512
#: Samples of the previous window the model sees in front of each window.
CONTEXT = 64
#: Below ``threshold`` minus this, a window counts as silence (between the two, the state holds), as in Silero's
#: own iterator: speech that fades for a moment neither ends nor starts anything.
HYSTERESIS = 0.15
#: Silence inside a not yet confirmed start that still counts as the same start (a consonant's short pause).
START_GAP_MS = 100
#: The model file inside the faster-whisper package.
MODEL_FILE = "silero_vad_v6.onnx"


def default_model_path() -> Path:
    """Silero VAD as faster-whisper ships it (its ``assets`` folder)."""
    from faster_whisper.vad import get_assets_path

    return Path(get_assets_path()) / MODEL_FILE


class SileroVad:
    """The Silero model, loaded once per process and shared by every stream's ``Endpointer``.

    onnxruntime sessions may run from several threads at once; each call is one operator thread, so many
    streams cost many small calls rather than threads fighting over the cores.
    """

    def __init__(self, path: Path | None = None) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.inter_op_num_threads = 1
        options.intra_op_num_threads = 1
        options.log_severity_level = 4
        self._session = onnxruntime.InferenceSession(
            str(path or default_model_path()), sess_options=options, providers=["CPUExecutionProvider"]
        )

    def run(
        self, windows: npt.NDArray[np.float32], state: tuple[Any, Any]
    ) -> tuple[npt.NDArray[np.float32], tuple[Any, Any]]:
        """Speech probabilities of consecutive ``windows`` (each CONTEXT + WINDOW samples) and the state after them."""
        h, c = state
        probabilities, h, c = self._session.run(None, {"input": windows, "h": h, "c": c})
        return np.asarray(probabilities, dtype=np.float32).reshape(-1), (h, c)

    def endpointer(self, config: VadConfig) -> Endpointer:
        """A fresh endpointer for one audio stream."""
        return Endpointer(self, config)


class Boundary(StrEnum):
    """What an endpointer found."""

    #: Speech began (confirmed once it lasted ``min_speech_ms``).
    SPEECH_START = "speech_start"
    #: ``end_of_speech_ms`` of silence followed speech: the utterance is over.
    SPEECH_END = "speech_end"
    #: ``speculate_ms`` of silence followed speech: the utterance may be over (the end is not confirmed yet).
    PAUSE = "pause"
    #: Speech came back after a ``PAUSE``, before the end: the utterance goes on.
    RESUME = "resume"


@dataclass(frozen=True, slots=True)
class SpeechBoundary:
    """A place in the stream where speech started or an utterance ended."""

    kind: Boundary
    #: Position in samples from the first sample fed: the first window of the speech, or the first window of
    #: the silence that ended it.
    sample: int

    @property
    def seconds(self) -> float:
        return self.sample / SAMPLE_RATE


class Endpointer:
    """The speech boundaries of one 16 kHz stream, as its frames arrive; not thread-safe (one per stream)."""

    def __init__(self, model: SileroVad, config: VadConfig) -> None:
        self._model = model
        self.threshold = config.threshold
        self._silence_below = max(config.threshold - HYSTERESIS, 0.01)
        self._min_speech = _samples(config.min_speech_ms)
        self._end_silence = _samples(config.end_of_speech_ms)
        speculate = config.speculate_ms if 0 < config.speculate_ms < config.end_of_speech_ms else 0
        self._pause_silence = _samples(speculate)
        self._paused = False
        self._start_gap = _samples(START_GAP_MS)
        self._pending = np.zeros(0, dtype=np.float32)
        self._context = np.zeros(CONTEXT, dtype=np.float32)
        self._state = (np.zeros((1, 1, 128), dtype=np.float32), np.zeros((1, 1, 128), dtype=np.float32))
        #: Samples judged so far (whole windows).
        self.position = 0
        #: True between a SPEECH_START and its SPEECH_END.
        self.in_speech = False
        self._candidate: int | None = None
        self._voiced = 0
        self._gap = 0
        self._silence_from: int | None = None

    def feed(self, samples: npt.NDArray[np.float32]) -> list[SpeechBoundary]:
        """Take the next ``samples`` (16 kHz mono float32, any length); the boundaries found in them, in order."""
        audio = np.concatenate((self._pending, np.asarray(samples, dtype=np.float32).reshape(-1)))
        whole = len(audio) - len(audio) % WINDOW
        self._pending = audio[whole:]
        if whole == 0:
            return []
        windows = audio[:whole].reshape(-1, WINDOW)
        contexts = np.concatenate((self._context[None, :], windows[:-1, -CONTEXT:]))
        self._context = windows[-1, -CONTEXT:].copy()
        probabilities, self._state = self._model.run(np.concatenate((contexts, windows), axis=1), self._state)
        found = []
        for probability in probabilities:
            boundary = self._judge(float(probability))
            self.position += WINDOW
            if boundary is not None:
                found.append(boundary)
        return found

    def end_speech(self) -> None:
        """Forget the speech in progress (its utterance was cut off elsewhere): what follows must start anew."""
        self.in_speech = False
        self._candidate = None
        self._voiced = self._gap = 0
        self._silence_from = None
        self._paused = False

    def _judge(self, probability: float) -> SpeechBoundary | None:
        start = self.position
        if self.in_speech:
            if probability >= self.threshold:
                self._silence_from = None
                if self._paused:
                    self._paused = False
                    return SpeechBoundary(Boundary.RESUME, start)
            elif probability < self._silence_below:
                if self._silence_from is None:
                    self._silence_from = start
                silence = start + WINDOW - self._silence_from
                if silence >= self._end_silence:
                    end = self._silence_from
                    self.end_speech()
                    return SpeechBoundary(Boundary.SPEECH_END, end)
                if self._pause_silence and not self._paused and silence >= self._pause_silence:
                    self._paused = True
                    return SpeechBoundary(Boundary.PAUSE, self._silence_from)
            return None
        if probability >= self.threshold:
            if self._candidate is None:
                self._candidate = start
                self._voiced = 0
            self._voiced += WINDOW
            self._gap = 0
            if self._voiced >= self._min_speech:
                began = self._candidate
                self._candidate = None
                self.in_speech = True
                return SpeechBoundary(Boundary.SPEECH_START, began)
        elif self._candidate is not None and probability < self._silence_below:
            self._gap += WINDOW
            if self._gap > self._start_gap:
                self._candidate = None  # a click or a breath, not speech
        return None


def _samples(milliseconds: float) -> int:
    return int(milliseconds * SAMPLE_RATE / 1000)
