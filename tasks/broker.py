"""Kombu's Redis transport with one publishing client per channel instead of one per message.

Kombu builds a new ``redis.Redis`` for every publish and acknowledgement (``Channel.conn_or_acquire``);
building one copies its table of ~170 response callbacks, about a sixth of Celery's ``send_task``. A
``redis.Redis`` is safe to share between threads (each command borrows a pool connection), so the channel
keeps one per connection pool and builds a new one only when kombu replaced the pool after a disconnect.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis


class ReusingClientChannel(kombu_redis.Channel):
    _reused_client: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:
            return super()._create_client(asynchronous=True)
        pool = self.pool
        client = self._reused_client
        if client is None or client.connection_pool is not pool:
            client = self._reused_client = super()._create_client()
        return client


class ReusingClientTransport(kombu_redis.Transport):
    Channel = ReusingClientChannel


def transport_for(broker_url: str) -> str | None:
    """The transport for ``broker_url`` as a class path, or None to let kombu choose by the URL's scheme.

    A path, not the class: Celery reports the setting in JSON (``inspect stats``, Flower).
    """
    return f"{__name__}:{ReusingClientTransport.__name__}" if broker_url.startswith("redis://") else None
