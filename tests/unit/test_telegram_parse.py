"""Telegram updates normalized: who, which chat and session, what; allowed users; long texts split."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.telegram_updates import (
    DENIED,
    MAX_MESSAGE_LENGTH,
    TelegramMessage,
    UpdateError,
    is_allowed,
    language_of,
    localized,
    parse_update,
    split_text,
    utf16_length,
)


def update(**message: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "message_id": 7,
        "date": 1764400000,
        "from": {"id": 42, "is_bot": False, "first_name": "Li", "username": "li_lei", "language_code": "zh-hans"},
        "chat": {"id": 42, "type": "private"},
    }
    return {"update_id": 1001, "message": {**base, **message}}


def test_a_text_message_is_normalized() -> None:
    message = parse_update(update(text="  现在几点 "))
    assert message == TelegramMessage(
        update_id=1001, chat_id=42, message_id=7, user_id=42, username="li_lei", language="zh", text="现在几点"
    )
    assert message.session_id == "telegram:42"
    assert message.sender == "telegram:42"
    assert message.client_msg_id == "42:7"


def test_in_a_group_each_member_has_a_session_of_their_own() -> None:
    message = parse_update(update(text="hi", chat={"id": -100123, "type": "supergroup"}))
    assert message is not None
    assert message.session_id == "telegram:-100123:42"
    assert message.client_msg_id == "-100123:7"


def test_a_voice_message_carries_its_file() -> None:
    voice = {"file_id": "AwAD", "file_unique_id": "u", "duration": 3, "mime_type": "audio/ogg", "file_size": 5120}
    message = parse_update(update(voice=voice))
    assert message is not None
    assert (message.voice_file_id, message.voice_duration, message.voice_size, message.text) == ("AwAD", 3, 5120, "")


@pytest.mark.parametrize(
    ("text", "command"),
    [("/start", "start"), ("/start@my_bot", "start"), ("/START payload", "start"), ("/help", "help"),
     ("start", None), ("/ start", None), ("a /start", None)],
)  # fmt: skip
def test_commands(text: str, command: str | None) -> None:
    message = parse_update(update(text=text))
    assert message is not None and message.command == command


@pytest.mark.parametrize(
    "data",
    [
        {"update_id": 5, "edited_message": {"text": "x"}},
        {"update_id": 5, "channel_post": {"text": "x"}},
        {"update_id": 5, "callback_query": {}},
        update(text="hi", **{"from": {"id": 9, "is_bot": True, "first_name": "Bot"}}),
        update(text="hi", **{"from": None}),
    ],
)
def test_updates_the_assistant_does_not_handle(data: dict[str, Any]) -> None:
    assert parse_update(data) is None


@pytest.mark.parametrize(
    "data",
    [None, [], "x", {}, {"update_id": "5"}, {"update_id": True}, update(chat={"type": "private"}),
     update(message_id="7")],
)  # fmt: skip
def test_json_that_is_no_update_is_an_error(data: Any) -> None:
    with pytest.raises(UpdateError):
        parse_update(data)


def test_a_sticker_is_a_message_without_text() -> None:
    message = parse_update(update(sticker={"file_id": "s"}))
    assert message is not None and message.text == "" and message.voice_file_id is None


@pytest.mark.parametrize(
    ("code", "language"),
    [("zh", "zh"), ("zh-hans", "zh"), ("zh-TW", "zh"), ("en", "en"), ("en-GB", "en"), ("de", None), (None, None),
     (5, None)],
)  # fmt: skip
def test_language_of(code: Any, language: str | None) -> None:
    assert language_of(code) == language


def test_allowed_users_by_username_or_id() -> None:
    message = parse_update(update(text="hi"))
    assert message is not None
    assert not is_allowed(message, ())  # nobody: an open bot must be asked for with '*'
    assert is_allowed(message, ("*",))
    assert is_allowed(message, ("Li_Lei",))
    assert is_allowed(message, ("@li_lei",))
    assert is_allowed(message, ("42",))
    assert not is_allowed(message, ("someone", "4242"))
    nameless = parse_update(update(text="hi", **{"from": {"id": 43, "is_bot": False, "first_name": "X"}}))
    assert nameless is not None and not is_allowed(nameless, ("li_lei",))


def test_edge_reply_ids_are_the_same_for_the_same_message() -> None:
    first, again = parse_update(update(text="hi")), parse_update({**update(text="hi"), "update_id": 2002})
    assert first is not None and again is not None
    assert first.edge_reply_id("denied") == again.edge_reply_id("denied")
    assert first.edge_reply_id("denied") != first.edge_reply_id("start")


def test_localized() -> None:
    assert localized(DENIED, "zh") == "抱歉，你没有使用此机器人的权限。"
    assert localized(DENIED, None) == localized(DENIED, "en") == "Sorry, you are not allowed to use this bot."


def test_short_text_is_one_piece() -> None:
    assert split_text("你好") == ["你好"]
    assert split_text("") == [""]
    assert split_text("x" * MAX_MESSAGE_LENGTH) == ["x" * MAX_MESSAGE_LENGTH]


def test_long_text_is_cut_at_paragraphs_and_sentences() -> None:
    paragraph = "这是一个句子。" * 200  # 1400 characters: two fit in a message, three do not
    pieces = split_text(f"{paragraph}\n\n{paragraph}\n\n{paragraph}")
    assert pieces == [f"{paragraph}\n\n{paragraph}", paragraph]
    sentences = split_text("Sentence number one. " * 400)
    assert all(utf16_length(p) <= MAX_MESSAGE_LENGTH for p in sentences)
    assert all(p.rstrip().endswith(".") for p in sentences)
    assert " ".join(sentences).strip() == ("Sentence number one. " * 400).strip()


def test_text_without_breaks_is_cut_anywhere_but_never_inside_a_surrogate_pair() -> None:
    emoji = "😀" * 3000  # 6000 UTF-16 units
    pieces = split_text(emoji, limit=4096)
    assert "".join(pieces) == emoji
    assert [utf16_length(p) for p in pieces] == [4096, 1904]
    assert split_text("x" * 10, limit=4) == ["xxxx", "xxxx", "xx"]
