"""Stream tickets: short-lived, single-use stand-ins for a bearer token where a browser cannot send a header.

A browser's ``EventSource`` sends no ``Authorization`` header. Its page asks for a ticket with its token (a POST,
which can carry one), then opens the stream with ``?ticket=``. A ticket names what it opens (its scope, such as
``session:<id>`` or ``operator``) and who asked; it is taken back on first use, so one that leaked (a proxy's log,
the browser's history) is worth nothing. Redis in the distributed layout (``GETDEL``, so two gateways cannot both
redeem one), a dictionary in embedded mode.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

import redis

#: Every ticket's Redis key starts with this; the rest is the ticket's SHA-256, not the ticket itself, so a key
#: listing (``SCAN``, ``MONITOR``) shows nothing that opens a stream.
PREFIX = "ticket:"
#: Random bytes in a ticket (256 bits, URL-safe base64 in the query string).
TICKET_BYTES = 32
#: The scope of the operators' event stream (``GET /api/operator/events?ticket=``).
OPERATOR_SCOPE = "operator"


def session_scope(session_id: str) -> str:
    """The scope of a session's event stream (``GET /api/sessions/<id>/events?ticket=``)."""
    return f"session:{session_id}"


@dataclass(frozen=True, slots=True)
class TicketGrant:
    """What a redeemed ticket stands for: the identity that asked for it and the stream it opens."""

    scope: str
    subject: str
    roles: tuple[str, ...]
    #: The site of a visitor's token (its ``site`` claim); None for other tokens.
    site: str | None = None
    #: The token that bought the ticket (its ``jti``, ``iat`` and ``exp``): a stream opened with the ticket ends
    #: when that token is revoked or expires. Empty for a grant stored by an older version.
    jti: str = ""
    issued_at: float = 0.0
    expires_at: float | None = None

    def to_json(self) -> str:
        return json.dumps({"scope": self.scope, "sub": self.subject, "roles": list(self.roles), "site": self.site,
                           "jti": self.jti, "iat": self.issued_at, "exp": self.expires_at})  # fmt: skip

    @classmethod
    def from_json(cls, raw: str | bytes) -> TicketGrant | None:
        """The grant stored as ``raw``; None when it is not one (written by another version)."""
        try:
            data: Any = json.loads(raw)
            roles = tuple(str(role) for role in data["roles"])
            site, expires = data.get("site"), data.get("exp")
            return cls(str(data["scope"]), str(data["sub"]), roles, None if site is None else str(site),
                       str(data.get("jti") or ""), float(data.get("iat") or 0.0),
                       None if expires is None else float(expires))  # fmt: skip
        except (ValueError, TypeError, KeyError):
            return None


class StreamTickets(Protocol):
    def issue(self, grant: TicketGrant, ttl_seconds: float) -> str:
        """A new ticket for ``grant``, valid ``ttl_seconds`` or until redeemed."""
        ...

    def redeem(self, ticket: str) -> TicketGrant | None:
        """The grant of ``ticket``, which is spent by this call; None when unknown, expired or spent already."""
        ...


def new_ticket() -> str:
    return secrets.token_urlsafe(TICKET_BYTES)


def ticket_key(ticket: str) -> str:
    """Where a ticket is kept: its digest, so the store never holds a usable ticket."""
    return PREFIX + hashlib.sha256(ticket.encode("utf-8", "surrogatepass")).hexdigest()


class MemoryStreamTickets:
    """``StreamTickets`` in this process (embedded mode)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tickets: dict[str, tuple[float, TicketGrant]] = {}
        self._next_sweep = 0.0

    def issue(self, grant: TicketGrant, ttl_seconds: float) -> str:
        ticket = new_ticket()
        now = time.monotonic()
        with self._lock:
            self._sweep(now)
            self._tickets[ticket_key(ticket)] = (now + ttl_seconds, grant)
        return ticket

    def redeem(self, ticket: str) -> TicketGrant | None:
        with self._lock:
            found = self._tickets.pop(ticket_key(ticket), None)
        if found is None or found[0] <= time.monotonic():
            return None
        return found[1]

    def _sweep(self, now: float) -> None:
        # Now and then: tickets asked for and never used must not pile up in a long-running process.
        if now < self._next_sweep:
            return
        self._next_sweep = now + 60.0
        for key in [k for k, (deadline, _) in self._tickets.items() if deadline <= now]:
            del self._tickets[key]


class RedisStreamTickets:
    """``StreamTickets`` on Redis: one key per ticket with its expiry, taken with ``GETDEL``."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    def issue(self, grant: TicketGrant, ttl_seconds: float) -> str:
        ticket = new_ticket()
        self._redis.set(ticket_key(ticket), grant.to_json(), px=max(1, int(ttl_seconds * 1000)))
        return ticket

    def redeem(self, ticket: str) -> TicketGrant | None:
        raw = self._redis.getdel(ticket_key(ticket))
        return None if raw is None else TicketGrant.from_json(raw)
