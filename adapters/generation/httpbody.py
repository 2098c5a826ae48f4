"""Reading a model server's answer under one deadline, for the HTTP backends."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import requests
from requests.adapters import HTTPAdapter

from pipeline.generation import ModelUnavailable

#: The most an answer may weigh on the wire, bytes: a server that never stops is cut off here.
MAX_ANSWER_BYTES = 4 * 1024 * 1024
#: Connections kept open to the server, per process (one per concurrently generating thread).
POOL_SIZE = 16
_READ_SIZE = 16 * 1024


def pooled_session() -> requests.Session:
    """A session keeping up to ``POOL_SIZE`` connections to the model server."""
    session = requests.Session()
    session.mount("http://", HTTPAdapter(pool_maxsize=POOL_SIZE))
    session.mount("https://", HTTPAdapter(pool_maxsize=POOL_SIZE))
    return session


class PooledHttp:
    """A ``pooled_session`` per backend, built on first use (constructing a backend opens nothing), thread-safe."""

    def __init__(self) -> None:
        self._session: requests.Session | None = None
        self._lock = threading.Lock()

    def _http(self) -> requests.Session:
        with self._lock:
            if self._session is None:
                self._session = pooled_session()
            return self._session

    def close(self) -> None:
        """Close the pooled connections, if any were opened."""
        with self._lock:
            if self._session is not None:
                self._session.close()
                self._session = None


def body_chunks(
    response: requests.Response,
    deadline: float,
    fail: Callable[[str], ModelUnavailable],
    max_bytes: int = MAX_ANSWER_BYTES,
) -> Iterator[bytes]:
    """The body of a ``stream=True`` response as it arrives, each read waiting at most until ``deadline``
    (``time.monotonic()``); failures raise ``fail(<what happened>)``."""
    total = 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise fail("timed out")
        limit_next_read(response, remaining)
        try:
            data = response.raw.read1(_READ_SIZE)
        except Exception as exc:  # urllib3's timeout and protocol errors, OSError: all mean no usable answer
            timed_out = time.monotonic() >= deadline or "Timeout" in type(exc).__name__
            raise fail("timed out" if timed_out else f"{type(exc).__name__} while reading") from exc
        if not data:
            return
        total += len(data)
        if total > max_bytes:
            raise fail("answer too large")
        yield data


def limit_next_read(response: requests.Response, remaining: float) -> None:
    """Make the socket's next read wait at most ``remaining`` seconds (requests' read timeout is per read, so a
    server trickling a byte at a time would otherwise never time out)."""
    connection = getattr(response.raw, "connection", None)
    sock = getattr(connection, "sock", None)
    if sock is not None:
        sock.settimeout(max(remaining, 0.001))


def host_of(url: str) -> str:
    """``host:port`` of ``url``, what errors name (never the URL: credentials or a key may sit in it)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)
