"""Websites that carry the chat widget: their public key, allowed origins and signing secret, in the database."""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from adapters.db import SITE_NAME_LENGTH, _to_datetime, _to_epoch, sites
from pipeline.envelope import storable_text

#: A site key: ``site_`` and 22 URL-safe characters (128 random bits). Public: it is in the page's script tag.
SITE_KEY_PREFIX = "site_"
SITE_KEY_CHARS = 22
#: Bytes of a site's HMAC secret (written as hex): signs the ids of the customers a site vouches for.
SECRET_BYTES = 32
MAX_NAME = SITE_NAME_LENGTH
MAX_ORIGINS = 32
#: The longest origin stored: scheme, host (253 at most) and port.
MAX_ORIGIN = 300
DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class Site:
    """A registered website."""

    site_key: str
    name: str
    #: Exact origins (``scheme://host[:port]``) whose pages may use the site key.
    origins: tuple[str, ...]
    #: Hex HMAC-SHA256 key for ``customer_signature``; never shown by ``sites list`` or the API.
    secret: str
    #: Epoch seconds.
    created_at: float

    def public_json(self) -> dict[str, object]:
        """Everything but the secret."""
        return {"site_key": self.site_key, "name": self.name, "origins": list(self.origins),
                "created_at": self.created_at}  # fmt: skip


def normalize_origin(raw: str) -> str:
    """``raw`` as browsers send it in ``Origin``: lower-case scheme and host, no default port, no path.

    Raises ``ValueError`` saying what is wrong: another scheme, a path, query or fragment, user info, no host.
    """
    text = raw.strip()
    if not text or len(text) > MAX_ORIGIN:
        raise ValueError(f"an origin is scheme://host[:port], at most {MAX_ORIGIN} characters")
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise ValueError(f"{raw!r}: an origin must start with http:// or https://")
    if parts.path not in ("", "/") or parts.query or parts.fragment or "?" in text or "#" in text:
        raise ValueError(f"{raw!r}: an origin has no path, query or fragment (like https://shop.example)")
    if "@" in parts.netloc:
        raise ValueError(f"{raw!r}: an origin has no user name or password")
    try:
        host = parts.hostname
        port = parts.port
    except ValueError as exc:  # a port that is not a number, or out of range
        raise ValueError(f"{raw!r}: {exc}") from None
    if not host:
        raise ValueError(f"{raw!r}: the origin names no host")
    if ":" in host:
        host = f"[{host}]"  # IPv6, as browsers write it
    else:
        try:
            # Browsers send international names in their ASCII (punycode) form.
            host = host.encode("idna").decode("ascii").lower()
        except UnicodeError:
            raise ValueError(f"{raw!r}: the host is not a valid name") from None
    if port is None or port == DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def new_site_key() -> str:
    return SITE_KEY_PREFIX + secrets.token_urlsafe(SITE_KEY_CHARS)[:SITE_KEY_CHARS]


class SiteRepository:
    """The ``sites`` table, on the repository's engine."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def add(self, origins: list[str], name: str = "") -> Site:
        """Register a site for ``origins`` (normalized; ``ValueError`` for a bad one) with a new key and secret."""
        cleaned: list[str] = []
        for origin in origins:
            normalized = normalize_origin(origin)
            if normalized not in cleaned:
                cleaned.append(normalized)
        if not cleaned:
            raise ValueError("a site needs at least one origin")
        if len(cleaned) > MAX_ORIGINS:
            raise ValueError(f"a site has at most {MAX_ORIGINS} origins")
        name = name.strip() or cleaned[0]
        if len(name) > MAX_NAME:
            raise ValueError(f"the name is longer than {MAX_NAME} characters")
        if not storable_text(name):  # bytes of another encoding on the command line, or a NUL
            raise ValueError("the name must be UTF-8 text without NUL characters")
        site = Site(new_site_key(), name, tuple(cleaned), secrets.token_hex(SECRET_BYTES), time.time())
        with self._engine.begin() as connection:
            connection.execute(
                sites.insert().values(
                    site_key=site.site_key,
                    name=site.name,
                    origins=json.dumps(list(site.origins)),
                    secret=site.secret,
                    created_at=_to_datetime(site.created_at),
                )
            )
        return site

    def get(self, site_key: str) -> Site | None:
        with self._engine.connect() as connection:
            row = connection.execute(sa.select(sites).where(sites.c.site_key == site_key)).first()
        return None if row is None else _site(row)

    def list(self) -> list[Site]:
        """Every site, oldest first."""
        with self._engine.connect() as connection:
            rows = connection.execute(sa.select(sites).order_by(sites.c.created_at, sites.c.site_key)).all()
        return [_site(row) for row in rows]

    def remove(self, site_key: str) -> bool:
        with self._engine.begin() as connection:
            result = connection.execute(sites.delete().where(sites.c.site_key == site_key))
        return result.rowcount > 0


def _site(row: sa.Row[Any]) -> Site:
    origins = json.loads(str(row.origins))
    return Site(
        site_key=str(row.site_key),
        name=str(row.name),
        origins=tuple(str(origin) for origin in origins),
        secret=str(row.secret),
        created_at=_to_epoch(row.created_at),
    )
