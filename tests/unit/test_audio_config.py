"""The voice settings: config/audio.yml's shape, its environment overrides, and errors that name the bad key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from assistant.config import load_audio_config, load_settings
from pipeline.audio_config import AudioConfig, VadConfig
from pipeline.errors import ConfigurationError

ISSUE_EXAMPLE = """
pipeline:
  - type: asr
    engine: faster-whisper
    model: base          # a size name or a local CTranslate2 folder
    language: auto       # or zh, en
  - type: tts
    engine: piper
    voices: {en: en_US-joe-medium, zh: zh_CN-huayan-medium}   # names or .onnx paths
"""


def parse(text: str, env: dict[str, str] | None = None) -> AudioConfig:
    return AudioConfig.from_mapping(yaml.safe_load(text), env or {})


def test_the_example_users_write_gives_the_defaults() -> None:
    assert parse(ISSUE_EXAMPLE) == AudioConfig()


def test_no_file_and_an_empty_file_mean_the_defaults() -> None:
    assert AudioConfig.from_mapping(None, {}) == AudioConfig()
    assert parse("") == AudioConfig()


def test_the_shipped_config_file_is_the_defaults() -> None:
    shipped = Path(__file__).resolve().parents[2] / "config"
    assert load_audio_config({}, shipped) == AudioConfig()


def test_every_asr_setting_is_read() -> None:
    config = parse("""
pipeline:
  - type: asr
    model: /srv/models/whisper-small
    language: zh
    detect_languages: [zh]
    device: cuda
    compute_type: float16
    threads: 4
    beam_size: 5
    initial_prompt_zh: 请用简体。
    vad: {enabled: true, threshold: 0.6, end_of_speech_ms: 800, min_speech_ms: 100, speech_pad_ms: 300}
