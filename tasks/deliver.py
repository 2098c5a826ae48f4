"""The web channel's deliverer: drains ``reply.web`` into the session's reply stream and transcript."""

from __future__ import annotations

import time

from adapters.state import EarlierReplyPending
from pipeline.envelope import Reply, ReplyKind, ReplyRole
from pipeline.handoff import HandoffStatus
from pipeline.stages import Channel, deliver_task, reply_queue
from pipeline.turns import REPLY_ORDER_WAIT_SECONDS, retry_delay
from tasks.runtime import StageRuntime
from tasks.stage import NotYet, StageSpec, Waiting, stage_task

#: Longest an operator's word waits for the notices before it (longer than the reply-order wait, which the answer
#: to the request for a person may be spending): past it, that notice is taken for lost and it goes anyway.
HANDOFF_ORDER_WAIT_SECONDS = 10.0


def deliver_reply(reply: Reply, runtime: StageRuntime, waiting: Waiting) -> None:
    """The web channel's delivery: the session's stream is where its clients read replies."""
    record_in_order(reply, runtime, waiting)
    observe_delivered(reply, runtime)


def observe_delivered(reply: Reply, runtime: StageRuntime) -> None:
    """``assistant_end_to_end_seconds{channel}``: from the edge accepting the message to its reply going out."""
    if reply.accepted_at > 0:
        elapsed = max(0.0, time.time() - reply.accepted_at)
        runtime.adapters.metrics.end_to_end.labels(reply.channel).observe(elapsed)


def record_in_order(reply: Reply, runtime: StageRuntime, waiting: Waiting) -> Reply:
    """Store the reply and append it to its session's stream, after the reply to the session's previous message;
    the reply that stands for its message: this one, or one appended before it (a message answered twice, after a
    redelivery, keeps its first answer, and a channel sends that one).

    Every channel's deliverer starts with this: the stream keeps a session's replies in order, and tells the
    lost-message sweep (tasks/rescue.py) that the message was answered. Several deliverers drain a queue at once: a
    reply whose predecessor has not gone out yet is re-queued for a moment, up to ``REPLY_ORDER_WAIT_SECONDS``,
    after which it goes out anyway.
    """
    # The transcript first (unless the dispatch stage stored the reply with its message), so a client that has
    # its reply finds it there too. Both steps are idempotent by message id: a redelivery completes what a
    # lost worker left half done, and sends nothing twice.
    if not reply.recorded and waiting.attempt == 0:  # a re-queued reply was stored on its first attempt
        runtime.adapters.repository.record_reply(reply)
    ttl = runtime.settings.session_ttl_seconds
    wait, joined_key = handoff_order(reply, runtime)
    if wait and (later := retry_delay(waiting.attempt, waiting.seconds, HANDOFF_ORDER_WAIT_SECONDS)) is not None:
        raise NotYet(later)
    delay = retry_delay(waiting.attempt, waiting.seconds, REPLY_ORDER_WAIT_SECONDS)
    try:
        cursor = runtime.adapters.replies.append(reply, ttl, force=delay is None)
    except EarlierReplyPending:
        raise NotYet(delay or 0.0) from None
    if joined_key is not None:
        runtime.adapters.marks.claim(joined_key, ttl)  # the agent's replies may go now
    if cursor is None:  # the message had a reply already
        first = runtime.adapters.replies.reply_for(reply.message_id)
        if first is not None:
            return first[1]
    return reply


def handoff_order(reply: Reply, runtime: StageRuntime) -> tuple[bool, str | None]:
    """For an operator's word (the "joined" notice, an agent's reply) in a session a person has: whether it waits,
    and the mark a joined notice sets once out. Any other reply: ``(False, None)``.

    Those have no place in the session's order (seq 0): without this, a visitor whose earlier message was still
    being answered would read "joined" and the operator's reply before "connecting you to a person", and an agent's
    reply could overtake the "joined" notice. The joined notice waits for the answer to the request for a person;
    an agent's reply for that answer and for the joined notice of the current take.
    """
    if reply.channel != Channel.WEB or reply.seq != 0:
        return False, None
    joined = reply.kind == ReplyKind.HANDOFF and (reply.handoff or {}).get("status") == HandoffStatus.ACTIVE
    if not joined and reply.role != ReplyRole.AGENT:
        return False, None
    current = runtime.adapters.handoffs.get(reply.session_id)
    if current is None or current.status is not HandoffStatus.ACTIVE:
        return False, None
    # The take's own mark: a later take (after a hand-back and a new request) has another ``since``.
    key = f"handoff-joined:{current.session_id}:{current.since!r}"
    if runtime.adapters.replies.reply_for(current.handoff_id) is None:
        return True, key if joined else None
    if joined:
        return False, key
    return runtime.adapters.marks.remaining(key) <= 0, None


deliver_web_task = stage_task(
    StageSpec(deliver_task(Channel.WEB), reply_queue(Channel.WEB), Reply.from_json, deliver_reply, answers_user=False)
)
