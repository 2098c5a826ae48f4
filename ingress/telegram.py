"""``POST /api/telegram``: Telegram's webhook. Checks the secret, normalizes the update, submits it, answers 200.

Telegram sends a chat's updates one at a time and sends an update again until it gets a 2xx, so the answer is
quick: text is submitted to ``dispatch`` and never waited for. A voice note is downloaded here (one ``getFile``
and one small download, bounded by the client's timeouts) because the gateway already decodes audio for
``/api/audio`` and keeps no other queue for downloads; a download that fails answers 503, and Telegram's
retry brings the update back.
"""

from __future__ import annotations

import hmac
import logging
import time
from typing import Any

from flask import Blueprint, Flask, request
from werkzeug.exceptions import Forbidden, NotFound, ServiceUnavailable

from adapters.audio import AudioError, decode_audio, float32_to_pcm16
from adapters.bundle import Adapters
from adapters.errors import UNAVAILABLE
from adapters.metrics import DUPLICATE, REJECTED
from adapters.telegram import TelegramBot, TelegramError, TelegramUnreachable
from ingress.messages import edge_parts
from ingress.speech_submit import submit, submit_speech
from pipeline.envelope import Envelope, Reply, new_id, storable_text
from pipeline.errors import ConfigurationError
from pipeline.settings import Settings
from pipeline.stages import WANTS_SPEECH, WANTS_TEXT, Channel, Stage
from pipeline.telegram_updates import (
    DENIED,
    GREETING,
    UNSUPPORTED,
    TelegramMessage,
    UpdateError,
    is_allowed,
    localized,
    parse_update,
)
from tasks.forward import Forwarder

bp = Blueprint("telegram", __name__)
logger = logging.getLogger(__name__)

PATH = "/api/telegram"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
#: Telegram's rule for ``secret_token``: 1-256 characters of ``A-Z a-z 0-9 _ -``.
SECRET_CHARACTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
#: How long an update id is remembered: Telegram gives up on an update after about a day.
UPDATE_TTL_SECONDS = 26 * 3600
#: Longest message text taken (Telegram's own limit is 4096).
MAX_TEXT = 4096
ROLES = ("user",)


def init_app(app: Flask, settings: Settings) -> None:
    """Add the webhook when Telegram is enabled; a webhook without its secret and token is refused at start."""
    if not settings.telegram.enabled:
        return
    check_config(settings)
    app.register_blueprint(bp)


def check_config(settings: Settings) -> None:
    """Raises ``ConfigurationError`` unless the bot has a token and the webhook a secret Telegram accepts.

    The secret is required in every mode: without it anyone who finds the URL could talk as any Telegram user.
    """
    config = settings.telegram
    if not config.bot_token:
        raise ConfigurationError("Telegram is enabled but has no bot token: set TELEGRAM_BOT_TOKEN")
    secret = config.webhook_secret
    if not secret:
        raise ConfigurationError(
            "Telegram is enabled but has no webhook secret: set TELEGRAM_WEBHOOK_SECRET "
            "(1-256 characters A-Z a-z 0-9 _ -), then run 'assistant telegram set-webhook'"
        )
    if len(secret) > 256 or not set(secret) <= SECRET_CHARACTERS:
        raise ConfigurationError("TELEGRAM_WEBHOOK_SECRET must be 1-256 characters of A-Z a-z 0-9 _ -")
    if not config.allowed_users:
        # An open bot reaches every skill, the smart home's locks included: letting anyone in must be said.
        raise ConfigurationError(
            "Telegram is enabled but allowed_users is empty: list usernames or user ids in channels.telegram."
            "allowed_users or TELEGRAM_ALLOWED_USERS, or '*' to let anyone use the bot"
        )


@bp.post(PATH)
def webhook() -> tuple[dict[str, Any], int]:
    adapters, _, forwarder = edge_parts()
    config = adapters.settings.telegram
    given = request.headers.get(SECRET_HEADER, "")
    if not hmac.compare_digest(given.encode(), config.webhook_secret.encode()):
        logger.warning("telegram update refused: %s secret token", "wrong" if given else "missing")
        raise Forbidden("wrong or missing secret token")
    try:
        message = parse_update(request.get_json(force=True, silent=True))
    except UpdateError as exc:
        # A 4xx would make Telegram send it again forever: it is taken, and nothing is done.
        logger.warning("telegram update ignored: %s", exc)
        return {"ok": True}, 200
    if message is None:
        logger.info("telegram update ignored: not a message from a user")
        return {"ok": True}, 200
    update_key = f"telegram:update:{message.update_id}"
    if not adapters.marks.claim(update_key, UPDATE_TTL_SECONDS):
        logger.info("telegram update %d seen already", message.update_id)
        adapters.metrics.count_message(str(Channel.TELEGRAM), DUPLICATE)
        return {"ok": True, "duplicate": True}, 200
    try:
        handle(adapters, forwarder, message)
    except NotFound:
        # The session id is held by another user (a web client that named it first): retrying cannot help.
        logger.warning("telegram update %d refused: its session belongs to another user", message.update_id)
        return {"ok": True}, 200
    except BaseException:
        # Not taken: Telegram's retry must be handled, not ignored as seen.
        adapters.marks.release(update_key)
        raise
    return {"ok": True}, 200


