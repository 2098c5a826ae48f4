"""The real engines on real audio: Whisper base and tiny.en on the shared recordings, Piper speaking, and a round
trip through both. Each model is loaded once per test run (the session fixtures) and called a handful of times."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest

from adapters.audio import decode_audio, pcm16_to_float32, resample
from adapters.piper import PiperSynthesizer
from adapters.speech import SAMPLE_RATE
from adapters.whisper import WhisperRecognizer
from pipeline.audio_config import AsrConfig, TtsConfig
from pipeline.errors import ConfigurationError


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def recording(shared_audio: Path, name: str) -> np.ndarray:
    return decode_audio((shared_audio / name).read_bytes(), max_seconds=60)


@pytest.mark.parametrize("name", ["living_room_light_en.wav", "turn_on_the_living_room_lamp.wav"])
def test_english_recordings_are_heard(recognizer: WhisperRecognizer, shared_audio: Path, name: str) -> None:
    heard = recognizer.transcribe(recording(shared_audio, name))
    assert "living room" in heard.text.lower()
    assert heard.language == "en"
    assert 0 < heard.speech_seconds <= heard.duration_seconds
    assert [step for step, _ in heard.timings] == ["vad", "asr"]


def test_mandarin_comes_back_in_simplified_characters(recognizer: WhisperRecognizer, shared_audio: Path) -> None:
    partials: list[str] = []
    heard = recognizer.transcribe(recording(shared_audio, "living_room_light_zh.wav"), on_partial=partials.append)
    assert heard.language == "zh"
    assert "客厅" in heard.text
    # Whisper's own output for this recording is 打開客廳的燈: none of its traditional characters may remain.
    assert not set("廳開燈") & set(heard.text)
    assert partials and partials[-1] == heard.text


def test_silence_and_faint_noise_give_no_text_without_running_whisper(tmp_path: Path) -> None:
    # The model folder does not exist: any attempt to load Whisper would raise.
    recognizer = WhisperRecognizer(AsrConfig(model=str(tmp_path / "no-model-here")), tmp_path)
    faint = np.random.default_rng(1).normal(0, 0.001, 3 * SAMPLE_RATE).astype(np.float32)
    for samples in (np.zeros(2 * SAMPLE_RATE, dtype=np.float32), faint):
        heard = recognizer.transcribe(samples)
        assert (heard.text, heard.speech_seconds) == ("", 0.0)
        assert [step for step, _ in heard.timings] == ["vad"]
    assert recognizer.transcribe(np.zeros(SAMPLE_RATE, dtype=np.float32), language="zh").language == "zh"
    # Loading it, as soon as there is speech to hear, says what to do.
    with pytest.raises(ConfigurationError, match="assistant models install"):
        recognizer.warm_up()


def test_piper_speaks_a_sentence_that_whisper_hears_back(
    synthesizer: PiperSynthesizer, recognizer: WhisperRecognizer
) -> None:
    reply = "Turn on the living room light. The kitchen door is locked now."
    synthesizer.warm_up()  # the voice loads once; the time below is synthesis alone
    started = time.perf_counter()
    chunks = list(synthesizer.speak(reply, "en"))
    took = time.perf_counter() - started
    assert [chunk.text for chunk in chunks] == ["Turn on the living room light.", "The kitchen door is locked now."]
    assert {chunk.sample_rate for chunk in chunks} == {synthesizer.sample_rate("en")} == {22_050}
    audio = pcm16_to_float32(b"".join(chunk.pcm16 for chunk in chunks))
    spoken_seconds = len(audio) / 22_050
    assert 2.0 < spoken_seconds < 8.0
    # Faster than real time (about 0.05 of it on an idle core; up to 0.7 seen with the other core's tests running).
    assert took / spoken_seconds < 1.0
    heard = recognizer.transcribe(resample(audio, 22_050, SAMPLE_RATE), language="en")
    # Piper adds random noise to each synthesis, and whisper base now and then hears one word of it wrong ("light"
    # as "like"): every word but at most one, in order.
    said, got = words(reply), words(heard.text)
    assert len(got) == len(said) and sum(a != b for a, b in zip(said, got, strict=True)) <= 1, heard.text


def test_the_first_sentence_is_ready_before_the_rest_is_made(synthesizer: PiperSynthesizer) -> None:
    reply = "One moment please. I am looking that up for you. Here is what I found about the weather today."
    spoken = synthesizer.speak(reply, "en")
    started = time.perf_counter()
    first = next(spoken)
    first_after = time.perf_counter() - started
    rest = list(spoken)
    all_after = time.perf_counter() - started
    assert first.text == "One moment please."
    assert len(rest) == 2
    assert first_after < all_after


def test_a_language_without_an_installed_voice_has_none(models_dir: Path) -> None:
    synthesizer = PiperSynthesizer(
        TtsConfig(voices={"en": "en_US-joe-medium", "zh": "zh_CN-not-installed"}), models_dir
    )
    assert synthesizer.voice_for("en") == synthesizer.voice_for("en-US") == "en_US-joe-medium"
    assert synthesizer.voice_for("zh") is None
    assert synthesizer.voice_for("fr") is None
    with pytest.raises(LookupError):
        list(synthesizer.speak("你好。", "zh"))
    with pytest.raises(LookupError):
        synthesizer.sample_rate("zh")


def test_a_voice_named_by_its_onnx_path_works(models_dir: Path) -> None:
    onnx = models_dir / "piper" / "en_US-joe-medium.onnx"
    synthesizer = PiperSynthesizer(TtsConfig(voices={"en": str(onnx)}), Path("/nonexistent"))
    assert synthesizer.voice_for("en") == str(onnx)
    assert synthesizer.sample_rate("en") == 22_050


def test_tiny_en_from_a_folder_path(models_dir: Path, shared_audio: Path) -> None:
    # A folder path is used as it is, the way a user's own converted model is configured.
    recognizer = WhisperRecognizer(AsrConfig(model=str(models_dir / "whisper-tiny.en")), Path("/nonexistent"))
    heard = recognizer.transcribe(recording(shared_audio, "living_room_light_en.wav"))
    assert "living room" in heard.text.lower()
    assert heard.language == "en"


def test_threads_share_one_model_and_each_hears_its_own_audio(
    recognizer: WhisperRecognizer, shared_audio: Path
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    english = recording(shared_audio, "turn_on_the_living_room_lamp.wav")
    chinese = recording(shared_audio, "living_room_light_zh.wav")
    with ThreadPoolExecutor(2) as pool:
        heard = list(pool.map(recognizer.transcribe, [english, chinese]))
    assert heard[0].language == "en" and "living room" in heard[0].text.lower()
    assert heard[1].language == "zh" and "客厅" in heard[1].text
