"""The Telegram channel end to end in one embedded pipeline: updates posted to the real HTTP gateway's webhook,
real Celery worker threads, and a local Bot API server that records what the bot sent.

The in-memory broker is one per process, so this module runs the only pipeline; each test talks in its own chat.
"""

from __future__ import annotations

import io
import itertools
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import requests
from fakes.telegram_server import Call, FakeTelegram
from support import eventually

from adapters.audio import decode_audio
from adapters.bundle import Adapters, SpeechEngines
from adapters.opus import ogg_opus
from adapters.tokens import issue_token
from assistant.bootstrap import build_gateway
from assistant.embedded import build_embedded
from pipeline.settings import Settings
from pipeline.telegram_updates import DENIED, GREETING

TOKEN = "123456:TEST-token_for-the-fake-bot-api"
SECRET = "webhook-secret_0123456789"
DEADLINE = 30.0
ALLOWED_NAME = "alice_tg"
ALLOWED_ID = 777000111

_ids = itertools.count(int(time.time()) % 100000 * 1000)


class Gateway:
    """The webhook and the admin's view of transcripts, on a real port."""

    def __init__(self, base: str, settings: Settings, adapters: Adapters) -> None:
        self.base = base
        self.adapters = adapters
        self.admin = issue_token(settings, "root", ("user", "admin"), 3600)
        self.web_user = issue_token(settings, "mallory", ("user",), 3600)

    def post(self, update: Any, secret: str | None = SECRET, raw: bytes | None = None) -> requests.Response:
        headers = {"Content-Type": "application/json"}
        if secret is not None:
            headers["X-Telegram-Bot-Api-Secret-Token"] = secret
        body = raw if raw is not None else json.dumps(update).encode()
        return requests.post(f"{self.base}/api/telegram", data=body, headers=headers, timeout=30)

    def transcript(self, session_id: str) -> dict[str, Any] | None:
        response = requests.get(
            f"{self.base}/api/sessions/{session_id}", headers={"Authorization": f"Bearer {self.admin}"}, timeout=30
        )
        return response.json() if response.status_code == 200 else None


@pytest.fixture(scope="module")
def telegram() -> Iterator[FakeTelegram]:
    fake = FakeTelegram(TOKEN)
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, telegram: FakeTelegram, speech: SpeechEngines, serve: Any
) -> Iterator[Gateway]:
    root = tmp_path_factory.mktemp("telegram")
    config = root / "config"
    config.mkdir()
    channels = {"telegram": {"enabled": True, "webhook_url": "https://example.org/api/telegram",
                             "allowed_users": [f"@{ALLOWED_NAME}", ALLOWED_ID]}}  # fmt: skip
    (config / "channels.json").write_text(json.dumps({"channels": channels}), encoding="utf-8")
    env = {
        "ASSISTANT_DATA_DIR": str(root / "data"),
        "ASSISTANT_CONFIG_DIR": str(config),
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "TELEGRAM_WEBHOOK_SECRET": SECRET,
        "TELEGRAM_API_URL": telegram.url,
        "RATE_LIMIT_PER_USER": "off",
    }
    settings = Settings.from_env(env)
    adapters, celery_app, workers = build_embedded(settings, speech=speech)
    flask_app = build_gateway(settings, adapters, celery_app)
    workers.start()
    try:
        with serve(flask_app) as base:
            yield Gateway(base, settings, adapters)
    finally:
        flask_app.extensions["assistant"]["hub"].close()
        workers.stop()
        adapters.close()


@pytest.fixture(autouse=True)
def _clean(telegram: FakeTelegram) -> None:
    telegram.reset()


