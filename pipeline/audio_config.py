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
``config/audio.yml`` in the repository lists every key with its default.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar

from pipeline.errors import ConfigurationError

T = TypeVar("T")

#: Compute types CTranslate2 accepts.
COMPUTE_TYPES = frozenset(
    {"default", "auto", "int8", "int8_float32", "int8_float16", "int8_bfloat16", "int16", "float16", "bfloat16",
     "float32"}
)  # fmt: skip
DEVICES = frozenset({"cpu", "cuda", "auto"})
_LANGUAGE = re.compile(r"^[a-z]{2,3}$")


@dataclass(frozen=True, slots=True)
class VadConfig:
    """Silero voice activity detection, before recognition and to end an utterance on the WebSocket."""

    #: False: recognise the whole clip, silence and all.
    enabled: bool = True
    #: Speech probability above which a 32 ms window counts as speech.
    threshold: float = 0.5
    #: Silence, in milliseconds, that ends an utterance on the WebSocket.
    end_of_speech_ms: int = 600
    #: Silence, in milliseconds, after which the WebSocket edge already sends the utterance to be recognised, while
    #: it waits for ``end_of_speech_ms`` to confirm the end; speech that resumes first withdraws it. The model's
    #: time then overlaps the wait. 0 (or ``end_of_speech_ms`` and above): recognise only after the end.
    speculate_ms: int = 250
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
    #: With ``auto``, the likeliest of these languages is taken (the ones the assistant answers in); empty: any.
    detect_languages: tuple[str, ...] = ("en", "zh")
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

    @classmethod
    def from_mapping(
        cls, data: Mapping[str, Any] | None, env: Mapping[str, str], source: str = "audio.yml"
    ) -> AudioConfig:
        """Settings from ``config/audio.yml``'s parsed content (None: no file), then the environment's overrides.

        Raises ``ConfigurationError`` naming the key (``pipeline[0].beam_size``, ``ASR_BEAM_SIZE``) of a bad value.
        """
        data = {} if data is None else data
        if not isinstance(data, Mapping):
            raise ConfigurationError(f"{source} must be a mapping with a 'pipeline' list")
        _no_unknown(data, {"pipeline", "models_dir", "max_audio_bytes", "max_audio_seconds", "audio_ttl_seconds",
                           "echo_guard_ms"}, source)  # fmt: skip
        asr, tts = _parse_pipeline(data.get("pipeline"), source)
        defaults = cls()
        config = cls(
            models_dir=_path(data.get("models_dir", defaults.models_dir), f"{source} models_dir"),
            asr=asr,
            tts=tts,
            max_audio_bytes=_number(
                data.get("max_audio_bytes", defaults.max_audio_bytes), f"{source} max_audio_bytes", int, minimum=1
            ),
            max_audio_seconds=_number(
                data.get("max_audio_seconds", defaults.max_audio_seconds),
                f"{source} max_audio_seconds",
                float,
                minimum=0.1,
            ),
            audio_ttl_seconds=_number(
                data.get("audio_ttl_seconds", defaults.audio_ttl_seconds), f"{source} audio_ttl_seconds", int, minimum=1
            ),
            echo_guard_ms=_number(
                data.get("echo_guard_ms", defaults.echo_guard_ms), f"{source} echo_guard_ms", int, minimum=0
            ),
        )
        return _with_env(config, env)


def _parse_pipeline(entries: Any, source: str) -> tuple[AsrConfig, TtsConfig]:
    asr, tts = AsrConfig(), TtsConfig()
    if entries is None:
        return asr, tts
    if not isinstance(entries, list):
        raise ConfigurationError(f"{source} pipeline must be a list of stages like {{type: asr, model: base}}")
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        where = f"{source} pipeline[{index}]"
        if not isinstance(entry, Mapping):
            raise ConfigurationError(f"{where} must be a mapping with a 'type' (asr or tts)")
        kind = entry.get("type")
        if kind not in ("asr", "tts"):
            raise ConfigurationError(f"{where}.type must be asr or tts, got {kind!r}")
        if kind in seen:
            raise ConfigurationError(f"{where}: a second {kind} stage; give each type once")
        seen.add(kind)
        if kind == "asr":
            asr = _parse_asr(entry, where)
        else:
            tts = _parse_tts(entry, where)
    return asr, tts


