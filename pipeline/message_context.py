"""The message a thread is working on, for logs, error reports and metrics: set by the stage skeleton and the edges.

A ``ContextVar``, so each worker thread (and greenlet) sees its own message. Ids only, never the text.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class MessageContext:
    """Who and where: the ids of the message being handled."""

    #: The message's id.
    message_id: str
    #: Its session.
    session_id: str
    #: The channel it came from (``web``, ``mqtt``, ``telegram``).
    channel: str
    #: The stage handling it: ``asr``, ``dispatch``, ``inference``, ``tts``, ``deliver``, or an edge (``gateway``,
    #: ``mqtt``).
    stage: str
    #: The Celery task's name, when a task handles it.
    task: str = ""


_CURRENT: ContextVar[MessageContext | None] = ContextVar("assistant_message", default=None)


def current_message() -> MessageContext | None:
    """The message this thread is working on, None outside one."""
    return _CURRENT.get()


@contextmanager
def working_on(context: MessageContext) -> Iterator[MessageContext]:
    """Mark the block as working on ``context``'s message; the previous one is restored after it."""
    token = _CURRENT.set(context)
    try:
        yield context
    finally:
        _CURRENT.reset(token)


def stage_of_queue(queue: str) -> str:
    """The stage label of a queue: the stage queues name themselves, every ``reply.<channel>`` is ``deliver``."""
    return "deliver" if queue.startswith("reply.") else queue
