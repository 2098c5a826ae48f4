"""Speech synthesis with Piper (piper-tts, ONNX voices), behind ``adapters.speech.Synthesizer``.

A reply is cut into sentences (``pipeline.sentences``) and each is synthesized and yielded on its own, so the first
sentence can play while the next is made.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from adapters.models import resolve_voice
from adapters.speech import SpeechChunk
from pipeline.audio_config import TtsConfig
from pipeline.sentences import split_sentences

if TYPE_CHECKING:
    from piper import PiperVoice

log = logging.getLogger(__name__)

#: Said once per voice by ``warm_up``.
_WARM_UP_TEXT = {"zh": "你好。", "en": "Hello."}


def language_key(language: str) -> str:
    """``zh-CN``, ``zh_Hans`` and ``ZH`` all pick the ``zh`` voice."""
    return language.strip().lower().replace("_", "-").split("-")[0]


class PiperSynthesizer:
    """The configured Piper voices, each loaded once, on first use or ``warm_up``, and shared by the threads."""

    def __init__(self, config: TtsConfig, models_dir: Path) -> None:
        self.config = config
        self.models_dir = models_dir
        self._voices: dict[Path, PiperVoice] = {}
        self._lock = threading.Lock()

    def voice_for(self, language: str) -> str | None:
        """The configured voice for ``language`` when it is installed, else None."""
        voice = self.config.voices.get(language_key(language))
        if voice is None or resolve_voice(voice, self.models_dir) is None:
            return None
        return voice

    def sample_rate(self, language: str) -> int:
        """The sample rate of ``language``'s voice, from its ``.onnx.json`` (the voice need not be loaded)."""
        path = self._path(language)
        loaded = self._voices.get(path)
        if loaded is not None:
            return int(loaded.config.sample_rate)
        with open(f"{path}.json", encoding="utf-8") as handle:
            return int(json.load(handle)["audio"]["sample_rate"])

    def speak(self, text: str, language: str) -> Iterator[SpeechChunk]:
        """One chunk of 16-bit mono PCM per sentence of ``text``; ``LookupError`` when no voice speaks ``language``."""
        voice = self._loaded(self._path(language))
        rate = int(voice.config.sample_rate)
        for sentence in split_sentences(text):
            # Piper itself may cut a sentence further (it splits on espeak's clause ends); one chunk per ours.
            pcm = b"".join(chunk.audio_int16_bytes for chunk in voice.synthesize(sentence))
            if pcm:
                yield SpeechChunk(text=sentence, pcm16=pcm, sample_rate=rate)

    def warm_up(self) -> None:
        """Load every installed configured voice and have it speak once."""
        for language in self.config.voices:
            if self.voice_for(language) is None:
                log.warning("no installed voice for %s: replies in it carry text only", language)
                continue
            started = time.perf_counter()
            for _ in self.speak(_WARM_UP_TEXT.get(language, "Hello."), language):
                pass
            log.info("piper voice for %s warmed up in %.0f ms", language, (time.perf_counter() - started) * 1000)

    def _path(self, language: str) -> Path:
        voice = self.config.voices.get(language_key(language))
        path = resolve_voice(voice, self.models_dir) if voice else None
        if path is None:
            raise LookupError(f"no voice is installed for language {language!r}")
        return path

    def _loaded(self, path: Path) -> PiperVoice:
        voice = self._voices.get(path)
        if voice is not None:
            return voice
        with self._lock:
            if path not in self._voices:
                from piper import PiperVoice

                started = time.perf_counter()
                self._voices[path] = PiperVoice.load(path, use_cuda=self.config.device == "cuda")
                log.info("loaded piper voice %s in %.0f ms", path.name, (time.perf_counter() - started) * 1000)
            return self._voices[path]
