"""The parts of the web widget's API that need no server: origins, the visitor's token claims and settings, what
log redaction takes out, and the customer signature."""

from __future__ import annotations

import hashlib
import hmac
import re
import shutil
import sqlite3
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest
import sqlalchemy as sa

from adapters.revocation import SqliteRevocations
from adapters.sites import Site, normalize_origin
from adapters.tickets import TicketGrant, session_scope
from adapters.tokens import (
    CLOCK_SKEW_SECONDS,
    TokenClaimsError,
    identity_of,
    issue_token,
    longest_token_life,
    read_token,
    revoke,
)
from ingress.cors import DEMO_SITE_KEY, SiteDirectory
from ingress.visitors import customer_signature
from pipeline.errors import ConfigurationError
from pipeline.logsafe import REDACTED, redact_credentials
from pipeline.settings import Settings

SETTINGS = Settings(jwt_secret="s" * 64)


@pytest.mark.parametrize(
    ("given", "origin"),
    [
        ("https://shop.example", "https://shop.example"),
        ("HTTPS://Shop.EXAMPLE", "https://shop.example"),
        ("https://shop.example/", "https://shop.example"),
        ("https://shop.example:443", "https://shop.example"),
        ("http://shop.example:80", "http://shop.example"),
        ("http://shop.example:443", "http://shop.example:443"),
        ("http://localhost:3000", "http://localhost:3000"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://[::1]:8080", "http://[::1]:8080"),
        ("https://bücher.example", "https://xn--bcher-kva.example"),
        ("  https://shop.example  ", "https://shop.example"),
    ],
)
def test_origins_are_written_as_browsers_send_them(given: str, origin: str) -> None:
    assert normalize_origin(given) == origin


@pytest.mark.parametrize(
    ("given", "why"),
    [
        ("", "scheme://host"),
        ("shop.example", "http:// or https://"),
        ("ftp://shop.example", "http:// or https://"),
        ("javascript:alert(1)", "http:// or https://"),
        ("https://shop.example/cart", "no path"),
        ("https://shop.example?a=1", "no path"),
        ("https://shop.example#x", "no path"),
        ("https://a:b@shop.example", "user name"),
        ("https://", "no host"),
        ("https://shop.example:port", "Port"),
        ("https://shop.example:70000", "out of range"),
        ("https://" + "a" * 400, "at most"),
    ],
)
def test_bad_origins_say_what_is_wrong(given: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        normalize_origin(given)


def test_a_visitor_token_carries_its_site() -> None:
    token = issue_token(SETTINGS, "visitor:site_k:v1", ["visitor"], 60, site="site_k")
    claims = read_token(SETTINGS, token)
    assert claims["site"] == "site_k"
    identity = identity_of(claims)
    assert (identity.subject, identity.roles, identity.site) == ("visitor:site_k:v1", ("visitor",), "site_k")
    assert identity_of(read_token(SETTINGS, issue_token(SETTINGS, "alice", ["user"]))).site is None


def test_a_bad_site_claim_is_refused() -> None:
    import jwt

    now = time.time()
    claims = {"sub": "v", "roles": ["visitor"], "aud": "assistant", "iss": "assistant", "jti": "j", "type": "access",
              "iat": now, "exp": int(now) + 60}  # fmt: skip
    for site in ("", 5, ["x"]):
        with pytest.raises(TokenClaimsError, match="'site' claim"):
            read_token(SETTINGS, jwt.encode({**claims, "site": site}, SETTINGS.jwt_secret, algorithm="HS256"))


def test_revocation_outlives_the_renewal_window(tmp_path: Path) -> None:
    """A revoked visitor token stays refused for as long as it could be renewed; others as before."""
    settings = replace(SETTINGS, visitor_renew_seconds=3600)
    assert longest_token_life(settings) == settings.jwt_refresh_ttl_seconds + CLOCK_SKEW_SECONDS
    long_renewal = replace(SETTINGS, visitor_renew_seconds=settings.jwt_refresh_ttl_seconds)
    assert longest_token_life(long_renewal) == (
        long_renewal.jwt_refresh_ttl_seconds + long_renewal.visitor_token_ttl_seconds + CLOCK_SKEW_SECONDS
    )
    store = SqliteRevocations(tmp_path / "revoked.sqlite3", longest_token_life(settings))
    try:
        visitor = read_token(settings, issue_token(settings, "visitor:s:v", ["visitor"], 60, site="s"))
        user = read_token(settings, issue_token(settings, "alice", ["user"], 60))
        revoke(store, visitor, settings.visitor_renew_seconds)
        revoke(store, user, settings.visitor_renew_seconds)
    finally:
        store.close()
    with sqlite3.connect(tmp_path / "revoked.sqlite3") as db:
        until = dict(db.execute("SELECT jti, until FROM revoked_tokens").fetchall())
    assert until[visitor["jti"]] == visitor["exp"] + CLOCK_SKEW_SECONDS + 3600
    assert until[user["jti"]] == user["exp"] + CLOCK_SKEW_SECONDS


def test_widget_settings_from_the_environment(tmp_path: Path) -> None:
    env = {"ASSISTANT_DATA_DIR": str(tmp_path / "data"), "ASSISTANT_CONFIG_DIR": str(tmp_path)}
    defaults = Settings.from_env(env)
    assert (defaults.visitor_token_ttl_seconds, defaults.visitor_renew_seconds, defaults.stream_ticket_ttl_seconds,
            defaults.rate_limit_visitor_tokens) == (900, 30 * 24 * 3600, 30, "60/minute")  # fmt: skip
    read = Settings.from_env({**env, "VISITOR_TOKEN_TTL_SECONDS": "300", "VISITOR_RENEW_SECONDS": "0",
                              "STREAM_TICKET_TTL_SECONDS": "10", "RATE_LIMIT_VISITOR_TOKENS": "off"})  # fmt: skip
    assert (read.visitor_token_ttl_seconds, read.visitor_renew_seconds, read.stream_ticket_ttl_seconds,
            read.rate_limit_visitor_tokens) == (300, 0, 10, None)  # fmt: skip
    for name, value in (("VISITOR_TOKEN_TTL_SECONDS", "0"), ("VISITOR_TOKEN_TTL_SECONDS", "99999999"),
                        ("VISITOR_RENEW_SECONDS", "-1"), ("STREAM_TICKET_TTL_SECONDS", "0"),
                        ("STREAM_TICKET_TTL_SECONDS", "7200"), ("STREAM_TICKET_TTL_SECONDS", "soon"),
                        ("RATE_LIMIT_VISITOR_TOKENS", "lots")):  # fmt: skip
        with pytest.raises(ConfigurationError, match=name):
            Settings.from_env({**env, name: value})


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("GET /api/sessions/s/events?ticket=abc HTTP/1.1", f"GET /api/sessions/s/events?ticket={REDACTED} HTTP/1.1"),
        ("/e?after=1-0&ticket=abc&x=1", f"/e?after=1-0&ticket={REDACTED}&x=1"),
        ("/audio?access_token=eyJ.a.b", f"/audio?access_token={REDACTED}"),
        ("/x?token=t#frag", f"/x?token={REDACTED}#frag"),
        ('"GET /x?TICKET=abc"', f'"GET /x?TICKET={REDACTED}"'),
        ("ticket=abc", f"ticket={REDACTED}"),
        ("a; visitor_token=abc", f"a; visitor_token={REDACTED}"),
        ("/x?myticket=1&tokens=2", "/x?myticket=1&tokens=2"),
        ("no parameters here", "no parameters here"),
        ("/p?a=1&b=2", "/p?a=1&b=2"),
    ],
)
def test_redact_credentials(line: str, expected: str) -> None:
    assert redact_credentials(line) == expected


