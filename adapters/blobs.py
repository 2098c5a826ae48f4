"""Blob storage for audio: a folder in embedded mode, Redis in the distributed layout, each with an expiry.

Audio never travels in a queue message; the envelope and the reply carry a key into this store. An
S3-compatible store can implement the same three calls later.
"""

from __future__ import annotations

from typing import Protocol


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
