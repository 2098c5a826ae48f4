"""Telegram updates as the assistant reads them: who wrote, in which chat, what (text, a voice note, /start).

Pure functions on the Bot API's JSON (https://core.telegram.org/bots/api#update), and the texts the Telegram edge
answers with by itself.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pipeline.errors import AssistantError

#: Telegram's longest message, in UTF-16 code units (how the Bot API counts ``text``'s 4096 characters).
MAX_MESSAGE_LENGTH = 4096

DENIED = {
    "zh": "抱歉，你没有使用此机器人的权限。",
    "en": "Sorry, you are not allowed to use this bot.",
}
GREETING = {
    "zh": "你好！我是你的助手。发文字或语音给我就行，输入“帮助”看看我能做什么。",
    "en": 'Hello! I am your assistant. Send me text or a voice message; say "help" to see what I can do.',
}
UNSUPPORTED = {
    "zh": "抱歉，我只能读文字和语音消息。",
    "en": "Sorry, I can only read text and voice messages.",
}

_COMMAND = re.compile(r"^/([A-Za-z0-9_]{1,32})(?:@[A-Za-z0-9_]+)?(?:\s|$)")


class UpdateError(AssistantError):
    """An update that is not shaped like the Bot API's."""

    code = "bad_update"


@dataclass(frozen=True, slots=True)
class TelegramMessage:
    """One incoming message of an update, normalized."""

    #: The update's id, which Telegram sends again when it retries.
    update_id: int
    #: The chat to answer in (a private chat's id is the user's).
    chat_id: int
    #: The message's id within its chat.
    message_id: int
    #: The sender's numeric id.
    user_id: int
    #: The sender's username, without ``@``, when they have one.
    username: str | None
    #: ``zh`` or ``en`` from the sender's ``language_code``; None for other languages.
    language: str | None
    #: The message's text (or a photo's caption); empty for a voice note.
    text: str = ""
    #: The voice note's ``file_id`` (OGG/Opus), for ``getFile``.
    voice_file_id: str | None = None
    #: The voice note's length in seconds and size in bytes, as Telegram says.
    voice_duration: int | None = None
    voice_size: int | None = None
    #: The bot command without its slash and bot name (``start`` for ``/start@my_bot``), if the text is one.
    command: str | None = None

    @property
    def session_id(self) -> str:
        """The conversation: the chat, and in a group the sender too, so members do not share one."""
        return f"telegram:{self.chat_id}" if self.chat_id == self.user_id else f"telegram:{self.chat_id}:{self.user_id}"

    @property
    def sender(self) -> str:
        """The sender as the pipeline knows users: ``telegram:<user id>``."""
        return f"telegram:{self.user_id}"

    @property
    def client_msg_id(self) -> str:
        """The message's own id, so the same message posted twice is answered once."""
        return f"{self.chat_id}:{self.message_id}"

    def edge_reply_id(self, kind: str) -> str:
        """The message id of a reply the edge makes itself (``denied``, ``start``): the same for the same message,
        so a re-post is not answered twice."""
        return uuid.uuid5(uuid.NAMESPACE_URL, f"telegram:{self.chat_id}:{self.message_id}:{kind}").hex


def parse_update(data: Any) -> TelegramMessage | None:
    """The message an update carries; None for updates the assistant does not handle (edited messages, channel
    posts, stickers, messages from bots). Raises ``UpdateError`` for JSON that is no update."""
    if not isinstance(data, dict):
        raise UpdateError("the update must be a JSON object")
    update_id = data.get("update_id")
    if not _integer(update_id):
        raise UpdateError("the update has no integer update_id")
    message = data.get("message")
    if not isinstance(message, dict):
        return None
    chat, sender = message.get("chat"), message.get("from")
    if not isinstance(chat, dict) or not _integer(chat.get("id")) or not _integer(message.get("message_id")):
        raise UpdateError("the message has no chat id or message id")
    if not isinstance(sender, dict) or not _integer(sender.get("id")) or sender.get("is_bot") is True:
        return None
    username = sender.get("username")
    common: dict[str, Any] = {
        "update_id": update_id,
        "chat_id": chat["id"],
        "message_id": message["message_id"],
        "user_id": sender["id"],
        "username": username if isinstance(username, str) and username else None,
        "language": language_of(sender.get("language_code")),
    }
    voice = message.get("voice")
    if isinstance(voice, dict) and isinstance(voice.get("file_id"), str) and voice["file_id"]:
        duration, size = voice.get("duration"), voice.get("file_size")
        return TelegramMessage(
            **common,
            voice_file_id=voice["file_id"],
            voice_duration=duration if _integer(duration) else None,
            voice_size=size if _integer(size) else None,
        )
    text = message.get("text")
    if isinstance(text, str) and text.strip():
        match = _COMMAND.match(text)
        return TelegramMessage(**common, text=text.strip(), command=match[1].lower() if match else None)
    # A sticker, a photo, a location...: still a message from the user, answered with what the bot can read.
    return TelegramMessage(**common)


def language_of(code: Any) -> str | None:
    """``zh`` or ``en`` for a Telegram ``language_code`` (``zh-hans``, ``en-GB``); None otherwise."""
    if not isinstance(code, str):
        return None
    code = code.lower()
    return "zh" if code.startswith("zh") else "en" if code.startswith("en") else None


#: The ``allowed_users`` entry that lets every Telegram user talk to the bot.
ANYONE = "*"


def is_allowed(message: TelegramMessage, allowed_users: Iterable[str]) -> bool:
    """True when ``allowed_users`` holds ``*`` or names the sender by username (any case, ``@`` optional) or id;
    an empty list lets nobody in."""
    allowed = {name.lstrip("@").lower() for name in allowed_users}
    if ANYONE in allowed:
        return True
    return str(message.user_id) in allowed or (message.username or "").lower() in allowed


def localized(texts: dict[str, str], language: str | None) -> str:
    """The text in ``language``; Chinese speakers get Chinese, everyone else English."""
    return texts["zh"] if language == "zh" else texts["en"]


def utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def split_text(text: str, limit: int = MAX_MESSAGE_LENGTH) -> list[str]:
    """``text`` in pieces of at most ``limit`` UTF-16 units, cut after a paragraph, a line, a sentence or a space
    when one is in the second half of a piece, else anywhere (never inside a surrogate pair)."""
    pieces: list[str] = []
    rest = text
    while utf16_length(rest) > limit:
        end = _fitting(rest, limit)
        cut = _good_cut(rest[:end])
        pieces.append(rest[:cut].rstrip() or rest[:cut])
        rest = rest[cut:].lstrip()
    if rest or not pieces:
        pieces.append(rest)
    return pieces


def _fitting(text: str, limit: int) -> int:
    """How many characters of ``text`` fit in ``limit`` UTF-16 units."""
    units = 0
    for index, char in enumerate(text):
        units += 2 if ord(char) > 0xFFFF else 1
        if units > limit:
            return index
    return len(text)


def _good_cut(head: str) -> int:
    for separator in ("\n\n", "\n", "。", "！", "？", ". ", "! ", "? ", "；", "; ", "，", ", ", " "):
        at = head.rfind(separator)
        if at >= len(head) // 2:
            return at + len(separator)
    return len(head)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
