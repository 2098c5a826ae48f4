"""What the inference stage asks a generative model, and the one interface every backend implements."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from pipeline.errors import AssistantError

#: Called with each piece of text as the model produces it (streaming backends call it many times).
DeltaListener = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class ChatTurn:
    """One earlier exchange of the session, oldest first in ``GenerationRequest.history``."""

    #: What the user said.
    user: str
    #: What the assistant answered.
    assistant: str


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """One reply to generate."""

    #: The user's message.
    text: str
    #: ``zh`` or ``en``: the language to answer in.
    language: str
    #: The session's recent turns, oldest first.
    history: tuple[ChatTurn, ...] = ()
    #: Instructions for the model (the system prompt), from settings.
    system_prompt: str = ""
    #: Seconds the whole reply may take.
    timeout_seconds: float = 30.0
    #: Ids for logs only; never sent to the model.
    message_id: str = ""
    session_id: str = ""
    #: Extra options a backend may read (sampling temperature, ...).
    options: dict[str, float | int | str] = field(default_factory=dict)


class Generator(Protocol):
    """A generative backend: OpenAI-compatible server, TensorFlow Serving, or a local ONNX model."""

    def generate(self, request: GenerationRequest, on_delta: DeltaListener | None = None) -> str:
        """The whole reply text; ``on_delta`` gets each piece as it comes. Raises ``ModelUnavailable``."""
        ...


class ModelUnavailable(AssistantError):
    """The model backend is down, too slow, or answered something unusable. The message names the backend and the
    failure only, never the user's text."""

    code = "model_unavailable"
