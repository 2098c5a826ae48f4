"""Revoked tokens, seen by every process: Redis when distributed, a SQLite file in the data folder when embedded."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Protocol

import redis

from adapters.tokens import longest_token_life
from pipeline.settings import Settings

logger = logging.getLogger(__name__)

#: The embedded store's file in the data folder; ``assistant run`` and ``assistant token revoke`` both open it.
EMBEDDED_FILE = "revoked_tokens.sqlite3"


class RevocationUnavailable(Exception):
    """The store cannot be read or written (Redis down, the file locked or unreadable)."""


class Revocations(Protocol):
    """Which tokens are no longer accepted although their signature and expiry are fine."""

    def revoke_token(self, jti: str, until: float) -> None:
        """Refuse the token whose ``jti`` claim this is; ``until`` is when it stops being accepted anyway."""

    def revoke_subject(self, subject: str, before: float) -> None:
        """Refuse every token of ``subject`` issued at or before the time ``before``."""

    def is_revoked(self, jti: str, subject: str, issued_at: float) -> bool:
        """True when the token ``jti`` of ``subject``, issued at ``issued_at``, was revoked either way."""

    def close(self) -> None: ...


class RedisRevocations:
    """Keys ``revoked:jti:<jti>`` expire with their token; ``revoked:sub:<subject>`` holds the cutoff time.

    A cutoff is kept ``keep_seconds`` (the longest token lifetime): by then every token it refuses has expired.
    Redis runs with an append-only file (``compose.yaml``), so revocations survive its restart.
    """

    def __init__(self, client: redis.Redis, keep_seconds: int, owns_client: bool = False) -> None:
        self._redis = client
        self._keep_seconds = keep_seconds
        self._owns_client = owns_client

    def revoke_token(self, jti: str, until: float) -> None:
        if until <= time.time():
            return  # expired already: nothing would accept it
        try:
            self._redis.set(f"revoked:jti:{jti}", "1", exat=int(until) + 1)
        except redis.RedisError as exc:
            raise RevocationUnavailable(f"Redis: {exc}") from exc

    def revoke_subject(self, subject: str, before: float) -> None:
        try:
            self._redis.set(f"revoked:sub:{subject}", repr(before), ex=self._keep_seconds)
        except redis.RedisError as exc:
            raise RevocationUnavailable(f"Redis: {exc}") from exc

    def is_revoked(self, jti: str, subject: str, issued_at: float) -> bool:
        try:
            # One round trip per request.
            token, cutoff = self._redis.mget(f"revoked:jti:{jti}", f"revoked:sub:{subject}")
        except redis.RedisError as exc:
            raise RevocationUnavailable(f"Redis: {exc}") from exc
        return token is not None or (cutoff is not None and issued_at <= float(cutoff))

    def close(self) -> None:
        if self._owns_client:
            self._redis.close()


class SqliteRevocations:
    """Two small tables in a SQLite file that every process of the embedded mode opens.

    ``assistant token revoke`` runs as its own process next to ``assistant run``; each read is its own
    transaction, so the server sees a revocation as soon as the command has written it.
    """

    def __init__(self, path: Path, keep_seconds: int) -> None:
        self._keep_seconds = keep_seconds
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: autocommit, so no read holds a snapshot older than another process's write.
            self._db = sqlite3.connect(path, timeout=10, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS revoked_tokens (jti TEXT PRIMARY KEY, until REAL NOT NULL)")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS revoked_subjects (subject TEXT PRIMARY KEY, before REAL NOT NULL,"
                " until REAL NOT NULL)"
            )
        except (OSError, sqlite3.Error) as exc:
            raise RevocationUnavailable(f"{path}: {exc}") from exc
        self._path = path

    def revoke_token(self, jti: str, until: float) -> None:
        now = time.time()
        if until <= now:
            return
        self._write("INSERT OR REPLACE INTO revoked_tokens (jti, until) VALUES (?, ?)", (jti, until), now)

    def revoke_subject(self, subject: str, before: float) -> None:
        now = time.time()
        statement = "INSERT OR REPLACE INTO revoked_subjects (subject, before, until) VALUES (?, ?, ?)"
        self._write(statement, (subject, before, now + self._keep_seconds), now)

    def is_revoked(self, jti: str, subject: str, issued_at: float) -> bool:
        query = (
            "SELECT EXISTS (SELECT 1 FROM revoked_tokens WHERE jti = ?)"
            " OR EXISTS (SELECT 1 FROM revoked_subjects WHERE subject = ? AND before >= ?)"
        )
        try:
            with self._lock:
                (revoked,) = self._db.execute(query, (jti, subject, issued_at)).fetchone()
        except sqlite3.Error as exc:
            raise RevocationUnavailable(f"{self._path}: {exc}") from exc
        return bool(revoked)

    def _write(self, statement: str, params: tuple[object, ...], now: float) -> None:
        try:
            with self._lock:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    self._db.execute(statement, params)
                    # Rows past their time refuse nothing any more; writes are rare, so they clean up.
                    self._db.execute("DELETE FROM revoked_tokens WHERE until < ?", (now,))
                    self._db.execute("DELETE FROM revoked_subjects WHERE until < ?", (now,))
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
        except sqlite3.Error as exc:
            raise RevocationUnavailable(f"{self._path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()


def open_revocations(settings: Settings, redis_client: redis.Redis | None = None) -> Revocations:
    """The store for ``settings``' layout; shares ``redis_client`` when given, else opens its own."""
    keep_seconds = longest_token_life(settings)
    if settings.redis_url:
        if redis_client is not None:
            return RedisRevocations(redis_client, keep_seconds)
        from adapters.redis_state import connect

        return RedisRevocations(connect(settings.redis_url, max_connections=4), keep_seconds, owns_client=True)
    return SqliteRevocations(settings.data_dir / EMBEDDED_FILE, keep_seconds)
