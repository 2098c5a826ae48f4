"""Remembered state of the smart home's entities: the interface skills read and the MQTT edge writes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class EntityState:
    """An entity's last reported state."""

    #: ``light.bedroom_lamp``.
    entity_id: str
    #: ``on``, ``off``, ``21.5``, ``locked``, ...
    state: str
    #: What came with it (``brightness``, ``current_temperature``, ...).
    attributes: dict[str, Any] = field(default_factory=dict)
    #: Unix seconds when it was remembered.
    updated_at: float = 0.0


class HomeState(Protocol):
    """Where entity states are remembered (Redis in the distributed layout, memory when embedded)."""

    def set(self, entity_id: str, state: str, attributes: dict[str, Any] | None = None) -> None:
        """Remember ``state`` (and ``attributes``, replacing earlier ones) for ``entity_id``."""
        ...

    def get(self, entity_id: str) -> EntityState | None:
        """The last state remembered for ``entity_id``, or None."""
        ...
