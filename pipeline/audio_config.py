"""The voice settings: ``config/audio.yml`` (the shape users already write), with environment overrides.

``config/audio.yml``::

    pipeline:
      - type: asr
        engine: faster-whisper
        model: base          # a size name or a local CTranslate2 folder
        language: auto       # or zh, en
      - type: tts
        engine: piper
        voices: {en: en_US-joe-medium, zh: zh_CN-huayan-medium}   # names or .onnx paths

Parsing lives in ``AudioConfig.from_mapping``; the YAML is read at the entry points (``assistant.config``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True, slots=True)
class VadConfig:
    """Silero voice activity detection, before recognition and to end an utterance on the WebSocket."""

    #: False: recognise the whole clip, silence and all.
    enabled: bool = True
    #: Speech probability above which a 32 ms window counts as speech.
    threshold: float = 0.5
    #: Silence, in milliseconds, that ends an utterance on the WebSocket.
    end_of_speech_ms: int = 600
    #: Speech shorter than this (milliseconds) is taken for noise.
    min_speech_ms: int = 150
    #: Milliseconds of audio kept on each side of the speech found.
    speech_pad_ms: int = 200


@dataclass(frozen=True, slots=True)
class AsrConfig:
    """Speech recognition (``type: asr``)."""

    engine: str = "faster-whisper"
    #: A model name from ``assistant models list`` (``base``, ``tiny.en``) or a local CTranslate2 folder.
    model: str = "base"
    #: ``auto`` detects the language; ``zh`` or ``en`` fixes it.
    language: str = "auto"
    #: ``cpu`` or ``cuda``.
    device: str = "cpu"
    #: CTranslate2 compute type; int8 is fastest on a CPU.
    compute_type: str = "int8"
    #: CPU threads per model (0: CTranslate2's default).
    threads: int = 1
    #: Beam width; 1 (greedy) is several times faster on a CPU for short commands.
    beam_size: int = 1
    #: The prompt that keeps Mandarin in simplified characters.
    initial_prompt_zh: str = "以下是普通话的句子。"
    vad: VadConfig = field(default_factory=VadConfig)


@dataclass(frozen=True, slots=True)
class TtsConfig:
    """Speech synthesis (``type: tts``)."""

    engine: str = "piper"
    #: Voice per language: a name from ``assistant models list`` or a path to a Piper ``.onnx`` file.
    voices: dict[str, str] = field(default_factory=lambda: {"en": "en_US-joe-medium", "zh": "zh_CN-huayan-medium"})
    #: ``cpu`` or ``cuda``.
    device: str = "cpu"


@dataclass(frozen=True, slots=True)
class AudioConfig:
    """Everything about speech in and speech out."""

    #: Where ``assistant models install`` puts models and where names resolve (``MODELS_DIR``).
    models_dir: Path = Path("models")
    asr: AsrConfig = field(default_factory=AsrConfig)
    tts: TtsConfig = field(default_factory=TtsConfig)
    #: Largest audio upload, bytes (``MAX_AUDIO_BYTES``): 413 above it.
    max_audio_bytes: int = 10 * 1024 * 1024
    #: Longest utterance, seconds (``MAX_AUDIO_SECONDS``): 413 above it.
    max_audio_seconds: float = 60.0
    #: How long uploaded audio and synthesized replies stay in blob storage, seconds (``AUDIO_TTL_SECONDS``).
    audio_ttl_seconds: int = 3600
    #: Milliseconds after the reply's speech starts during which incoming audio is taken for its echo and
    #: does not interrupt it.
    echo_guard_ms: int = 300
