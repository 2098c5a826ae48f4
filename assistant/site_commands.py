"""``assistant sites add|list|remove``: the websites whose pages may carry the chat widget."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime

from adapters.db import Repository
from adapters.errors import UNAVAILABLE
from adapters.sites import Site, SiteRepository
from pipeline.settings import Settings


def sites_command(settings: Settings, command: str, origins: list[str], name: str, site_key: str, as_json: bool) -> int:
    """Run ``command``; 0 on success, 1 when the site is unknown or the database unreachable, 2 for bad input."""
    repository = Repository.from_url(settings.database_url)
    try:
        if settings.embedded:
            repository.migrate()  # as `assistant run` does: the quick start needs no `assistant migrate`
        sites = SiteRepository(repository.engine)
        if command == "add":
            return _add(sites, origins, name, as_json)
        if command == "list":
            return _list(sites, as_json)
        return _remove(sites, site_key)
    except UNAVAILABLE as exc:
        print(f"assistant sites: cannot reach the database: {type(exc).__name__}", file=sys.stderr)
        return 1
    finally:
        repository.close()


def _add(sites: SiteRepository, origins: list[str], name: str, as_json: bool) -> int:
    try:
        site = sites.add(origins, name)
    except ValueError as exc:
        print(f"assistant sites add: {exc}", file=sys.stderr)
        return 2
    if as_json:
        print(json.dumps({**site.public_json(), "secret": site.secret}, ensure_ascii=False))
        return 0
    print(f"site key: {site.site_key}")
    print(f"secret:   {site.secret}")
    print(f"name:     {site.name}")
    print(f"origins:  {', '.join(site.origins)}")
    print("The site key goes in the page's script tag (data-site-key). Keep the secret on your server: it signs the")
    print("ids of customers you vouch for (customer_signature, see docs/widget-api.md). It is not shown again.")
    return 0


def _list(sites: SiteRepository, as_json: bool) -> int:
    found = sites.list()
    if as_json:
        print(json.dumps({"sites": [site.public_json() for site in found]}, ensure_ascii=False))
        return 0
    if not found:
        print("no sites; add one with: assistant sites add --origin https://shop.example")
        return 0
    for site in found:
        print(_line(site))
    return 0


def _line(site: Site) -> str:
    created = datetime.fromtimestamp(site.created_at, UTC).isoformat(timespec="seconds")
    return f"{site.site_key}  {site.name}  {' '.join(site.origins)}  (added {created})"


def _remove(sites: SiteRepository, site_key: str) -> int:
    if not sites.remove(site_key):
        print(f"assistant sites remove: no site has the key {site_key!r}", file=sys.stderr)
        return 1
    print(f"removed site {site_key}: its pages can no longer get visitor tokens; tokens issued stay valid until they "
          "expire, but not from its pages")  # fmt: skip
    return 0