def _parse_asr(entry: Mapping[str, Any], where: str) -> AsrConfig:
    allowed = {f.name for f in fields(AsrConfig)} | {"type"}
    _no_unknown(entry, allowed, where)
    base = AsrConfig()
    engine = _text(entry.get("engine", base.engine), f"{where}.engine")
    if engine != "faster-whisper":
        raise ConfigurationError(f"{where}.engine must be faster-whisper, got {engine!r}")
    return AsrConfig(
        engine=engine,
        model=_text(entry.get("model", base.model), f"{where}.model"),
        language=_language(entry.get("language", base.language), f"{where}.language"),
        detect_languages=_languages(
            entry.get("detect_languages", list(base.detect_languages)), f"{where}.detect_languages"
        ),
        device=_choice(entry.get("device", base.device), DEVICES, f"{where}.device"),
        compute_type=_choice(entry.get("compute_type", base.compute_type), COMPUTE_TYPES, f"{where}.compute_type"),
        threads=_number(entry.get("threads", base.threads), f"{where}.threads", int, minimum=0),
        beam_size=_number(entry.get("beam_size", base.beam_size), f"{where}.beam_size", int, minimum=1),
        initial_prompt_zh=_text(
            entry.get("initial_prompt_zh", base.initial_prompt_zh), f"{where}.initial_prompt_zh", allow_empty=True
        ),
        vad=_parse_vad(entry.get("vad"), f"{where}.vad"),
    )


def _parse_vad(value: Any, where: str) -> VadConfig:
    base = VadConfig()
    if value is None:
        return base
    if isinstance(value, bool):
        # ``vad: false`` turns it off with the other values left as they are.
        return replace(base, enabled=value)
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"{where} must be true, false or a mapping like {{enabled: true, threshold: 0.5}}")
    _no_unknown(value, {f.name for f in fields(VadConfig)}, where)
    threshold = _number(value.get("threshold", base.threshold), f"{where}.threshold", float, minimum=0.01)
    if threshold >= 1:
        raise ConfigurationError(f"{where}.threshold must be below 1, got {threshold!r}")
    return VadConfig(
        enabled=_bool(value.get("enabled", base.enabled), f"{where}.enabled"),
        threshold=threshold,
        end_of_speech_ms=_number(
            value.get("end_of_speech_ms", base.end_of_speech_ms), f"{where}.end_of_speech_ms", int, minimum=1
        ),
        speculate_ms=_number(value.get("speculate_ms", base.speculate_ms), f"{where}.speculate_ms", int, minimum=0),
        min_speech_ms=_number(value.get("min_speech_ms", base.min_speech_ms), f"{where}.min_speech_ms", int, minimum=0),
        speech_pad_ms=_number(value.get("speech_pad_ms", base.speech_pad_ms), f"{where}.speech_pad_ms", int, minimum=0),
    )


def _parse_tts(entry: Mapping[str, Any], where: str) -> TtsConfig:
    _no_unknown(entry, {"type", "engine", "voices", "voice", "language", "device"}, where)
    base = TtsConfig()
    engine = _text(entry.get("engine", base.engine), f"{where}.engine")
    if engine != "piper":
        raise ConfigurationError(f"{where}.engine must be piper, got {engine!r}")
    if "voices" in entry and "voice" in entry:
        raise ConfigurationError(f"{where}: give either voice (one voice) or voices (one per language), not both")
    if "voice" in entry:
        voice = _text(entry["voice"], f"{where}.voice")
        language = _language(entry.get("language", voice_language(voice)), f"{where}.language")
        voices = {language: voice}
    else:
        if "language" in entry:
            raise ConfigurationError(f"{where}.language goes with voice (one voice); voices names its languages")
        voices = _voices(entry.get("voices", base.voices), f"{where}.voices")
    return TtsConfig(engine=engine, voices=voices, device=_choice(entry.get("device", base.device), DEVICES,
                                                                       f"{where}.device"))  # fmt: skip


def voice_language(voice: str) -> str:
    """The language a Piper voice name starts with (``zh_CN-huayan-medium`` -> ``zh``); ``en`` when it names none."""
    name = Path(voice).name
    match = re.match(r"^([a-z]{2,3})[_-]", name)
    return match.group(1) if match else "en"


