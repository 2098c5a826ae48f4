"""The errors by which the outside world says it is unreachable for now (an edge answers 503, a stage retries)."""

from __future__ import annotations

import redis
import sqlalchemy.exc
from kombu.exceptions import OperationalError as BrokerUnreachable

#: Redis, the database or the broker is down, paused or restarting.
UNAVAILABLE: tuple[type[Exception], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    BrokerUnreachable,
)
