"""The intent classifier's answer, and the interface dispatch consults when no trigger matches."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

#: The classifier's label for messages meant for no skill (small talk); no skill may take this name.
NONE_LABEL = "__none__"


@dataclass(frozen=True, slots=True)
class IntentGuess:
    """The classifier's top intent for a message."""

    #: The name of the skill it points to.
    skill: str
    #: The classifier's probability for it, 0..1.
    confidence: float


class IntentClassifier(Protocol):
    """Maps a message to the skill most likely meant; None when no model is loaded."""

    def classify(self, text: str) -> IntentGuess | None: ...
