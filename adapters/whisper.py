"""Speech recognition with faster-whisper (CTranslate2 Whisper), behind ``adapters.speech.Recognizer``.

Silero VAD (the ONNX model faster-whisper ships, no torch) runs first: audio without speech never reaches Whisper.
Mandarin transcripts are always in simplified characters: Whisper runs with a simplified-Chinese prompt and OpenCC
converts whatever traditional characters remain.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from adapters.models import resolve_whisper, whisper_missing_files
from adapters.speech import SAMPLE_RATE, Transcription
from pipeline.audio_config import AsrConfig
from pipeline.errors import ConfigurationError

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

log = logging.getLogger(__name__)


class WhisperRecognizer:
    """One Whisper model, loaded once (on first use or ``warm_up``) and shared by the threads of a worker."""

    def __init__(self, config: AsrConfig, models_dir: Path, workers: int = 1) -> None:
        """``workers``: how many transcriptions may run in parallel on the one model (CTranslate2 workers)."""
        self.config = config
        self.path = resolve_whisper(config.model, models_dir)
        self._workers = max(1, workers)
        self._model: Any = None
        self._to_simplified: Any = None
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        """Load the model and run one short inference: the first real call would otherwise take seconds longer."""
        model = self._loaded()
        from faster_whisper.vad import get_speech_timestamps

        started = time.perf_counter()
        get_speech_timestamps(np.zeros(SAMPLE_RATE, dtype=np.float32))
        # The encoder, language detection and a few decoding steps each run once; that is what the first call
        # pays for (CTranslate2 sets up its kernels and buffers on first use).
        noise = np.random.default_rng(0).normal(0.0, 0.01, SAMPLE_RATE).astype(np.float32)
        language = self._language(model, noise, "auto")
        options = {"beam_size": self.config.beam_size, "temperature": 0.0, "max_new_tokens": 8}
        segments, _ = model.transcribe(noise, language=language, without_timestamps=True, **options)
        for _ in segments:
            pass
        model.forget_encoding()
        log.info("whisper %s warmed up in %.0f ms", self.config.model, (time.perf_counter() - started) * 1000)

    def transcribe(
        self,
        samples: npt.NDArray[np.float32],
        language: str | None = None,
        on_partial: Callable[[str], None] | None = None,
    ) -> Transcription:
        """See ``adapters.speech.Recognizer.transcribe``."""
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        duration = len(samples) / SAMPLE_RATE
        wanted = language or self.config.language
        timings: list[tuple[str, float]] = []
        speech = samples
        if self.config.vad.enabled:
            started = time.perf_counter()
            speech = self._speech_only(samples)
            timings.append(("vad", _ms_since(started)))
            if len(speech) == 0:
                return Transcription("", "" if wanted == "auto" else wanted, duration, 0.0, tuple(timings))
        model = self._loaded()
        started = time.perf_counter()
        try:
            return self._recognized(model, speech, wanted, duration, timings, started, on_partial)
        finally:
            # The reuse is for this call's own two encodings only: never an earlier call's audio.
            model.forget_encoding()

    def _recognized(
        self,
        model: WhisperModel,
        speech: npt.NDArray[np.float32],
        wanted: str,
        duration: float,
        timings: list[tuple[str, float]],
        started: float,
        on_partial: Callable[[str], None] | None,
    ) -> Transcription:
        code = self._language(model, speech, wanted)
        options: dict[str, Any] = {
            "language": code,
            "beam_size": self.config.beam_size,
            # A short command has no earlier text to condition on; this also stops repetition loops.
            "condition_on_previous_text": False,
            # Timestamps are not used, and predicting them costs tokens.
            "without_timestamps": True,
        }
        if code == "zh" and self.config.initial_prompt_zh:
            options["initial_prompt"] = self.config.initial_prompt_zh
        segments, _ = model.transcribe(speech, **options)
        text = ""
        for segment in segments:
            text = self._normalized(text + segment.text, code)
            if on_partial is not None:
                on_partial(text.strip())
        timings.append(("asr", _ms_since(started)))
        return Transcription(
            text=text.strip(),
            language=code,
            duration_seconds=duration,
            speech_seconds=len(speech) / SAMPLE_RATE,
            timings=tuple(timings),
        )

    def _speech_only(self, samples: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """The stretches Silero VAD takes for speech, joined; empty when there are none."""
        from faster_whisper.vad import VadOptions, collect_chunks, get_speech_timestamps

        vad = self.config.vad
        options = VadOptions(
            threshold=vad.threshold, min_speech_duration_ms=vad.min_speech_ms, speech_pad_ms=vad.speech_pad_ms
        )
        stretches = get_speech_timestamps(samples, options)
        if not stretches:
            return np.zeros(0, dtype=np.float32)
        chunks, _ = collect_chunks(samples, stretches)
        return np.concatenate(chunks).astype(np.float32, copy=False)

    def _language(self, model: WhisperModel, speech: npt.NDArray[np.float32], wanted: str) -> str:
        """The language to decode in: as asked, or detected among ``config.detect_languages``."""
        if wanted != "auto":
            return wanted
        if not model.model.is_multilingual:
            return "en"
        features = model.feature_extractor(speech)
        # Without its last frame, the window is exactly the one transcribe encodes first, so that encoding is
        # reused (``_encoder_output_reused``) instead of being done twice.
        _, _, probabilities = model.detect_language(features=features[..., :-1])
        allowed = self.config.detect_languages
        for code, _ in probabilities:  # most likely first
            if not allowed or code in allowed:
                return str(code)
        return str(probabilities[0][0])

    def _normalized(self, text: str, language: str) -> str:
        if language != "zh":
            return text
        if self._to_simplified is None:
            import opencc

            self._to_simplified = opencc.OpenCC("t2s")
        return str(self._to_simplified.convert(text))

    def _loaded(self) -> Any:
        """The model, loaded by the first caller while the others wait."""
        if self._model is not None:
            return self._model
        with self._lock:
            if self._model is None:
                missing = whisper_missing_files(self.path)
                if missing:
                    raise ConfigurationError(
                        f"the speech recognition model {self.config.model!r} is not installed: {self.path} lacks "
                        f"{', '.join(missing)}. Run `assistant models install`"
                    )
                started = time.perf_counter()
                self._model = _encoder_output_reused()(
                    str(self.path),
                    device=self.config.device,
                    compute_type=self.config.compute_type,
                    cpu_threads=self.config.threads,
                    num_workers=self._workers,
                    local_files_only=True,
                )
                log.info("loaded whisper %s from %s in %.0f ms", self.config.model, self.path, _ms_since(started))
            return self._model


@functools.cache
def _encoder_output_reused() -> type[WhisperModel]:
    """WhisperModel that keeps each thread's last encoder output for one more use.

    Detecting the language and then transcribing encodes the same 30 s window twice, and the encoder is most of
    Whisper's time on a CPU (about 0.8 s of the 1.9 s a short command took with base). If faster-whisper ever
    encodes something else the second time, the arrays differ and it is encoded again: slower, never wrong.
    """
    from faster_whisper import WhisperModel

    class EncodeOnce(WhisperModel):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._last_encoded = threading.local()

        def encode(self, features: npt.NDArray[np.float32]) -> Any:
            last = getattr(self._last_encoded, "pair", None)
            self._last_encoded.pair = None
            if last is not None and last[0].shape == features.shape and np.array_equal(last[0], features):
                return last[1]
            output = super().encode(features)
            self._last_encoded.pair = (np.array(features, copy=True), output)
            return output

        def forget_encoding(self) -> None:
            self._last_encoded.pair = None

    return EncodeOnce


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)
