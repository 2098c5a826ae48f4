"""``POST /api/audio`` and spoken replies through real HTTP, embedded layout, real Celery worker threads, real models.

Whisper runs three times in this module (an English and a Chinese recording, and the spoken reply transcribed
back); every other utterance is silence, which VAD ends before Whisper.
"""

from __future__ import annotations

import io
import os
import re
import time
import wave
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests

from adapters.audio import decode_audio, float32_to_pcm16, wav_bytes
from adapters.blobs import spoken_reply_key
from adapters.bundle import SpeechEngines
from adapters.piper import PiperSynthesizer
from adapters.tokens import issue_token
from adapters.whisper import WhisperRecognizer
from assistant.bootstrap import build_gateway
from assistant.embedded import build_embedded
from pipeline.audio_config import AudioConfig
from pipeline.settings import Settings
from tasks.asr import NOT_HEARD

HTTP_TIMEOUT = 60.0
MAX_AUDIO_BYTES = 1_000_000
MAX_AUDIO_SECONDS = 10.0


@dataclass
class Api:
    base: str
    tokens: dict[str, str]
    adapters: Any
    settings: Settings

    def post_audio(self, body: bytes, who: str = "alice", content_type: str = "audio/wav", **params: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.tokens[who]}", "Content-Type": content_type}
        return requests.post(f"{self.base}/api/audio", params={"wait": 30, **params}, data=body, headers=headers,
                             timeout=HTTP_TIMEOUT)  # fmt: skip

    def post_message(self, body: dict[str, Any], who: str = "alice") -> requests.Response:
        return requests.post(f"{self.base}/api/messages", params={"wait": 30}, json=body,
                             headers={"Authorization": f"Bearer {self.tokens[who]}"}, timeout=HTTP_TIMEOUT)  # fmt: skip

    def get(self, path: str, who: str = "alice") -> requests.Response:
        return requests.get(f"{self.base}{path}", headers={"Authorization": f"Bearer {self.tokens[who]}"},
                            timeout=HTTP_TIMEOUT)  # fmt: skip


@pytest.fixture(scope="module")
def api(
    tmp_path_factory: pytest.TempPathFactory, serve: Any, models_dir: Path, recognizer: WhisperRecognizer,
    synthesizer: PiperSynthesizer,
) -> Iterator[Api]:  # fmt: skip
    root = tmp_path_factory.mktemp("audio-http")
    settings = Settings.from_env({"ASSISTANT_DATA_DIR": str(root / "data"), "ASSISTANT_CONFIG_DIR": str(root / "c")})
    audio = AudioConfig(models_dir=models_dir, max_audio_bytes=MAX_AUDIO_BYTES, max_audio_seconds=MAX_AUDIO_SECONDS)
    settings = replace(settings, audio=audio)
    speech = SpeechEngines(lambda workers: recognizer, lambda: synthesizer)
    adapters, celery_app, workers = build_embedded(settings, speech=speech)
    app = build_gateway(settings, adapters, celery_app)
    workers.start()
    try:
        with serve(app) as base:
            tokens = {name: issue_token(settings, name, roles, 3600)
                      for name, roles in (("alice", ("user",)), ("bob", ("user",)), ("vic", ("visitor",)))}  # fmt: skip
            yield Api(base, tokens, adapters, settings)
    finally:
        app.extensions["assistant"]["hub"].close()
        workers.stop()
        adapters.close()


def recording(folder: Path, name: str) -> bytes:
    return (folder / name).read_bytes()


def silence_wav(seconds: float = 1.0, rate: int = 16000) -> bytes:
    noise = np.random.default_rng(3).normal(0.0, 0.0005, int(rate * seconds)).astype(np.float32)
    return wav_bytes(float32_to_pcm16(noise), rate)


def words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower().replace("'", ""))


def test_english_speech_is_heard_answered_and_spoken_back(
    api: Api, recognizer: WhisperRecognizer, shared_audio: Path
) -> None:
    response = api.post_audio(recording(shared_audio, "living_room_light_en.wav"), reply_audio="true")
    assert response.status_code == 200, response.text
    body = response.json()
    assert "living room" in body["transcript"]["text"].lower() and body["transcript"]["language"] == "en"
    reply = body["reply"]
    assert reply["text"] == api.settings.fallback_reply_en and reply["heard"] == body["transcript"]
    for stage in ("decode", "vad", "asr", "dispatch", "tts_first_audio", "tts"):
        assert reply["timings"][stage] > 0, reply["timings"]
    audio = reply["audio"]
    assert audio["status"] == "ready" and audio["interrupted"] is False and audio["sample_rate"] == 22050
    assert audio["url"] == reply["audio_url"] == f"/api/sessions/{body['session_id']}/audio/{body['message_id']}.wav"
    wav = api.get(audio["url"])
    assert wav.status_code == 200 and wav.headers["Content-Type"] == "audio/wav"
    with wave.open(io.BytesIO(wav.content)) as reader:
        assert reader.getnframes() / reader.getframerate() == pytest.approx(audio["duration_seconds"], abs=0.01)
    # Whisper hears the spoken reply say the reply's words.
    heard = recognizer.transcribe(decode_audio(wav.content, 60), "en")
    said, expected = words(heard.text), words(reply["text"])
    assert len(set(said) & set(expected)) >= 0.8 * len(set(expected)), (heard.text, reply["text"])
    # The transcript shows what was heard and every stage's time.
    transcript = api.get(f"/api/sessions/{body['session_id']}").json()["entries"]
    assert [(e["kind"], e["text"]) for e in transcript] == [("message", body["transcript"]["text"]),
                                                            ("reply", reply["text"])]  # fmt: skip
    assert transcript[1]["heard"] == body["transcript"] and transcript[1]["audio"] == audio
    assert set(transcript[1]["timings"]) == {"decode", "vad", "asr", "dispatch", "tts_first_audio", "tts"}


