"""Blob storage for audio: a folder in embedded mode, Redis in the distributed layout, each with an expiry.

Audio never travels in a queue message; the envelope and the reply carry a key into this store. An
S3-compatible store can implement the same three calls later.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import redis

logger = logging.getLogger(__name__)

#: A key is one or more ``/``-separated parts of letters, digits, ``_``, ``.`` and ``-``, each starting with a
#: letter or digit: no ``..``, no absolute path, no hidden file, nothing a folder store could escape its root with.
KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}(?:/[A-Za-z0-9][A-Za-z0-9_.-]{0,199}){0,7}")
MAX_KEY_LENGTH = 512
#: What a session id may hold that a key part may not, escaped as ``_XX`` (``_`` itself too, so no two ids meet).
_ESCAPED = {"_": "_5F", ".": "_2E", ":": "_3A"}
#: How often the folder store looks for expired files to delete, at most (seconds).
SWEEP_SECONDS = 300.0


class BlobStore(Protocol):
    """Bytes under a key, for a while."""

    def put(self, key: str, data: bytes, ttl_seconds: int) -> None:
        """Store ``data`` under ``key``; it expires after ``ttl_seconds``."""
        ...

    def get(self, key: str) -> bytes | None:
        """The bytes under ``key``, or None when there are none (never stored, expired or deleted)."""
        ...

    def delete(self, key: str) -> None:
        """Forget ``key``; nothing happens when it is not there."""
        ...


def inbound_audio_key(message_id: str) -> str:
    """Where a message's audio (16 kHz mono 16-bit PCM) waits for the ``asr`` stage."""
    return check_key(f"audio/in/{message_id}")


def spoken_reply_key(session_id: str, message_id: str) -> str:
    """Where a reply's speech (a WAV file) is kept: in its session's folder, so only the session's owner is served it.

    The session id (letters, digits, ``_ . : -``) is escaped into one safe key part, distinct for distinct ids.
    """
    folder = "s" + "".join(_ESCAPED.get(char, char) for char in session_id)
    return check_key(f"audio/out/{folder}/{message_id}.wav")


class InvalidBlobKey(ValueError):
    """A key that is not of the form ``KEY`` allows."""


def check_key(key: str) -> str:
    """``key`` when it is a valid blob key; raises ``InvalidBlobKey`` otherwise."""
    if len(key) > MAX_KEY_LENGTH or not KEY.fullmatch(key):
        raise InvalidBlobKey(f"not a blob key: {key[:80]!r}")
    return key


class FolderBlobStore:
    """Blobs as files under ``root``, one per key; the file's modification time is its expiry.

    The expiry is set on a temporary file before it is renamed into place, so a reader never sees the data
    without its expiry. ``get`` refuses an expired file (and deletes it); expired files nobody reads again are
    swept now and then, during a ``put``.
    """

    def __init__(self, root: Path, sweep_seconds: float = SWEEP_SECONDS) -> None:
        self._root = root
        self._sweep_seconds = sweep_seconds
        self._next_sweep = time.monotonic() + sweep_seconds
        self._sweep_lock = threading.Lock()

    def _path(self, key: str) -> Path:
        return self._root / check_key(key)

    def put(self, key: str, data: bytes, ttl_seconds: int) -> None:
        path = self._path(key)
        # A hidden name: no valid key names it, so a sweep knows it for a write in progress (or left by a crash).
        temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        for attempt in range(2):
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                temporary.write_bytes(data)
                break
            except FileNotFoundError:
                if attempt:  # a sweep removed the folder, empty, in between: once more
                    raise
        try:
            expires = time.time() + ttl_seconds
            os.utime(temporary, (expires, expires))
            os.replace(temporary, path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        self._sweep_if_due()

    def get(self, key: str) -> bytes | None:
        path = self._path(key)
        try:
            expires = path.stat().st_mtime
            if expires <= time.time():
                path.unlink(missing_ok=True)
                return None
            return path.read_bytes()
        except FileNotFoundError:
            return None

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def sweep(self) -> int:
        """Delete every expired file (and folders left empty); how many files went."""
        now = time.time()
        removed = 0
        if not self._root.is_dir():
            return 0
        for folder, _, files in os.walk(self._root, topdown=False):
            for name in files:
                path = Path(folder, name)
                with contextlib.suppress(FileNotFoundError):
                    # A temporary file is old after an hour whatever its time says (it holds the future expiry).
                    stale = path.stat().st_ctime < now - 3600 if name.startswith(".") else path.stat().st_mtime <= now
                    if stale:
                        path.unlink()
                        removed += 1
            if Path(folder) != self._root:
                with contextlib.suppress(OSError):  # not empty, or a put just created a file in it
                    os.rmdir(folder)
        return removed

    def _sweep_if_due(self) -> None:
        if time.monotonic() < self._next_sweep or not self._sweep_lock.acquire(blocking=False):
            return
        try:
            self._next_sweep = time.monotonic() + self._sweep_seconds
            removed = self.sweep()
            if removed:
                logger.info("deleted %d expired blobs", removed)
        except OSError as exc:
            logger.warning("sweeping expired blobs failed: %s", type(exc).__name__)
        finally:
            self._sweep_lock.release()


class RedisBlobStore:
    """Blobs as Redis strings with an expiry (``blob:<key>``), so every worker on every machine reaches them.

    Needs a client made with ``decode_responses=False``: the values are bytes.
    """

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    def put(self, key: str, data: bytes, ttl_seconds: int) -> None:
        self._redis.set(f"blob:{check_key(key)}", data, ex=max(1, int(ttl_seconds)))

    def get(self, key: str) -> bytes | None:
        value = self._redis.get(f"blob:{check_key(key)}")
        return None if value is None else bytes(value)  # type: ignore[arg-type]

    def delete(self, key: str) -> None:
        self._redis.delete(f"blob:{check_key(key)}")
