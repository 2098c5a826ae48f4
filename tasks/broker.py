"""Kombu's Redis transport, tuned for the pipeline: deliveries kept alive while their worker lives, and one
publishing client per channel instead of one per message.

Redis has no consumer connections to watch, so kombu takes a message back from a worker only when it has
been unacknowledged for the visibility timeout. With a short timeout, a message whose worker died comes back
within seconds, but a live worker's slow or waiting message would come back too. So each worker renews
its deliveries: every ``LEASE_RENEW_SECONDS`` it stamps each message it holds (running, prefetched or
waiting for a countdown) as just delivered. A dead worker stops stamping, and its messages come back once the
timeout passes (``VISIBILITY_TIMEOUT``), to whichever worker's restore sweep sees them first.

Kombu also builds a new ``redis.Redis`` for every publish and acknowledgement (``Channel.conn_or_acquire``);
building one copies its table of ~170 response callbacks, about a sixth of Celery's ``send_task``. A
``redis.Redis`` is safe to share between threads (each command borrows a pool connection), so the channel
keeps one per connection pool and builds a new one only when kombu replaced the pool after a disconnect.
"""

from __future__ import annotations

import logging
import ssl
import time
from typing import Any

from kombu.transport import redis as kombu_redis

from pipeline.turns import LEASE_RENEW_SECONDS

logger = logging.getLogger(__name__)

#: Seconds a message may go unstamped before the broker gives it to another worker. Renewed every
#: ``LEASE_RENEW_SECONDS`` by a live worker, so this is how long a dead worker's messages wait to come back,
#: plus at most one restore sweep (``RESTORE_INTERVAL``).
VISIBILITY_TIMEOUT = 15
#: Seconds between each worker's sweeps for messages of dead workers: one cheap sorted-set query.
RESTORE_INTERVAL = 2
#: Seconds the restore sweep's lock may be held. The sweep takes milliseconds; kombu's default of 5 minutes would
#: stop every restore for that long if a worker died holding the lock.
RESTORE_LOCK_SECONDS = 5
#: Seconds a broker call may hang (a paused Redis) before it fails.
SOCKET_TIMEOUT = 5


class PipelineChannel(kombu_redis.Channel):
    _reused_client: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:
            return super()._create_client(asynchronous=True)
        pool = self.pool
        client = self._reused_client
        if client is None or client.connection_pool is not pool:
            client = self._reused_client = super()._create_client()
        return client

    def close(self) -> None:
        """Close even when the broker is gone.

        Kombu first reads the reply of the BRPOP in flight, and when Redis went away that read raises before
        anything is closed. The worker then collects the connection's transport and closes the connection
        again, and this channel, still open, looks up the collected transport's address to hand its messages
        back: an AttributeError that stops the worker. So the channel is closed right away instead; the
        messages it held stay in Redis's unacked index and come back after the visibility timeout.
        """
        try:
            super().close()
        except self.connection_errors:
            if not self.closed:  # the BRPOP read failed (and was cleared): nothing was closed yet
                super().close()
            raise

    def renew_deliveries(self) -> int:
        """Stamp every message this channel holds as delivered now; the number stamped."""
        qos = self._qos
        if qos is None or not qos._delivered:
            return 0
        now = time.time()
        stamps = {tag: now for tag in list(qos._delivered)}
        with self.conn_or_acquire() as client:
            # XX: only messages still unacknowledged; one acked a moment ago must not come back.
            client.zadd(self.unacked_index_key, stamps, xx=True)
        return len(stamps)


class PipelineTransport(kombu_redis.Transport):
    Channel = PipelineChannel

    def register_with_event_loop(self, connection: Any, loop: Any) -> None:
        super().register_with_event_loop(connection, loop)
        cycle: Any = self.cycle
        # As kombu does for its own timers: a reconnect registers again, so drop the previous entry.
        previous = getattr(cycle, "_renew_deliveries_tref", None)
        if previous is not None:
            previous.cancel()
        cycle._renew_deliveries_tref = loop.call_repeatedly(LEASE_RENEW_SECONDS, self._renew_deliveries)

    def _renew_deliveries(self) -> None:
        cycle: Any = self.cycle
        for channel in list(cycle._channels):
            try:
                channel.renew_deliveries()
            except Exception as exc:
                # The broker is away; the next tick tries again (the timeout leaves room for several misses).
                logger.warning("could not renew deliveries: %s", type(exc).__name__)


def transport_for(broker_url: str) -> str | None:
    """The transport for ``broker_url`` as a class path, or None to let kombu choose by the URL's scheme.

    A path, not the class: Celery reports the setting in JSON (``inspect stats``, Flower).
    """
    redis = broker_url.startswith(("redis://", "rediss://"))
    return f"{__name__}:{PipelineTransport.__name__}" if redis else None


def broker_ssl(broker_url: str) -> dict[str, Any] | bool:
    """Celery's ``broker_use_ssl`` for ``broker_url``: for ``rediss://`` (managed Redis over TLS), the server's
    certificate verified against the system's CAs (``SSL_CERT_FILE`` adds a private CA's). Kombu picks TLS from
    the URL's scheme only when it chooses the transport itself, and then without verifying the certificate."""
    return {"ssl_cert_reqs": ssl.CERT_REQUIRED} if broker_url.startswith("rediss://") else False


def transport_options(embedded_polling_interval: float | None) -> dict[str, Any]:
    """Broker transport options: Redis's visibility and restore timing, or the in-memory broker's polling."""
    if embedded_polling_interval is not None:
        # The in-memory transport polls; its interval is the latency of every in-process hop.
        return {"polling_interval": embedded_polling_interval}
    return {
        "visibility_timeout": VISIBILITY_TIMEOUT,
        "unacked_restore_interval": RESTORE_INTERVAL,
        "unacked_restore_throttle": 1,
        "unacked_mutex_expire": RESTORE_LOCK_SECONDS,
        "socket_timeout": SOCKET_TIMEOUT,
        "socket_connect_timeout": SOCKET_TIMEOUT,
    }