def _with_env(config: AudioConfig, env: Mapping[str, str]) -> AudioConfig:
    """The environment's overrides: one variable per setting people change per machine or container."""

    def get(name: str) -> str | None:
        value = env.get(name)
        return value.strip() if value is not None and value.strip() != "" else None

    asr = config.asr
    if (value := get("ASR_MODEL")) is not None:
        asr = replace(asr, model=value)
    if (value := get("ASR_LANGUAGE")) is not None:
        asr = replace(asr, language=_language(value, "ASR_LANGUAGE"))
    if (value := get("ASR_DEVICE")) is not None:
        asr = replace(asr, device=_choice(value, DEVICES, "ASR_DEVICE"))
    if (value := get("ASR_COMPUTE_TYPE")) is not None:
        asr = replace(asr, compute_type=_choice(value, COMPUTE_TYPES, "ASR_COMPUTE_TYPE"))
    if (value := get("ASR_THREADS")) is not None:
        asr = replace(asr, threads=_number(value, "ASR_THREADS", int, minimum=0))
    if (value := get("ASR_BEAM_SIZE")) is not None:
        asr = replace(asr, beam_size=_number(value, "ASR_BEAM_SIZE", int, minimum=1))
    if (value := get("ASR_VAD")) is not None:
        asr = replace(asr, vad=replace(asr.vad, enabled=_bool(value, "ASR_VAD")))
    tts = config.tts
    if (value := get("TTS_VOICES")) is not None:
        tts = replace(tts, voices=_voices_from_text(value, "TTS_VOICES"))
    changes: dict[str, Any] = {"asr": asr, "tts": tts}
    if (value := get("MODELS_DIR")) is not None:
        changes["models_dir"] = Path(value).expanduser()
    if (value := get("MAX_AUDIO_BYTES")) is not None:
        changes["max_audio_bytes"] = _number(value, "MAX_AUDIO_BYTES", int, minimum=1)
    if (value := get("MAX_AUDIO_SECONDS")) is not None:
        changes["max_audio_seconds"] = _number(value, "MAX_AUDIO_SECONDS", float, minimum=0.1)
    if (value := get("AUDIO_TTL_SECONDS")) is not None:
        changes["audio_ttl_seconds"] = _number(value, "AUDIO_TTL_SECONDS", int, minimum=1)
    if (value := get("ECHO_GUARD_MS")) is not None:
        changes["echo_guard_ms"] = _number(value, "ECHO_GUARD_MS", int, minimum=0)
    return replace(config, **changes)


def _no_unknown(data: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(str(key) for key in data if key not in allowed)
    if unknown:
        raise ConfigurationError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(allowed))})")


def _text(value: Any, key: str, allow_empty: bool = False) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ConfigurationError(f"{key} must be text, got {value!r}")
    text = str(value).strip()
    if not text and not allow_empty:
        raise ConfigurationError(f"{key} must not be empty")
    return text


def _path(value: Any, key: str) -> Path:
    return value if isinstance(value, Path) else Path(_text(value, key)).expanduser()


def _choice(value: Any, choices: frozenset[str], key: str) -> str:
    text = _text(value, key).lower()
    if text not in choices:
        raise ConfigurationError(f"{key} must be one of {', '.join(sorted(choices))}; got {value!r}")
    return text


def _language(value: Any, key: str) -> str:
    text = _text(value, key).lower()
    if text != "auto" and not _LANGUAGE.match(text):
        raise ConfigurationError(f"{key} must be auto or a language code such as zh or en; got {value!r}")
    return text


def _languages(value: Any, key: str) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise ConfigurationError(f"{key} must be a list of language codes such as [en, zh]; got {value!r}")
    codes = tuple(_language(item, key) for item in items if str(item).strip())
    if "auto" in codes:
        raise ConfigurationError(f"{key} lists language codes; auto is not one")
    return codes


def _voices(value: Any, key: str) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"{key} must map languages to voices, like {{en: en_US-joe-medium}}; got {value!r}")
    voices: dict[str, str] = {}
    for language, voice in value.items():
        code = _language(language, f"{key} (language {language!r})")
        if code == "auto":
            raise ConfigurationError(f"{key}: auto is not a language for a voice")
        voices[code] = _text(voice, f"{key}.{code}")
    return voices


def _voices_from_text(value: str, key: str) -> dict[str, str]:
    """``en=en_US-joe-medium,zh=/srv/voices/zh.onnx``."""
    pairs: dict[str, str] = {}
    for part in value.split(","):
        if not part.strip():
            continue
        language, sep, voice = part.partition("=")
        if not sep:
            raise ConfigurationError(f"{key} must look like en=en_US-joe-medium,zh=zh_CN-huayan-medium; got {value!r}")
        pairs[language.strip()] = voice.strip()
    return _voices(pairs, key)


def _bool(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"{key} must be true or false (on/off, 1/0); got {value!r}")


def _number(value: Any, key: str, kind: Callable[[Any], T], minimum: float) -> T:
    if isinstance(value, bool):
        raise ConfigurationError(f"{key} must be a number, got {value!r}")
    try:
        number = kind(value)
        if kind is int and isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
    except (TypeError, ValueError) as exc:
        what = "a whole number" if kind is int else "a number"
        raise ConfigurationError(f"{key} must be {what} of at least {minimum:g}, got {value!r}") from exc
    if number < minimum:  # type: ignore[operator]
        what = "a whole number" if kind is int else "a number"
        raise ConfigurationError(f"{key} must be {what} of at least {minimum:g}, got {value!r}")
    return number
