"""The adapters a process holds, as one value the composition root builds and hands down."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from adapters.db import Repository
from adapters.open_meteo import OpenMeteo
from adapters.revocation import Revocations
from adapters.state import Coordination, ReplyStream
from pipeline.settings import Settings

logger = logging.getLogger(__name__)


@dataclass
class Adapters:
    """The outside world as the stages and edges see it."""

    settings: Settings
    coordination: Coordination
    replies: ReplyStream
    repository: Repository
    weather: OpenMeteo
    #: POSTs JSON to a URL with the configured timeout; used by webhook skills.
    post_json: Callable[[str, dict[str, Any]], Any]
    #: Revoked tokens (Redis, or a SQLite file in the data folder when embedded).
    revocations: Revocations
    _closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        for closer in reversed(self._closers):
            try:
                closer()
            except Exception:
                logger.exception("closing an adapter failed")