def message_update(
    text: str | None = None,
    *,
    chat_id: int | None = None,
    username: str = ALLOWED_NAME,
    language: str = "zh-hans",
    message_id: int = 1,
    update_id: int | None = None,
    voice: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A private-chat message update, shaped as the Bot API sends it."""
    chat_id = chat_id or next(_ids)
    message: dict[str, Any] = {
        "message_id": message_id,
        "date": int(time.time()),
        "from": {"id": chat_id, "is_bot": False, "first_name": "A", "username": username, "language_code": language},
        "chat": {"id": chat_id, "type": "private", "first_name": "A", "username": username},
    }
    if text is not None:
        message["text"] = text
    if voice is not None:
        message["voice"] = voice
    return {"update_id": update_id or next(_ids), "message": message}


def chat_of(update: dict[str, Any]) -> int:
    chat: int = update["message"]["chat"]["id"]
    return chat


def sent(telegram: FakeTelegram, chat_id: int, count: int = 1) -> list[Call]:
    """The first ``count`` messages the bot sent to ``chat_id``, once they are there."""
    return list(eventually(lambda: (s := telegram.sent_to(chat_id)) and len(s) >= count and s, DEADLINE,
                           what=f"{count} message(s) to chat {chat_id}"))  # fmt: skip


def test_an_update_posted_twice_is_answered_by_exactly_one_send_message(
    gateway: Gateway, telegram: FakeTelegram
) -> None:
    update = message_update("现在几点")
    chat = chat_of(update)
    first, again = gateway.post(update), gateway.post(update)
    assert first.status_code == 200 and again.status_code == 200
    assert again.json().get("duplicate") is True
    # The same message in a new update (Telegram's retry after the update id was forgotten) is not answered either.
    assert gateway.post({**update, "update_id": next(_ids)}).status_code == 200
    [reply] = sent(telegram, chat)
    assert reply.method == "sendMessage" and reply.params["chat_id"] == str(chat)
    assert reply.params["text"].startswith("现在是 ")
    time.sleep(2.0)  # time for a second answer, if one were coming
    assert len(telegram.sent_to(chat)) == 1


def test_the_transcript_shows_the_telegram_channel(gateway: Gateway, telegram: FakeTelegram) -> None:
    update = message_update("现在几点", chat_id=ALLOWED_ID, username="someone_else")  # allowed by numeric id
    assert gateway.post(update).status_code == 200
    sent(telegram, ALLOWED_ID)
    transcript = eventually(lambda: (t := gateway.transcript(f"telegram:{ALLOWED_ID}")) and len(t["entries"]) >= 2
                            and t, DEADLINE, what="the transcript")  # fmt: skip
    assert transcript["channel"] == "telegram" and transcript["user_id"] == f"telegram:{ALLOWED_ID}"
    assert [e["kind"] for e in transcript["entries"]] == ["message", "reply"]
    assert transcript["entries"][0]["text"] == "现在几点"


def test_a_wrong_or_missing_secret_is_refused_and_nothing_is_sent(gateway: Gateway, telegram: FakeTelegram) -> None:
    update = message_update("现在几点")
    for secret in (None, "wrong-secret", SECRET + "x", ""):
        response = gateway.post(update, secret=secret)
        assert response.status_code == 403, secret
        assert response.json()["error"] == "forbidden"
    time.sleep(1.5)
    assert telegram.sent_to(chat_of(update)) == []
    # The refused update id was not taken as seen: Telegram's next try, with the secret, is answered.
    assert gateway.post(update).status_code == 200
    sent(telegram, chat_of(update))


def test_a_user_not_allowed_gets_one_polite_reply(gateway: Gateway, telegram: FakeTelegram) -> None:
    chinese = message_update("现在几点", username="mallory")
    english = message_update("what time is it", username="mallory", language="en-GB")
    for update in (chinese, english, chinese, {**english, "update_id": next(_ids)}):
        assert gateway.post(update).status_code == 200
    assert [c.params["text"] for c in sent(telegram, chat_of(chinese))] == [DENIED["zh"]]
    assert [c.params["text"] for c in sent(telegram, chat_of(english))] == [DENIED["en"]]
    time.sleep(1.5)
    assert len(telegram.sent_to(chat_of(chinese))) == 1 and len(telegram.sent_to(chat_of(english))) == 1
    # Nothing of theirs reached the pipeline.
    assert gateway.transcript(f"telegram:{chat_of(chinese)}") is None


def test_start_is_greeted(gateway: Gateway, telegram: FakeTelegram) -> None:
    update = message_update("/start", language="en")
    assert gateway.post(update).status_code == 200
    assert [c.params["text"] for c in sent(telegram, chat_of(update))] == [GREETING["en"]]


def test_updates_that_are_not_messages_or_not_json_are_taken_and_ignored(gateway: Gateway) -> None:
    assert gateway.post(None, raw=b"{not json").status_code == 200
    assert gateway.post({"no": "update id"}).status_code == 200
    assert gateway.post({"update_id": next(_ids), "edited_message": {"text": "x"}}).status_code == 200
    # The body size limit holds here too.
    assert gateway.post(None, raw=b'{"update_id": 1, "pad": "' + b"x" * 70_000 + b'"}').status_code == 413


def test_flood_control_retry_after_is_honoured(gateway: Gateway, telegram: FakeTelegram) -> None:
    telegram.fail("sendMessage", 429, "Too Many Requests: retry after 2", retry_after=2)
    update = message_update("现在几点")
    assert gateway.post(update).status_code == 200
    [delivered] = sent(telegram, chat_of(update))
    [refused] = telegram.calls("sendMessage", ok=False)
    assert refused.status == 429 and refused.params["chat_id"] == str(chat_of(update))
    assert delivered.at - refused.at >= 2.0


def test_server_errors_are_retried_and_the_reply_is_delivered_once(gateway: Gateway, telegram: FakeTelegram) -> None:
    telegram.fail("sendMessage", 500, "Internal Server Error", times=2)
    update = message_update("现在几点")
    assert gateway.post(update).status_code == 200
    sent(telegram, chat_of(update))
    time.sleep(2.0)
    calls = [c for c in telegram.calls("sendMessage") if c.params["chat_id"] == str(chat_of(update))]
    assert [c.status for c in calls] == [500, 500, 200]


def test_a_blocked_bot_is_dead_lettered_without_retries(gateway: Gateway, telegram: FakeTelegram) -> None:
    telegram.fail("sendMessage", 403, "Forbidden: bot was blocked by the user")
    update = message_update("现在几点")
    assert gateway.post(update).status_code == 200
    chat = str(chat_of(update))

    def dead_letter() -> Any:
        letters = [d for d in gateway.adapters.repository.dead_letters() if f'"reply_to": "{chat}"' in d.body]
        return letters[0] if letters else None

    letter = eventually(dead_letter, DEADLINE, what="the dead letter")
    assert letter.task == "assistant.deliver.telegram" and letter.queue == "reply.telegram"
    assert "403" in letter.error and "blocked" in letter.error
    assert "现在是" not in letter.body  # what the reply said is not kept
    time.sleep(2.0)
    assert [c.status for c in telegram.calls("sendMessage") if c.params["chat_id"] == chat] == [403]


def test_a_voice_message_is_recognised_and_answered_in_text_and_speech(
    gateway: Gateway, telegram: FakeTelegram, shared_audio: Path
) -> None:
    samples = decode_audio((shared_audio / "living_room_light_en.wav").read_bytes(), 60)
    telegram.add_file("voice-1", ogg_opus(samples))
    duration = round(len(samples) / 16000)
    update = message_update(voice={"file_id": "voice-1", "file_unique_id": "u1", "duration": duration,
                                   "mime_type": "audio/ogg", "file_size": 1000}, language="en")  # fmt: skip
    chat = chat_of(update)
    started = time.monotonic()
    assert gateway.post(update).status_code == 200
    # The download and decoding happen before the webhook answers: it is still quick.
    print(f"\nvoice webhook answered in {(time.monotonic() - started) * 1000:.0f} ms ({len(samples) / 16000:.1f} s)")
    calls = sent(telegram, chat, 2)
    assert [c.method for c in calls] == ["sendMessage", "sendVoice"]
    assert calls[0].params["text"]
    _, content_type, ogg = calls[1].files["voice"]
    assert content_type == "audio/ogg" and ogg[:4] == b"OggS"
    with av.open(io.BytesIO(ogg)) as container:
        assert container.streams.audio[0].codec_context.name == "opus"
    assert len(decode_audio(ogg, 120)) > 16000 * 0.5  # real speech, not an empty file
    assert telegram.calls("getFile")[0].params["file_id"] == "voice-1"
    transcript = eventually(lambda: (t := gateway.transcript(f"telegram:{chat}")) and len(t["entries"]) >= 2 and t,
                            DEADLINE, what="the transcript")  # fmt: skip
    assert transcript["channel"] == "telegram"
    heard = transcript["entries"][1]["heard"]["text"].lower()
    assert "living room" in heard, heard
    assert np.isfinite(samples).all()


def test_a_web_user_cannot_take_a_telegram_chat_s_session(gateway: Gateway, telegram: FakeTelegram) -> None:
    update = message_update("现在几点")
    chat = chat_of(update)
    headers = {"Authorization": f"Bearer {gateway.web_user}"}
    for session_id in (f"telegram:{chat}", "mqtt:kitchen-speaker"):
        body = {"text": "现在几点", "session_id": session_id}
        squatting = requests.post(f"{gateway.base}/api/messages?wait=5", json=body, headers=headers, timeout=30)
        assert squatting.status_code == 400, squatting.text
        assert "may not start with" in squatting.json()["message"]
    assert gateway.post(update).status_code == 200
    assert len(sent(telegram, chat)) == 1  # the chat is answered: its session is still its own


def test_a_long_reply_goes_out_in_paced_pieces_in_order(gateway: Gateway, telegram: FakeTelegram) -> None:
    story = "这是一个很长的故事。" * 600  # 6000 characters: two messages
    definition = {"name": "long-story", "description": "讲长故事 / tells a long story", "triggers": ["长故事"],
                  "response": story}  # fmt: skip
    headers = {"Authorization": f"Bearer {gateway.admin}"}
    created = requests.post(f"{gateway.base}/api/skills", json=definition, headers=headers, timeout=30)
    assert created.status_code in (200, 201), created.text
    update = message_update("讲个长故事")
    assert gateway.post(update).status_code == 200
    first, second = sent(telegram, chat_of(update), 2)
    assert first.params["text"] + second.params["text"] == story
    assert max(len(first.params["text"]), len(second.params["text"])) <= 4096
    assert second.at - first.at >= 0.9  # about a second between two messages to one chat
    time.sleep(1.0)
    assert len(telegram.sent_to(chat_of(update))) == 2


def test_server_errors_that_do_not_pass_end_in_a_dead_letter(gateway: Gateway, telegram: FakeTelegram) -> None:
    """Six retries with back-off (about half a minute with jitter, at most a minute), then the dead letter."""
    telegram.fail("sendMessage", 502, "Bad Gateway", times=50)
    update = message_update("现在几点")
    chat = str(chat_of(update))
    assert gateway.post(update).status_code == 200

    def dead_letter() -> Any:
        letters = [d for d in gateway.adapters.repository.dead_letters() if f'"reply_to": "{chat}"' in d.body]
        return letters[0] if letters else None

    letter = eventually(dead_letter, 90.0, what="the dead letter", interval=0.5)
    assert "502" in letter.error
    tries = [c for c in telegram.calls("sendMessage") if c.params["chat_id"] == chat]
    assert len(tries) == 7  # the first try and six retries
    telegram.reset()


def test_a_voice_download_that_fails_is_answered_503_and_taken_on_telegram_s_retry(
    gateway: Gateway, telegram: FakeTelegram
) -> None:
    telegram.add_file("voice-broken", b"this is not audio at all")
    telegram.fail("getFile", 500, "Internal Server Error")
    update = message_update(voice={"file_id": "voice-broken", "duration": 1}, language="en")
    assert gateway.post(update).status_code == 503
    assert telegram.sent_to(chat_of(update)) == []
    # Telegram sends the update again: now downloaded, and found not to be audio, which the user is told.
    assert gateway.post(update).status_code == 200
    [reply] = sent(telegram, chat_of(update))
    assert reply.params["text"] == "Sorry, I can only read text and voice messages."
