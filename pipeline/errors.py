"""One error tree for the whole pipeline, a subclass per stage, so every failure has a code."""

from __future__ import annotations


class AssistantError(Exception):
    """Base of every error the assistant raises on purpose; ``code`` is what clients see."""

    code = "assistant_error"


class ConfigurationError(AssistantError):
    """Settings are missing or invalid; raised at start-up, never per message."""

    code = "configuration_error"


class EnvelopeError(AssistantError):
    """A queue message or reply could not be decoded."""

    code = "bad_envelope"


class StageError(AssistantError):
    """A stage failed to handle a message."""

    code = "stage_error"


class DispatchError(StageError):
    code = "dispatch_error"


class SkillError(DispatchError):
    """A skill raised, timed out or returned something unusable."""

    code = "skill_error"


class SkillTimeout(SkillError):
    code = "skill_timeout"


class InferenceError(StageError):
    code = "inference_error"


class AsrError(StageError):
    code = "asr_error"


class TtsError(StageError):
    code = "tts_error"


class DeliveryError(StageError):
    code = "delivery_error"