def test_chinese_speech_is_heard_in_simplified_characters(api: Api, shared_audio: Path) -> None:
    files = {"file": ("light.wav", recording(shared_audio, "living_room_light_zh.wav"), "audio/wav")}
    headers = {"Authorization": f"Bearer {api.tokens['alice']}"}
    response = requests.post(f"{api.base}/api/audio", params={"wait": 30}, files=files, headers=headers,
                             timeout=HTTP_TIMEOUT)  # fmt: skip
    assert response.status_code == 200, response.text
    body = response.json()
    assert "客厅" in body["transcript"]["text"] and body["transcript"]["language"] == "zh"
    assert not set("廳開燈") & set(body["transcript"]["text"])
    assert body["reply"]["text"] == api.settings.fallback_reply_zh
    assert body["reply"]["audio"] is None  # not asked for


def test_silence_gets_the_polite_reply(api: Api) -> None:
    response = api.post_audio(silence_wav(), language="en")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["transcript"] == {"text": "", "language": "en"}
    assert (body["reply"]["text"], body["reply"]["error"]) == (NOT_HEARD["en"], "no_speech")


def test_any_rate_and_channel_count_is_accepted(api: Api) -> None:
    stereo = io.BytesIO()
    with wave.open(stereo, "wb") as writer:
        writer.setnchannels(2)
        writer.setsampwidth(2)
        writer.setframerate(44100)
        writer.writeframes(bytes(4 * 44100))
    response = api.post_audio(stereo.getvalue(), content_type="application/octet-stream", wait=0)
    assert response.status_code == 202 and set(response.json()) == {"message_id", "session_id"}


def test_not_audio_is_415(api: Api) -> None:
    garbage = api.post_audio(os.urandom(5000))
    assert garbage.status_code == 415 and garbage.json()["error"] == "unsupported_media_type"
    text = api.post_audio(b"hello", content_type="text/plain")
    assert text.status_code == 415
    assert api.post_audio(b"", content_type="audio/wav").status_code == 400


def test_too_large_or_too_long_is_413(api: Api) -> None:
    large = api.post_audio(b"\0" * (MAX_AUDIO_BYTES + 1))
    assert large.status_code == 413 and "MAX_AUDIO_BYTES" in large.json()["message"]
    # Above the JSON limit of the other calls but below the audio one: accepted.
    assert api.post_audio(silence_wav(3.0), wait=0).status_code == 202
    long = api.post_audio(silence_wav(MAX_AUDIO_SECONDS + 1, rate=8000))
    assert long.status_code == 413 and "MAX_AUDIO_SECONDS" in long.json()["message"]


def test_bad_parameters_are_400(api: Api) -> None:
    for params in ({"reply_audio": "maybe"}, {"language": "fr"}, {"session_id": "bad/id"}, {"wait": "-1"}):
        assert api.post_audio(silence_wav(), **params).status_code == 400, params


def test_spoken_replies_are_served_to_the_sessions_owner_only_until_they_expire(api: Api) -> None:
    response = api.post_message({"text": "what time is it", "reply_audio": True})
    assert response.status_code == 200, response.text
    body = response.json()
    url = body["reply"]["audio"]["url"]
    assert api.get(url).status_code == 200
    assert api.get(url, who="bob").status_code == 404
    assert api.get(url.replace(body["message_id"], "0" * 32)).status_code == 404
    # Expired: the store no longer gives it.
    key = spoken_reply_key(body["session_id"], body["message_id"])
    api.adapters.blobs.put(key, b"RIFF", 1)
    time.sleep(1.2)
    assert api.get(url).status_code == 404
    assert api.post_message({"text": "hi", "reply_audio": "yes"}).status_code == 400


def test_a_resent_utterance_is_answered_once(api: Api) -> None:
    first = api.post_audio(silence_wav(), client_msg_id="utterance-1").json()
    again = api.post_audio(silence_wav(), client_msg_id="utterance-1")
    assert again.status_code == 200
    body = again.json()
    assert body["duplicate"] is True and body["message_id"] == first["message_id"]
    assert body["transcript"] == first["transcript"] and body["reply"]["id"] == first["reply"]["id"]


def test_a_visitor_speaks_and_hears_its_own_replies(api: Api) -> None:
    response = api.post_audio(silence_wav(), who="vic", language="en")
    assert response.status_code == 200, response.text
    session = response.json()["session_id"]
    spoken = api.post_message({"text": "what time is it", "session_id": session, "reply_audio": True}, who="vic")
    url = spoken.json()["reply"]["audio"]["url"]
    assert api.get(url, who="vic").status_code == 200
    assert api.get(url, who="alice").status_code == 404
    # Another user's session: as unknown as for text.
    assert api.post_audio(silence_wav(), who="bob", session_id=session).status_code == 404
