"""The web channel's deliverer: drains ``reply.web`` into the session's reply stream and transcript."""

from __future__ import annotations

import logging
import time

from celery import Task, shared_task

from adapters.state import EarlierReplyPending, ReplyStream
from pipeline.envelope import Reply
from pipeline.errors import EnvelopeError
from tasks.forward import too_many_deliveries
from tasks.runtime import runtime_for

logger = logging.getLogger(__name__)

MAX_RETRIES = 5
#: How long a reply waits for the reply to its session's previous message before it goes out anyway.
#: Several deliverer threads drain the queue at once; the earlier reply is nearly always milliseconds
#: away, and the bound keeps a lost one from holding the session up.
ORDER_WAIT_SECONDS = 2.0
ORDER_POLL_SECONDS = 0.002


@shared_task(name="assistant.deliver.web", bind=True)
def deliver_web_task(self: Task, reply_json: str) -> None:
    runtime = runtime_for(self.app)
    try:
        reply = Reply.from_json(reply_json)
    except EnvelopeError as exc:
        logger.error("dropping undecodable reply: %s", exc)
        runtime.adapters.repository.dead_letter(self.name, "reply.web", None, reply_json, str(exc), 1)
        return
    if too_many_deliveries(self, runtime, reply.message_id, reply_json):
        return
    try:
        # The transcript first (unless the dispatch stage stored the reply with its message), so a client that
        # has its reply finds it there too. Both steps are idempotent by message id: a redelivery completes
        # what a lost worker left half done, and sends nothing twice.
        if not reply.recorded:
            runtime.adapters.repository.record_reply(reply)
        append_in_order(runtime.adapters.replies, reply, runtime.settings.session_ttl_seconds)
    except Exception as exc:
        if self.request.retries < MAX_RETRIES:
            countdown = min(2**self.request.retries, 30)
            logger.warning("%s %s failed (%r); retrying in %d s", self.name, reply.message_id, exc, countdown)
            raise self.retry(exc=exc, countdown=countdown) from exc
        logger.exception("giving up on reply %s", reply.message_id)
        runtime.adapters.repository.dead_letter(self.name, "reply.web", reply.message_id, reply_json, repr(exc), 0)


def append_in_order(replies: ReplyStream, reply: Reply, ttl: int) -> str | None:
    """Append ``reply`` after the reply to its session's previous message, waiting a bounded time for it."""
    deadline = time.monotonic() + ORDER_WAIT_SECONDS
    while True:
        force = time.monotonic() > deadline
        try:
            return replies.append(reply, ttl, force=force)
        except EarlierReplyPending:
            time.sleep(ORDER_POLL_SECONDS)
