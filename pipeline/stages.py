"""The stages of the pipeline, their queue names, and which queue a message goes to next."""

from __future__ import annotations

from enum import StrEnum

from pipeline.envelope import Envelope


class Stage(StrEnum):
    """A pool of workers consuming one queue."""

    ASR = "asr"
    DISPATCH = "dispatch"
    INFERENCE = "inference"
    TTS = "tts"


class Channel(StrEnum):
    """Where messages come from and replies go back to; each has its reply queue."""

    WEB = "web"
    TELEGRAM = "telegram"
    MQTT = "mqtt"


#: Task names, the only coupling between an edge and the stage it submits to.
TASK_NAMES: dict[Stage, str] = {
    Stage.ASR: "assistant.asr",
    Stage.DISPATCH: "assistant.dispatch",
    Stage.INFERENCE: "assistant.inference",
    Stage.TTS: "assistant.tts",
}

DELIVER_TASK_PREFIX = "assistant.deliver."


def reply_queue(channel: str) -> str:
    """The queue the replies of ``channel`` travel on."""
    return f"reply.{channel}"


def deliver_task(channel: str) -> str:
    """Name of the task that drains a channel's reply queue."""
    return f"{DELIVER_TASK_PREFIX}{channel}"


def all_queues(channels: list[str] | tuple[str, ...] = tuple(Channel)) -> list[str]:
    """Every queue a worker started with no ``--queues`` consumes."""
    return [str(stage) for stage in Stage] + [reply_queue(c) for c in channels]


def first_stage(envelope: Envelope) -> Stage:
    """Where a freshly accepted envelope goes: recognition first when it carries audio."""
    if envelope.audio_key and not envelope.text:
        return Stage.ASR
    return Stage.DISPATCH


def wants_speech(envelope: Envelope) -> bool:
    """True when the reply must pass through speech synthesis before delivery."""
    return "speech" in envelope.wants
