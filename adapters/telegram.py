"""A small Telegram Bot API client: messages, voice notes, files and the webhook.

The bot's token is part of every URL (``<api>/bot<token>/<method>``), so no URL ever reaches a log line or an
exception's text here: ``requests``' own errors quote the URL, and are replaced by ``TelegramUnreachable``,
which names only the method.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

import requests

from pipeline.errors import AssistantError

logger = logging.getLogger(__name__)

#: Seconds to connect and to wait for an answer.
CONNECT_TIMEOUT_SECONDS = 5.0
READ_TIMEOUT_SECONDS = 20.0
#: The largest file this client downloads (Bot API bots may download files up to 20 MB).
MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024
#: What the assistant's webhook receives; everything else Telegram keeps to itself.
ALLOWED_UPDATES = ("message",)


class TelegramError(AssistantError):
    """The Bot API refused a call: ``{"ok": false, "error_code", "description"}``.

    ``retry_after`` is set for 429 (flood control): seconds to wait before calling again.
    """

    code = "telegram_error"

    def __init__(self, method: str, status: int, description: str, retry_after: float | None = None) -> None:
        super().__init__(f"{method}: {status} {description}")
        self.method = method
        self.status = status
        self.description = description
        self.retry_after = retry_after

    @property
    def transient(self) -> bool:
        """True when the same call may work later: flood control and server errors (not a blocked bot)."""
        return self.status == 429 or self.status >= 500


class TelegramUnreachable(AssistantError):
    """No answer from the Bot API (connection refused, timeout, broken answer); worth retrying."""

    code = "telegram_unreachable"


@dataclass(frozen=True, slots=True)
class TelegramFile:
    """What ``getFile`` says of a file."""

    file_id: str
    #: Where to download it: ``<api>/file/bot<token>/<file_path>``.
    file_path: str
    #: Its size in bytes, when Telegram says.
    file_size: int | None = None


@dataclass
class TelegramBot:
    """The Bot API at ``api_url`` for the bot with ``token``."""

    api_url: str
    token: str = field(repr=False)
    connect_timeout: float = CONNECT_TIMEOUT_SECONDS
    read_timeout: float = READ_TIMEOUT_SECONDS
    _session: requests.Session = field(default_factory=requests.Session, repr=False)

    def close(self) -> None:
        self._session.close()

    def call(self, method: str, params: dict[str, Any] | None = None, files: dict[str, Any] | None = None) -> Any:
        """Call ``method`` and return its ``result``; raises ``TelegramError`` or ``TelegramUnreachable``."""
        url = f"{self.api_url}/bot{self.token}/{method}"
        try:
            if files:
                data = {k: v if isinstance(v, str) else json.dumps(v) for k, v in (params or {}).items()}
                response = self._session.post(url, data=data, files=files, timeout=self._timeouts)
            else:
                response = self._session.post(url, json=params or {}, timeout=self._timeouts)
        except requests.RequestException as exc:
            # requests' message quotes the URL, and the URL holds the token: only the error's kind is kept.
            raise TelegramUnreachable(f"{method}: {type(exc).__name__}") from None
        return _result(method, response)

    def send_message(self, chat_id: str | int, text: str, reply_to_message_id: int | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"chat_id": chat_id, "text": text}
        if reply_to_message_id is not None:
            params["reply_parameters"] = {"message_id": reply_to_message_id, "allow_sending_without_reply": True}
        result: dict[str, Any] = self.call("sendMessage", params)
        return result

    def send_voice(self, chat_id: str | int, ogg_opus: bytes, duration: int | None = None) -> dict[str, Any]:
        """Send a voice note (OGG/Opus, which Telegram shows with a waveform)."""
        params: dict[str, Any] = {"chat_id": str(chat_id)}
        if duration is not None:
            params["duration"] = str(duration)
        result: dict[str, Any] = self.call("sendVoice", params, files={"voice": ("reply.ogg", ogg_opus, "audio/ogg")})
        return result

    def get_file(self, file_id: str) -> TelegramFile:
        result = self.call("getFile", {"file_id": file_id})
        if not isinstance(result, dict) or not isinstance(result.get("file_path"), str):
            raise TelegramError("getFile", 200, "the answer names no file_path")
        size = result.get("file_size")
        return TelegramFile(file_id, result["file_path"], size if isinstance(size, int) else None)

    def download(self, file: TelegramFile, max_bytes: int = MAX_DOWNLOAD_BYTES) -> bytes:
        """The file's bytes; ``TelegramError`` (413) past ``max_bytes``."""
        url = f"{self.api_url}/file/bot{self.token}/{file.file_path}"
        try:
            with self._session.get(url, timeout=self._timeouts, stream=True) as response:
                if response.status_code != 200:
                    raise TelegramError("download", response.status_code, "the file could not be downloaded")
                chunks, size = [], 0
                for chunk in response.iter_content(64 * 1024):
                    size += len(chunk)
                    if size > max_bytes:
                        raise TelegramError("download", 413, f"the file is larger than {max_bytes} bytes")
                    chunks.append(chunk)
        except requests.RequestException as exc:
            raise TelegramUnreachable(f"download: {type(exc).__name__}") from None
        return b"".join(chunks)

    def set_webhook(self, url: str, secret_token: str, allowed_updates: tuple[str, ...] = ALLOWED_UPDATES) -> bool:
        params = {"url": url, "secret_token": secret_token, "allowed_updates": list(allowed_updates)}
        return bool(self.call("setWebhook", params))

    def delete_webhook(self, drop_pending_updates: bool = False) -> bool:
        return bool(self.call("deleteWebhook", {"drop_pending_updates": drop_pending_updates}))

    def webhook_info(self) -> dict[str, Any]:
        result: dict[str, Any] = self.call("getWebhookInfo")
        return result

    @property
    def _timeouts(self) -> tuple[float, float]:
        return (self.connect_timeout, self.read_timeout)


def _result(method: str, response: requests.Response) -> Any:
    """The ``result`` of a Bot API answer, or the error it reports."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        if response.status_code >= 500 or response.status_code == 429:
            raise TelegramError(method, response.status_code, "no JSON answer")
        raise TelegramUnreachable(f"{method}: HTTP {response.status_code} without a Bot API answer")
    if body.get("ok") is True:
        return body.get("result")
    status = body.get("error_code")
    status = status if isinstance(status, int) else response.status_code
    parameters = body.get("parameters")
    retry_after = parameters.get("retry_after") if isinstance(parameters, dict) else None
    description = body.get("description")
    return_after = float(retry_after) if isinstance(retry_after, int | float) and retry_after >= 0 else None
    raise TelegramError(method, status, str(description or "error")[:200], return_after)