""")
    asr = config.asr
    assert (asr.model, asr.language, asr.detect_languages) == ("/srv/models/whisper-small", "zh", ("zh",))
    assert (asr.device, asr.compute_type, asr.threads, asr.beam_size) == ("cuda", "float16", 4, 5)
    assert asr.initial_prompt_zh == "请用简体。"
    assert asr.vad == VadConfig(enabled=True, threshold=0.6, end_of_speech_ms=800, min_speech_ms=100, speech_pad_ms=300)
    # The TTS stage was not named: its defaults stay.
    assert config.tts.voices == {"en": "en_US-joe-medium", "zh": "zh_CN-huayan-medium"}


def test_vad_false_turns_it_off() -> None:
    assert parse("pipeline: [{type: asr, vad: false}]").asr.vad == VadConfig(enabled=False)


@pytest.mark.parametrize(
    ("entry", "voices"),
    [
        ("{type: tts, voice: en_US-joe-medium}", {"en": "en_US-joe-medium"}),
        ("{type: tts, voice: zh_CN-huayan-medium}", {"zh": "zh_CN-huayan-medium"}),
        ("{type: tts, voice: /srv/voices/mine.onnx, language: zh}", {"zh": "/srv/voices/mine.onnx"}),
        (
            "{type: tts, voice: /srv/voices/de_DE-thorsten-medium.onnx}",
            {"de": "/srv/voices/de_DE-thorsten-medium.onnx"},
        ),
        ("{type: tts, voices: {en: /srv/a.onnx}}", {"en": "/srv/a.onnx"}),
    ],
)
def test_one_voice_or_one_per_language(entry: str, voices: dict[str, str]) -> None:
    assert parse(f"pipeline: [{entry}]").tts.voices == voices


def test_top_level_limits_and_folder() -> None:
    config = parse("models_dir: /srv/models\nmax_audio_bytes: 2048\nmax_audio_seconds: 12.5\naudio_ttl_seconds: 60")
    assert config.models_dir == Path("/srv/models")
    assert (config.max_audio_bytes, config.max_audio_seconds, config.audio_ttl_seconds) == (2048, 12.5, 60)


def test_environment_overrides_the_file() -> None:
    env = {
        "MODELS_DIR": "/var/lib/assistant/models",
        "ASR_MODEL": "tiny.en",
        "ASR_LANGUAGE": "en",
        "ASR_DEVICE": "cuda",
        "ASR_COMPUTE_TYPE": "int8_float16",
        "ASR_THREADS": "2",
        "ASR_BEAM_SIZE": "3",
        "ASR_VAD": "off",
        "TTS_VOICES": "en=/srv/en.onnx, zh=zh_CN-huayan-medium",
        "MAX_AUDIO_BYTES": "1000",
        "MAX_AUDIO_SECONDS": "30",
        "AUDIO_TTL_SECONDS": "120",
    }
    config = parse(ISSUE_EXAMPLE.replace("model: base", "model: small"), env)
    assert config.models_dir == Path("/var/lib/assistant/models")
    asr = config.asr
    assert (asr.model, asr.language, asr.device, asr.compute_type) == ("tiny.en", "en", "cuda", "int8_float16")
    assert (asr.threads, asr.beam_size, asr.vad.enabled) == (2, 3, False)
    assert config.tts.voices == {"en": "/srv/en.onnx", "zh": "zh_CN-huayan-medium"}
    assert (config.max_audio_bytes, config.max_audio_seconds, config.audio_ttl_seconds) == (1000, 30.0, 120)


def test_empty_environment_values_are_ignored() -> None:
    assert parse(ISSUE_EXAMPLE, {"ASR_MODEL": "", "ASR_THREADS": "  "}) == AudioConfig()


@pytest.mark.parametrize(
    ("text", "env", "names"),
    [
        ("pipeline: [{type: asr, beam_size: 0}]", {}, "pipeline[0].beam_size"),
        ("pipeline: [{type: asr, beam_size: many}]", {}, "pipeline[0].beam_size"),
        ("pipeline: [{type: asr, threads: 1.5}]", {}, "pipeline[0].threads"),
        ("pipeline: [{type: asr, device: tpu}]", {}, "pipeline[0].device"),
        ("pipeline: [{type: asr, compute_type: int3}]", {}, "pipeline[0].compute_type"),
        ("pipeline: [{type: asr, language: chinese}]", {}, "pipeline[0].language"),
        ("pipeline: [{type: asr, engine: vosk}]", {}, "pipeline[0].engine"),
        ("pipeline: [{type: asr, modle: base}]", {}, "modle"),
        ("pipeline: [{type: asr, vad: {threshold: 1.5}}]", {}, "pipeline[0].vad.threshold"),
        ("pipeline: [{type: asr, vad: {enabled: maybe}}]", {}, "pipeline[0].vad.enabled"),
        ("pipeline: [{type: asr}, {type: tts, voices: [en_US-joe-medium]}]", {}, "pipeline[1].voices"),
        ("pipeline: [{type: tts, voice: a.onnx, voices: {en: b.onnx}}]", {}, "pipeline[0]"),
        ("pipeline: [{type: stt}]", {}, "pipeline[0].type"),
        ("pipeline: [{type: asr}, {type: asr}]", {}, "pipeline[1]"),
        ("pipeline: {type: asr}", {}, "pipeline"),
        ("max_audio_seconds: -1", {}, "max_audio_seconds"),
        ("- just a list", {}, "audio.yml"),
        ("", {"ASR_BEAM_SIZE": "zero"}, "ASR_BEAM_SIZE"),
        ("", {"ASR_THREADS": "-1"}, "ASR_THREADS"),
        ("", {"ASR_VAD": "sometimes"}, "ASR_VAD"),
        ("", {"ASR_DEVICE": "gpu"}, "ASR_DEVICE"),
        ("", {"TTS_VOICES": "en_US-joe-medium"}, "TTS_VOICES"),
        ("", {"MAX_AUDIO_BYTES": "10MB"}, "MAX_AUDIO_BYTES"),
        ("", {"MAX_AUDIO_SECONDS": "0"}, "MAX_AUDIO_SECONDS"),
        ("", {"AUDIO_TTL_SECONDS": "1h"}, "AUDIO_TTL_SECONDS"),
    ],
)
def test_bad_values_name_their_key(text: str, env: dict[str, str], names: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        parse(text, env)
    assert names in str(raised.value)


def write(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "audio.yml").write_text(text, encoding="utf-8")
    return folder


def test_load_settings_reads_audio_yml_from_the_config_folder(tmp_path: Path) -> None:
    config_dir = write(tmp_path / "config", "pipeline: [{type: asr, model: tiny.en, language: en}]\n")
    env: dict[str, Any] = {"ASSISTANT_CONFIG_DIR": str(config_dir), "ASSISTANT_DATA_DIR": str(tmp_path / "data"),
                           "TTS_VOICES": "en=/srv/en.onnx"}  # fmt: skip
    settings = load_settings(env)
    assert (settings.audio.asr.model, settings.audio.asr.language) == ("tiny.en", "en")
    assert settings.audio.tts.voices == {"en": "/srv/en.onnx"}


def test_a_missing_audio_yml_means_the_defaults(tmp_path: Path) -> None:
    env = {"ASSISTANT_CONFIG_DIR": str(tmp_path / "nothing"), "ASSISTANT_DATA_DIR": str(tmp_path / "data")}
    assert load_settings(env).audio == AudioConfig()


def test_broken_yaml_names_the_file(tmp_path: Path) -> None:
    config_dir = write(tmp_path / "config", "pipeline: [{type: asr, model: base\n")
    with pytest.raises(ConfigurationError, match=r"audio\.yml is not valid YAML"):
        load_audio_config({}, config_dir)


def test_a_bad_value_in_the_file_names_the_file_and_the_key(tmp_path: Path) -> None:
    config_dir = write(tmp_path / "config", "pipeline: [{type: asr, beam_size: -2}]\n")
    with pytest.raises(ConfigurationError) as raised:
        load_audio_config({}, config_dir)
    assert str(config_dir / "audio.yml") in str(raised.value)
    assert "pipeline[0].beam_size" in str(raised.value)
