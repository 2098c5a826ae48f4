"""The Telegram channel's deliverer: drains ``reply.telegram`` into the transcript and the Bot API.

Each piece of a reply (a text of at most 4096 characters, the voice note) is sent at most once per message id: a
mark is checked before and set after Telegram's 200. The one window left is a worker that dies between the 200 and
setting the mark: the broker redelivers the reply and that piece goes out a second time. Marking before sending
would close it by losing the piece instead, which is worse for a user.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from adapters.bundle import Adapters
from adapters.errors import UNAVAILABLE
from adapters.opus import wav_to_voice_note
from adapters.telegram import TelegramBot, TelegramError, TelegramUnreachable
from pipeline.envelope import Reply
from pipeline.stages import Channel, deliver_task, reply_queue
from pipeline.telegram_updates import split_text
from tasks.deliver import observe_delivered, record_in_order
from tasks.runtime import StageRuntime
from tasks.stage import GiveUp, NotYet, StageSpec, Waiting, stage_task

logger = logging.getLogger(__name__)

#: Retries of a send that failed for a reason that passes (5xx, no answer): back-off 1, 2, 4, 8, 16, 30 s with
#: jitter, so about a minute; then the reply is dead-lettered.
MAX_SEND_RETRIES = 6
#: How long a reply may wait in all for Telegram's flood control (``retry_after``) and the per-chat pace before
#: it is given up.
MAX_WAIT_SECONDS = 15 * 60
#: How long a sent piece is remembered: longer than any redelivery.
SENT_TTL_SECONDS = 7 * 24 * 3600
#: How long one delivery holds a piece while sending it: past the Bot API call's timeouts.
SENDING_LEASE_SECONDS = 60
#: How soon a delivery that found a piece being sent by another looks again.
BUSY_RETRY_SECONDS = 0.5


def deliver_telegram(reply: Reply, runtime: StageRuntime, waiting: Waiting) -> None:
    """Record the reply, then send it to its chat: the text (in pieces if long), then the voice note if spoken."""
    adapters = runtime.adapters
    bot = adapters.telegram
    if bot is None:
        raise GiveUp("Telegram is not configured in this worker (TELEGRAM_BOT_TOKEN, TELEGRAM_ENABLED)")
    chat = reply.reply_to
    if not chat:
        raise GiveUp("the reply names no Telegram chat")
    reply = record_in_order(reply, runtime, waiting)
    sender = Sender(adapters, chat, waiting)
    if reply.text.strip():
        for index, piece in enumerate(split_text(reply.text)):
            sender.once(f"{reply.message_id}:{index}", lambda piece=piece: bot.send_message(chat, piece))  # type: ignore[misc]
    if spoken(reply):
        sender.once(f"{reply.message_id}:voice", lambda: send_voice(adapters, bot, reply, chat))
    logger.info("telegram reply to message %s delivered", reply.message_id)
    observe_delivered(reply, runtime)


class Sender:
    """Sends a reply's pieces to one chat: each once, paced, waiting out flood control."""

    def __init__(self, adapters: Adapters, chat: str, waiting: Waiting) -> None:
        self._marks = adapters.marks
        self._interval = adapters.settings.telegram.chat_interval_seconds
        self._pace_key = f"telegram:pace:{chat}"
        self._waiting = waiting

    def once(self, piece_id: str, send: Callable[[], object]) -> None:
        sent_key = f"telegram:sent:{piece_id}"
        if self._marks.remaining(sent_key) > 0:
            return  # sent before this delivery (a redelivery, or a wait after an earlier piece)
        # Two deliveries of one reply at once (a redelivery beside a slow first one) never both send a piece: the
        # other looks again shortly, and finds it sent or free.
        sending_key = f"telegram:sending:{piece_id}"
        if not self._marks.claim(sending_key, SENDING_LEASE_SECONDS):
            raise NotYet(BUSY_RETRY_SECONDS)
        try:
            if self._marks.remaining(sent_key) > 0:
                return
            self._send(piece_id, sent_key, send)
        finally:
            self._marks.release(sending_key)

    def _send(self, piece_id: str, sent_key: str, send: Callable[[], object]) -> None:
        self._pace()
        try:
            send()
        except TelegramError as exc:
            self._refused(exc)
        except TelegramUnreachable:
            self._unpace()
            raise
        try:
            self._marks.claim(sent_key, SENT_TTL_SECONDS)
        except UNAVAILABLE as exc:
            # Sent: retrying would send it again. Only a redelivery could, now.
            logger.warning("could not mark %s sent: %s", piece_id, type(exc).__name__)

    def _pace(self) -> None:
        """About one message a second per chat, as Telegram asks; a piece that comes too soon waits, queued."""
        if self._interval > 0 and not self._marks.claim(self._pace_key, self._interval):
            self._wait(max(self._marks.remaining(self._pace_key), 0.05))

    def _unpace(self) -> None:
        # Nothing reached the chat: its retry need not wait for the pace (the stage skeleton's re-queue for a wait
        # starts its retry count again, so a retry must not be made to wait by its own failed try).
        if self._interval > 0:
            self._marks.release(self._pace_key)

    def _refused(self, exc: TelegramError) -> None:
        if exc.status == 429:
            retry_after = exc.retry_after if exc.retry_after is not None else 1.0
            logger.warning("telegram flood control: %s; waiting %g s", exc.method, retry_after)
            # The whole chat waits, not only this piece.
            self._marks.release(self._pace_key)
            self._marks.claim(self._pace_key, retry_after)
            self._wait(retry_after)
        if exc.transient:
            self._unpace()
            raise exc  # retried with back-off by the stage skeleton, then dead-lettered
        # The chat is gone, the bot was blocked, the request is wrong: no retry can help.
        raise GiveUp(f"Telegram refused {exc.method}: {exc.status} {exc.description}") from None

    def _wait(self, seconds: float) -> None:
        if self._waiting.seconds + seconds > MAX_WAIT_SECONDS:
            raise GiveUp(f"waited {self._waiting.seconds:.0f} s for Telegram's rate limits")
        raise NotYet(seconds)


def spoken(reply: Reply) -> bool:
    """True when ``tts`` spoke the reply (its audio is in blob storage)."""
    audio = reply.audio
    return bool(audio) and audio.get("status") == "ready" and isinstance(audio.get("key"), str)  # type: ignore[union-attr]


def send_voice(adapters: Adapters, bot: TelegramBot, reply: Reply, chat: str) -> None:
    """Send the reply's speech as an OGG/Opus voice note; nothing when the audio expired or does not encode (the
    text went out already)."""
    wav = adapters.blobs.get(str((reply.audio or {})["key"]))
    if wav is None:
        logger.warning("the speech of message %s expired before it was sent", reply.message_id)
        return
    try:
        ogg, seconds = wav_to_voice_note(wav)
    except Exception as exc:
        logger.error("could not encode the speech of message %s: %s", reply.message_id, type(exc).__name__)
        return
    bot.send_voice(chat, ogg, seconds)


deliver_telegram_task = stage_task(
    StageSpec(
        deliver_task(Channel.TELEGRAM),
        reply_queue(Channel.TELEGRAM),
        Reply.from_json,
        deliver_telegram,
        answers_user=False,
    ),
    max_retries=MAX_SEND_RETRIES,
)
