"""The inference stage: answers what no skill matched. Until a model backend is configured, a fallback."""

from __future__ import annotations

import logging

from celery import Task, shared_task

from pipeline.envelope import Envelope, Reply
from pipeline.errors import EnvelopeError
from pipeline.language import detect_language
from pipeline.settings import Settings
from tasks.forward import Forwarder, too_many_deliveries
from tasks.runtime import runtime_for

logger = logging.getLogger(__name__)


@shared_task(name="assistant.inference", bind=True)
def inference_task(self: Task, envelope_json: str) -> None:
    runtime = runtime_for(self.app)
    try:
        envelope = Envelope.from_json(envelope_json)
    except EnvelopeError as exc:
        logger.error("dropping undecodable envelope: %s", exc)
        runtime.adapters.repository.dead_letter(self.name, "inference", None, envelope_json, str(exc), 1)
        return
    if too_many_deliveries(self, runtime, envelope.message_id, envelope_json):
        return
    Forwarder(self.app).reply(fallback_reply(envelope, runtime.settings))


def fallback_reply(envelope: Envelope, settings: Settings) -> Reply:
    """The configured answer in the user's language."""
    language = detect_language(envelope.text, envelope.language)
    text = settings.fallback_reply_zh if language == "zh" else settings.fallback_reply_en
    return Reply.answering(envelope, text, skill="fallback")
