"""The inference stage: answers what no skill matched. Until a model backend is configured, a fallback."""

from __future__ import annotations

from pipeline.envelope import Envelope, Reply
from pipeline.language import detect_language
from pipeline.settings import Settings
from pipeline.stages import TASK_NAMES, Stage
from tasks.runtime import StageRuntime
from tasks.stage import StageSpec, Waiting, stage_task


def handle_unmatched(envelope: Envelope, runtime: StageRuntime, waiting: Waiting) -> None:
    runtime.forward.reply(fallback_reply(envelope, runtime.settings))


def fallback_reply(envelope: Envelope, settings: Settings) -> Reply:
    """The configured answer in the user's language."""
    language = detect_language(envelope.text, envelope.language)
    text = settings.fallback_reply_zh if language == "zh" else settings.fallback_reply_en
    return Reply.answering(envelope, text, skill="fallback")


inference_task = stage_task(StageSpec(TASK_NAMES[Stage.INFERENCE], str(Stage.INFERENCE), Envelope.from_json,
                                      handle_unmatched))  # fmt: skip