DOC = Path(__file__).resolve().parents[2] / "docs" / "widget-api.md"


def _doc_block(language: str, containing: str) -> str:
    blocks = re.findall(rf"```{language}\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    return next(block for block in blocks if containing in block)


def test_the_documented_python_signature_is_what_the_gateway_checks() -> None:
    block = _doc_block("python", "def customer_signature")
    namespace: dict[str, object] = {}
    exec(block.rsplit("\n\n", 1)[0], namespace)  # the example without its last line, which shows the value
    secret = str(namespace["SITE_SECRET"])
    shown = re.search(r"# '([0-9a-f]{64})'", block)
    assert shown is not None
    assert namespace["customer_signature"]("customer-42") == customer_signature(secret, "customer-42")  # type: ignore[operator]
    assert customer_signature(secret, "customer-42") == shown[1]
    # The key is the secret's text, as printed.
    assert (
        customer_signature(secret, "顾客-42")
        == hmac.new(secret.encode(), "顾客-42".encode(), hashlib.sha256).hexdigest()
    )


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_the_documented_node_signature_is_what_the_gateway_checks() -> None:
    block = _doc_block("js", "createHmac")
    secret = re.search(r'SITE_SECRET = "([0-9a-f]{64})"', block)
    assert secret is not None
    script = block.rsplit("\n\n", 1)[0] + '\nprocess.stdout.write(customerSignature("customer-42"));\n'
    done = subprocess.run(["node", "-e", script], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout == customer_signature(secret[1], "customer-42")


def test_ticket_grants_round_trip() -> None:
    grant = TicketGrant(session_scope("s-1"), "visitor:k:v", ("visitor",), "k")
    assert TicketGrant.from_json(grant.to_json()) == grant
    assert TicketGrant.from_json(TicketGrant("operator", "olga", ("agent",)).to_json()) == TicketGrant(
        "operator", "olga", ("agent",))  # fmt: skip
    for garbage in ("", "[]", "{}", '{"scope": 1}', "nope"):
        assert TicketGrant.from_json(garbage) is None


class FlakySites:
    """The sites table, as a database that can go away (the outside world of ``SiteDirectory``)."""

    def __init__(self, sites: list[Site]) -> None:
        self.sites = sites
        self.down = False
        self.reads = 0

    def list(self) -> list[Site]:
        self.reads += 1
        if self.down:
            raise sa.exc.OperationalError("SELECT", {}, Exception("server closed the connection"))
        return list(self.sites)


def test_the_site_directory_caches_and_survives_a_database_outage() -> None:
    shop = Site("site_a", "Shop", ("https://shop.example",), "0" * 64, 0.0)
    table = FlakySites([shop])
    directory = SiteDirectory(table, demo=False, cache_seconds=0.3)  # type: ignore[arg-type]
    assert directory.site("site_a") == shop
    assert directory.site("site_a") == shop and table.reads == 1  # cached
    assert directory.site("site_b") is None and table.reads == 1  # a miss reloads at most once a second
    table.down = True
    time.sleep(0.35)
    assert directory.site("site_a") == shop  # stale but served: the database is away
    reads = table.reads
    assert directory.site("site_a") == shop and table.reads == reads  # and not asked again at once
    table.down = False
    table.sites.append(Site("site_b", "Other", ("https://other.example",), "1" * 64, 0.0))
    time.sleep(1.05)
    assert directory.site("site_b") is not None


def test_a_site_directory_that_never_read_the_sites_says_the_database_is_away() -> None:
    table = FlakySites([])
    table.down = True
    directory = SiteDirectory(table, demo=False)  # type: ignore[arg-type]
    with pytest.raises(sa.exc.OperationalError):
        directory.site("site_a")
    demo = SiteDirectory(table, demo=True)  # type: ignore[arg-type]
    assert demo.site(DEMO_SITE_KEY) is not None and demo.site(DEMO_SITE_KEY).secret == ""  # type: ignore[union-attr]