def handle(adapters: Adapters, forwarder: Forwarder, message: TelegramMessage) -> None:
    """Submit ``message``, or answer it at the edge (not allowed, /start, nothing readable)."""
    config = adapters.settings.telegram
    if not is_allowed(message, config.allowed_users):
        logger.info("telegram user %d is not allowed; answered once", message.user_id)
        adapters.metrics.count_message(str(Channel.TELEGRAM), REJECTED)
        edge_reply(forwarder, message, "denied", localized(DENIED, message.language))
        return
    if message.command == "start":
        edge_reply(forwarder, message, "start", localized(GREETING, message.language))
        return
    if message.voice_file_id is not None:
        submit_voice(adapters, forwarder, message)
        return
    if not message.text or not storable_text(message.text):
        edge_reply(forwarder, message, "unsupported", localized(UNSUPPORTED, message.language))
        return
    draft = Envelope(
        message_id=new_id(),
        session_id=message.session_id,
        channel=str(Channel.TELEGRAM),
        user_id=message.sender,
        roles=ROLES,
        text=message.text[:MAX_TEXT],
        client_msg_id=message.client_msg_id,
        reply_to=str(message.chat_id),
        language=message.language,
    )
    registration = submit(adapters, forwarder, draft, False, Stage.DISPATCH)
    logger.info("telegram message %s of update %d: %s", registration.message_id, message.update_id,
                registration.status)  # fmt: skip


def submit_voice(adapters: Adapters, forwarder: Forwarder, message: TelegramMessage) -> None:
    """Download the voice note, decode it and send it to ``asr``; the reply comes back spoken too."""
    audio = adapters.settings.audio
    bot = adapters.telegram
    if bot is None:  # enabled without a token is refused at start; kept for type checkers
        raise ServiceUnavailable("the Telegram bot is not configured")
    if (message.voice_duration or 0) > audio.max_audio_seconds or (message.voice_size or 0) > audio.max_audio_bytes:
        logger.info("telegram voice note of update %d is too long", message.update_id)
        edge_reply(forwarder, message, "too-long", _too_long(message.language, audio.max_audio_seconds))
        return
    started = time.perf_counter()
    data = download_voice(bot, message.voice_file_id or "", audio.max_audio_bytes)
    try:
        samples = decode_audio(data, audio.max_audio_seconds)
    except AudioError as exc:
        logger.info("telegram voice note of update %d not usable: %s", message.update_id, exc.code)
        edge_reply(forwarder, message, "bad-audio", localized(UNSUPPORTED, message.language))
        return
    decoded_ms = (time.perf_counter() - started) * 1000
    registration = submit_speech(
        adapters,
        forwarder,
        user_id=message.sender,
        roles=ROLES,
        pcm16=float32_to_pcm16(samples),
        session_id=message.session_id,
        client_msg_id=message.client_msg_id,
        wants=(WANTS_TEXT, WANTS_SPEECH),
        language=message.language,
        timings=(("decode", decoded_ms),),
        channel=Channel.TELEGRAM,
        reply_to=str(message.chat_id),
    )
    logger.info("telegram voice message %s of update %d: %s", registration.message_id, message.update_id,
                registration.status)  # fmt: skip


def download_voice(bot: TelegramBot, file_id: str, max_bytes: int) -> bytes:
    """The voice note's bytes; 503 (Telegram sends the update again later) when the Bot API fails."""
    try:
        return bot.download(bot.get_file(file_id), max_bytes)
    except (TelegramError, TelegramUnreachable) as exc:
        logger.warning("telegram voice download failed: %s", exc)
        raise ServiceUnavailable("the voice message could not be downloaded; try again") from None


def edge_reply(forwarder: Forwarder, message: TelegramMessage, kind: str, text: str) -> None:
    """A reply the edge makes itself, straight to ``reply.telegram``: not a turn of the conversation, so neither
    registered nor recorded. Its id comes from the message, so a re-post is not answered twice."""
    reply = Reply(
        message_id=message.edge_reply_id(kind),
        session_id=message.session_id,
        channel=str(Channel.TELEGRAM),
        text=text,
        skill=f"telegram.{kind}",
        reply_to=str(message.chat_id),
        user_id=message.sender,
        recorded=True,
        language=message.language or "en",
    )
    try:
        forwarder.reply(reply)
    except UNAVAILABLE as exc:
        raise ServiceUnavailable("the message queue is unreachable; try again shortly") from exc


def _too_long(language: str | None, seconds: float) -> str:
    if language == "zh":
        return f"抱歉，语音消息太长了，最长{seconds:g}秒。"
    return f"Sorry, that voice message is too long; the limit is {seconds:g} seconds."
