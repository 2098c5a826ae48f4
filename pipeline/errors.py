"""One error tree for the whole pipeline, so every failure has a code; stages add theirs as they come."""

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


class SkillError(AssistantError):
    """A skill raised, timed out or returned something unusable."""

    code = "skill_error"


class SkillTimeout(SkillError):
    code = "skill_timeout"
