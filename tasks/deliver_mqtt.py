"""The MQTT channel's deliverer: drains ``reply.mqtt``, publishing device commands and replies to devices.

Two tasks share the queue. ``assistant.deliver.mqtt`` answers a device: the reply goes to the transcript and
the session's reply stream (which keeps a session's replies in order, and ends the edge's watch on the message),
then its device commands and the reply itself are published. ``assistant.deliver.commands`` publishes the device
commands of a reply that goes back on another channel (typing 开卧室灯 in the web chat switches the lamp too).

Exactly-once effects: an attempt claims a mark (``adapters.marks``) before it publishes, waits for the broker's PUBACK,
and only then marks it sent; later attempts find it sent, concurrent ones wait for the claim. A broker that is
down fails the publish, the claim is released and the task retries: the reply is never lost. A worker that dies
after the PUBACK and before the mark publishes that message again when its task is redelivered: the one window,
a Redis round trip wide, in which a device sees a message twice, and then with the same ``id`` / ``message_id``,
by which it can drop the repeat. ``docs/mqtt-delivery.md`` tells the whole story.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from functools import partial

from adapters.errors import UNAVAILABLE
from adapters.marks import Marks
from adapters.mqtt import parse_reply_address, topics
from adapters.mqtt_publisher import MqttPublisher
from pipeline.device_delivery import (
    DEVICE_COMMANDS_TASK,
    expired,
    expiry_interval,
    has_device_actions,
    reply_payload,
    seconds_left,
)
from pipeline.devices import DeviceCommand, DevicesConfig, device_commands
from pipeline.envelope import Reply
from pipeline.stages import Channel, deliver_task, reply_queue
from tasks.deliver import observe_delivered, record_in_order
from tasks.runtime import StageRuntime
from tasks.stage import GiveUp, NotYet, StageSpec, Waiting, stage_task

logger = logging.getLogger(__name__)

#: Seconds a reply's sent mark is kept: past every redelivery, retry and rescue of its message, which come within
#: minutes (visibility timeout 15 s, retries about a minute and a half, three rescues 20 s apart).
REPLY_MARK_SECONDS = 3600
#: Seconds a command's mark outlives the command: once expired it is dropped anyway, marked or not.
COMMAND_MARK_MARGIN_SECONDS = 60
#: Seconds a claim to publish lasts: past a publish's waits for the connection and the PUBACK (5 s each), so it
#: only runs out when its worker died; by then the broker's redelivery (15 s) may claim it again.
CLAIM_LEASE_SECONDS = 15.0
#: Seconds an attempt waits, re-queued, when another attempt of the same message is publishing.
BUSY_RETRY_SECONDS = 0.5


def deliver_mqtt_reply(reply: Reply, runtime: StageRuntime, waiting: Waiting) -> None:
    """Store the reply, append it to its session's stream in order, then publish its commands and itself.

    Appending comes first, as the web deliverer does: it is idempotent by message id, keeps a session's replies
    in order across the deliverers draining the queue, and tells the rescue sweep the message was answered. A
    publish that fails after the append is retried by the task: the append then finds the reply there already
    and the publishing goes on, since whether something went out is the sent marks' business, not the stream's.
    """
    reply = record_in_order(reply, runtime, waiting)
    publisher = _publisher(runtime)
    # Commands before the reply: a reply that says the lamp is on goes out after the command that switches it.
    publish_commands(reply, runtime, publisher)
    address = parse_reply_address(reply.reply_to)
    if address is None:
        raise GiveUp("the reply has no MQTT reply address (<device>/<request id>)")
    device_id, request_id = address
    mqtt = runtime.settings.mqtt
    topic = topics(mqtt.topic_prefix, mqtt.state_prefix).reply_topic(device_id)
    body = json.dumps(reply_payload(reply, request_id), ensure_ascii=False).encode()
    sent = publish_once(runtime.adapters.marks, f"mqtt:reply:{reply.message_id}", REPLY_MARK_SECONDS,
                        partial(publisher.publish, topic, body))  # fmt: skip
    if not sent:
        logger.info("reply to message %s was published already", reply.message_id)
    observe_delivered(reply, runtime)


def deliver_device_commands(reply: Reply, runtime: StageRuntime, waiting: Waiting) -> None:
    """Publish the device commands of a reply that goes back on another channel."""
    publish_commands(reply, runtime, _publisher(runtime))


def publish_commands(reply: Reply, runtime: StageRuntime, publisher: MqttPublisher) -> None:
    """Publish each device command of ``reply`` once, QoS 1, never retained, with its expiry; drop the expired."""
    if not has_device_actions(reply):
        return
    devices = runtime.adapters.devices
    if devices is None:
        logger.warning("message %s asks to switch devices, but there is no devices file", reply.message_id)
        return
    mqtt = runtime.settings.mqtt
    marks = runtime.adapters.marks
    commands = device_commands(reply.actions, devices, reply.message_id, reply.created_at, mqtt.command_ttl_seconds)
    for index, command in enumerate(commands):
        entity = command.payload.get("entity_id")
        left = seconds_left(command.payload, time.time())
        if expired(left):
            assert left is not None
            logger.warning("command %s for %s of message %s expired %.1f s ago in the queue; dropped",
                           command.payload.get("service"), entity, reply.message_id, -left)  # fmt: skip
            continue
        body = json.dumps(command.payload, ensure_ascii=False).encode()
        interval = expiry_interval(left)
        topic = command_topic(command, devices, mqtt.state_prefix)
        publish_once(marks, f"mqtt:command:{reply.message_id}:{index}:{entity}",
                     (interval or REPLY_MARK_SECONDS) + COMMAND_MARK_MARGIN_SECONDS,
                     partial(publisher.publish, topic, body, interval))  # fmt: skip


def publish_once(marks: Marks, key: str, ttl: int, publish: Callable[[], None]) -> bool:
    """Run ``publish`` unless ``key`` went out already; False when it had.

    ``<key>:sending`` is claimed first, so two attempts of one message running at once never both publish (the
    other is re-queued for a moment); ``<key>:sent`` is set once the broker took the message, and looked for
    after the claim, so an attempt that comes after it finds it. The claim is released either way.
    """
    if not marks.claim(f"{key}:sending", CLAIM_LEASE_SECONDS):
        # Another attempt is publishing it: look again shortly (it marks it sent, or fails and releases it).
        raise NotYet(BUSY_RETRY_SECONDS)
    try:
        if marks.remaining(f"{key}:sent") > 0:
            return False
        publish()
        try:
            marks.claim(f"{key}:sent", ttl)
        except UNAVAILABLE as exc:
            # Published: a retry would publish it again. Only a redelivery could, now.
            logger.warning("could not mark %s sent: %s", key, type(exc).__name__)
        return True
    finally:
        marks.release(f"{key}:sending")


def command_topic(command: DeviceCommand, devices: DevicesConfig, state_prefix: str) -> str:
    """The entity's ``command_topic`` attribute, else ``<MQTT_STATE_PREFIX>/<area id>/<object id>/set``."""
    entity = devices.entity(str(command.payload.get("entity_id")))
    if entity is None or entity.attributes.get("command_topic"):
        return command.topic
    levels = (entity.area, entity.object_id) if entity.area else (entity.object_id,)
    return "/".join((state_prefix, *levels, "set"))


def _publisher(runtime: StageRuntime) -> MqttPublisher:
    publisher = runtime.adapters.mqtt
    if publisher is None:
        raise GiveUp("MQTT_URL is not set in this worker: nothing to publish with")
    return publisher


deliver_mqtt_task = stage_task(
    StageSpec(
        deliver_task(Channel.MQTT), reply_queue(Channel.MQTT), Reply.from_json, deliver_mqtt_reply, answers_user=False
    )
)

deliver_commands_task = stage_task(
    StageSpec(
        DEVICE_COMMANDS_TASK, reply_queue(Channel.MQTT), Reply.from_json, deliver_device_commands, answers_user=False
    )
)
