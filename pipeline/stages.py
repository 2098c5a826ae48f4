"""The stages of the pipeline, their queue names, and which queue a message goes to next."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class Stage(StrEnum):
    """A pool of workers consuming one queue."""

    #: Speech recognition: audio in blob storage becomes the message's text.
    ASR = "asr"
    #: Skills answer, or the message goes on to inference.
    DISPATCH = "dispatch"
    #: Model backends answer what no skill matched.
    INFERENCE = "inference"
    #: Speech synthesis: a reply the client wants spoken gets its audio.
    TTS = "tts"


class Channel(StrEnum):
    """Where messages come from and replies go back to; each has its reply queue."""

    WEB = "web"
    #: Smart-home devices over MQTT; the deliverer also publishes device commands.
    MQTT = "mqtt"
    #: Telegram bots, through the Bot API.
    TELEGRAM = "telegram"


#: The stage queues, in pipeline order.
STAGE_QUEUES: tuple[Stage, ...] = tuple(Stage)

#: Task names, the only coupling between an edge and the stage it submits to.
TASK_NAMES: dict[Stage, str] = {
    Stage.ASR: "assistant.asr",
    Stage.DISPATCH: "assistant.dispatch",
    Stage.INFERENCE: "assistant.inference",
    Stage.TTS: "assistant.tts",
}

#: What a client may ask for back (``Envelope.wants``): ``speech`` sends the reply through the ``tts`` stage.
WANTS_TEXT = "text"
WANTS_SPEECH = "speech"

DELIVER_TASK_PREFIX = "assistant.deliver."


def entry_stage(audio_key: str | None, text: str) -> Stage:
    """The first stage of an accepted message: ``asr`` while it is audio not yet recognised, else ``dispatch``."""
    return Stage.ASR if audio_key is not None and not text else Stage.DISPATCH


def reply_stage(wants: Iterable[str], spoken: bool) -> Stage | None:
    """Where a reply goes next: ``tts`` when the client wants speech and the reply has none yet (``spoken``: it was
    synthesized, or found unspeakable); None for its channel's reply queue."""
    return Stage.TTS if WANTS_SPEECH in wants and not spoken else None


def reply_queue(channel: str) -> str:
    """The queue the replies of ``channel`` travel on."""
    return f"reply.{channel}"


def deliver_task(channel: str) -> str:
    """Name of the task that drains a channel's reply queue."""
    return f"{DELIVER_TASK_PREFIX}{channel}"


def delivered_channels(enabled: Iterable[str]) -> list[str]:
    """The enabled channels that have a deliverer (a task on their reply queue)."""
    known = {str(channel) for channel in Channel}
    return [name for name in enabled if name in known]


def all_queues(enabled_channels: Iterable[str] = (Channel.WEB,)) -> list[str]:
    """Every queue a worker started with no ``--queues`` consumes: the stages and the channels' reply queues."""
    return [str(stage) for stage in STAGE_QUEUES] + [reply_queue(c) for c in delivered_channels(enabled_channels)]
