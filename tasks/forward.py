"""How a stage hands a message to the next queue: by task name, never by calling the next stage."""

from __future__ import annotations

import logging
from dataclasses import replace

from celery import Celery

from pipeline.device_delivery import DEVICE_COMMANDS_TASK, has_device_actions, is_device_action
from pipeline.envelope import Envelope, Reply
from pipeline.handoff import HANDOFF_TIMEOUT_TASK
from pipeline.stages import TASK_NAMES, Channel, Stage, deliver_task, reply_queue, reply_stage
from skills.base import VISITOR

logger = logging.getLogger(__name__)


class Forwarder:
    """Sends envelopes to stage queues and replies to their channel's reply queue."""

    def __init__(self, app: Celery) -> None:
        self._app = app
        # Device commands are published by the MQTT deliverer: only when MQTT is configured (its route exists).
        routes = app.conf.task_routes
        self._publishes_commands = isinstance(routes, dict) and deliver_task(Channel.MQTT) in routes
        self._said_no_mqtt = False

    def to_stage(self, stage: Stage, envelope: Envelope) -> None:
        self._app.send_task(
            TASK_NAMES[stage], args=[envelope.to_json()], queue=str(stage), **shown_as(envelope.message_id)
        )

    def reply(self, reply: Reply) -> None:
        """Send ``reply`` towards its client: through ``tts`` first when it is to be spoken (every reply is, an
        apology too, when the client asked for speech), else to its channel's reply queue.

        Its device commands, if any, go out at once: the MQTT deliverer publishes them with an MQTT reply, and
        ``assistant.deliver.commands`` for a reply to another channel or one still to be spoken (a lamp is not
        switched after the synthesis). A reply back from ``tts`` has had its commands sent already.

        A reply to a website's visitor never switches a device: its device actions are dropped (and logged).
        """
        if VISITOR in reply.roles and has_device_actions(reply):
            # Skills that switch devices do not serve visitors; this is the last guard should one slip through.
            logger.warning(
                "reply to message %s (skill %s) is for a website visitor: its device actions were dropped",
                reply.message_id, reply.skill,
            )  # fmt: skip
            reply = replace(reply, actions=tuple(a for a in reply.actions if not is_device_action(a)))
        to_tts = reply_stage(reply.wants, spoken=reply.audio is not None) is Stage.TTS
        if reply.audio is None and (to_tts or reply.channel != Channel.MQTT) and has_device_actions(reply):
            self._commands(reply)
        if to_tts:
            self._app.send_task(
                TASK_NAMES[Stage.TTS], args=[reply.to_json()], queue=str(Stage.TTS), **shown_as(reply.message_id)
            )
            return
        self._app.send_task(
            deliver_task(reply.channel),
            args=[reply.to_json()],
            queue=reply_queue(reply.channel),
            **shown_as(reply.message_id),
        )

    def handoff_timeout(self, session_id: str, handoff_id: str, countdown: float) -> None:
        """Schedule the end of handoff ``handoff_id`` in ``countdown`` seconds, should nobody take the session.

        A delayed task on the dispatch queue: the worker holding it keeps its delivery alive, and a worker that
        dies hands it to another. It does nothing if the session was taken or given back meanwhile.
        """
        self._app.send_task(
            HANDOFF_TIMEOUT_TASK,
            args=[session_id, handoff_id],
            countdown=countdown,
            queue=str(Stage.DISPATCH),
            argsrepr=f"(session {session_id})",
            kwargsrepr="{}",
        )

    def _commands(self, reply: Reply) -> None:
        """Hand the reply's device commands to the MQTT deliverer, before the reply itself: its "done" follows
        the switching. Both publish each command once (by message id), whichever comes first."""
        if not self._publishes_commands:
            if not self._said_no_mqtt:
                self._said_no_mqtt = True
                logger.info("replies switch devices, but MQTT_URL is not set: no device commands are published")
            return
        self._app.send_task(
            DEVICE_COMMANDS_TASK, args=[reply.to_json()], queue=reply_queue(Channel.MQTT), **shown_as(reply.message_id)
        )

    def backlog(self, stage: Stage) -> int:
        """How many messages wait in ``stage``'s queue (a passive declare: nothing is created; none if it does
        not exist yet)."""
        with self._app.pool.acquire(block=True) as connection:
            channel = connection.default_channel
            try:
                declared = channel.queue_declare(queue=str(stage), passive=True)
            except connection.channel_errors:
                return 0
        return int(declared.message_count)


def shown_as(message_id: str) -> dict[str, str]:
    """How Flower and worker logs show a task's arguments: the message id, not what the user wrote.

    It also spares Celery a ``saferepr`` of the whole envelope on every send.
    """
    return {"argsrepr": f"(message {message_id})", "kwargsrepr": "{}"}
