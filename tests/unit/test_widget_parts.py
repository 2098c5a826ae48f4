"""The parts of the web widget's API that need no server: origins, the visitor's token claims and settings, what
log redaction takes out, and the customer signature."""

from __future__ import annotations

import hashlib
import hmac
import sqlite3
import time
from dataclasses import replace
from pathlib import Path

import pytest

from adapters.revocation import SqliteRevocations
from adapters.sites import normalize_origin
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


def test_the_customer_signature_is_hmac_sha256_keyed_with_the_secret_text() -> None:
    secret = "0e07176b8b17cf2038fc1f4ff28f4a0ced5416f13252a744b622a317c99163c8"
    expected = hmac.new(secret.encode(), "顾客-42".encode(), hashlib.sha256).hexdigest()
    assert customer_signature(secret, "顾客-42") == expected
    # The value docs/widget-api.md shows for its example.
    assert customer_signature(secret, "customer-42") == hmac.new(
        secret.encode(), b"customer-42", hashlib.sha256).hexdigest()  # fmt: skip


def test_ticket_grants_round_trip() -> None:
    grant = TicketGrant(session_scope("s-1"), "visitor:k:v", ("visitor",), "k")
    assert TicketGrant.from_json(grant.to_json()) == grant
    assert TicketGrant.from_json(TicketGrant("operator", "olga", ("agent",)).to_json()) == TicketGrant(
        "operator", "olga", ("agent",))  # fmt: skip
    for garbage in ("", "[]", "{}", '{"scope": 1}', "nope"):
        assert TicketGrant.from_json(garbage) is None
