"""The composition root: builds every adapter from settings, once per process, for the entry points."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from adapters.db import Repository
from adapters.http import post_json
from adapters.open_meteo import OpenMeteo
from adapters.state import Coordination, MemoryCoordination, MemoryReplyStream, ReplyStream, SkippedNumbers
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
    _closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        for closer in reversed(self._closers):
            try:
                closer()
            except Exception:
                logger.exception("closing an adapter failed")


def build_adapters(settings: Settings, migrate: bool = False, pool_size: int = 5, pre_ping: bool = True) -> Adapters:
    """Everything the process needs; embedded settings give in-process stores and SQLite.

    ``pre_ping=False`` for processes whose every database call is retried on failure (see ``create_engine_for``).
    """
    repository = Repository.from_url(settings.database_url, pool_size=pool_size, pre_ping=pre_ping)
    if migrate:
        repository.migrate()
    closers: list[Callable[[], None]] = [repository.close]
    coordination: Coordination
    replies: ReplyStream
    if settings.redis_url:
        from adapters.redis_state import RedisCoordination, RedisReplyStream, connect

        client = connect(settings.redis_url, max_connections=max(50, pool_size * 4))
        subscriber = connect(settings.redis_url, max_connections=2)
        coordination = RedisCoordination(client)
        replies = RedisReplyStream(client, subscriber)
        closers += [client.close, subscriber.close]
    else:
        skipped = SkippedNumbers()
        coordination = MemoryCoordination(skipped)
        replies = MemoryReplyStream(skipped)
    timeout = settings.http_timeout_seconds
    return Adapters(
        settings=settings,
        coordination=coordination,
        replies=replies,
        repository=repository,
        weather=OpenMeteo(settings.weather_geocoding_url, settings.weather_forecast_url, timeout),
        post_json=partial(post_json, timeout=timeout, max_bytes=settings.webhook_max_bytes,
                          allow_hosts=settings.webhook_allow_hosts),
        _closers=closers,
    )
