"""Tokens: their claims, lifetimes and roles, what reading refuses, and the embedded revocation store."""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import replace
from pathlib import Path

import jwt
import pytest

from adapters.revocation import SqliteRevocations, open_revocations
from adapters.tokens import (
    ALGORITHM,
    CLOCK_SKEW_SECONDS,
    Identity,
    TokenClaimsError,
    claims_problem,
    identity_of,
    issue_pair,
    issue_token,
    longest_token_life,
    read_token,
    revoke,
)
from pipeline.settings import Settings

# 64 characters: long enough for HS512 too, so an HS512 token signed with it is refused for its algorithm alone.
SETTINGS = Settings(jwt_secret="s" * 64)
OTHER_KEY = replace(SETTINGS, jwt_secret="o" * 64)


def claims_of(token: str) -> dict[str, object]:
    return jwt.decode(token, options={"verify_signature": False})


def sign(claims: dict[str, object], key: str = SETTINGS.jwt_secret, algorithm: str = ALGORITHM) -> str:
    return jwt.encode(claims, key, algorithm=algorithm)


def good_claims(**changes: object) -> dict[str, object]:
    now = time.time()
    claims: dict[str, object] = {"sub": "alice", "roles": ["user"], "aud": "assistant", "iss": "assistant",
                                 "jti": "j-1", "type": "access", "iat": now, "exp": int(now) + 60}  # fmt: skip
    claims.update(changes)
    return {name: value for name, value in claims.items() if value is not None}


# -- issuing ----------------------------------------------------------------------------------------------------------


def test_an_access_token_carries_every_claim() -> None:
    before = time.time()
    claims = read_token(SETTINGS, issue_token(SETTINGS, "alice", ("user",)))
    assert claims["sub"] == "alice"
    assert claims["roles"] == ["user"]
    assert (claims["aud"], claims["iss"], claims["type"]) == ("assistant", "assistant", "access")
    assert isinstance(claims["jti"], str) and claims["jti"]
    assert before <= claims["iat"] <= time.time()
    # Default lifetime: JWT_ACCESS_TTL_SECONDS (900), to the second.
    assert 899 <= claims["exp"] - claims["iat"] <= 900
    assert identity_of(claims) == Identity(subject="alice", roles=("user",))


def test_audience_issuer_and_lifetime_come_from_the_settings() -> None:
    settings = replace(SETTINGS, jwt_audience="widget", jwt_issuer="shop", jwt_access_ttl_seconds=60)
    claims = read_token(settings, issue_token(settings, "alice", ("admin",)))
    assert (claims["aud"], claims["iss"]) == ("widget", "shop")
    assert 59 <= claims["exp"] - claims["iat"] <= 60
    long_lived = claims_of(issue_token(settings, "alice", ("user",), ttl_seconds=3600))
    assert 3599 <= long_lived["exp"] - long_lived["iat"] <= 3600  # type: ignore[operator]


def test_a_pair_is_an_access_and_a_refresh_token_of_the_same_subject() -> None:
    pair = issue_pair(SETTINGS, "alice", ["user", "admin"], ttl_seconds=120)
    access, refresh = read_token(SETTINGS, pair.access_token), read_token(SETTINGS, pair.refresh_token)
    assert (access["type"], refresh["type"]) == ("access", "refresh")
    assert access["sub"] == refresh["sub"] == "alice"
    assert access["roles"] == refresh["roles"] == ["user", "admin"]
    assert access["jti"] != refresh["jti"]
    assert 119 <= access["exp"] - access["iat"] <= 120
    assert refresh["exp"] - refresh["iat"] >= SETTINGS.jwt_refresh_ttl_seconds - 1
    assert pair.to_json() == {"access_token": pair.access_token, "refresh_token": pair.refresh_token,
                              "expires_in": 120, "refresh_expires_in": SETTINGS.jwt_refresh_ttl_seconds}  # fmt: skip


def test_two_tokens_of_the_same_second_are_ordered_by_their_issue_time() -> None:
    first = claims_of(issue_token(SETTINGS, "alice", ("user",)))
    second = claims_of(issue_token(SETTINGS, "alice", ("user",)))
    assert first["iat"] < second["iat"]  # type: ignore[operator]
    assert first["jti"] != second["jti"]


@pytest.mark.parametrize(
    ("roles", "message"),
    [
        (("user", "superuser"), "superuser"),
        ((), "at least one role"),
        (("visitor", "user"), "cannot be combined"),
        (("visitor", "admin"), "cannot be combined"),
    ],
)
def test_bad_role_sets_cannot_be_issued(roles: tuple[str, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        issue_token(SETTINGS, "alice", roles)


def test_a_visitor_gets_an_access_token_but_no_refresh_token() -> None:
    claims = read_token(SETTINGS, issue_token(SETTINGS, "visitor-42", ("visitor",)))
    assert identity_of(claims).is_visitor and not identity_of(claims).is_admin
    with pytest.raises(ValueError, match="visitor tokens cannot be refreshed"):
        issue_pair(SETTINGS, "visitor-42", ("visitor",))


def test_a_token_needs_a_subject() -> None:
    with pytest.raises(ValueError, match="subject"):
        issue_token(SETTINGS, "", ("user",))


def test_no_token_outlives_the_refresh_lifetime() -> None:
    # Revoking every token of a subject is remembered that long, so a longer token could come back to life.
    with pytest.raises(ValueError, match="JWT_REFRESH_TTL_SECONDS"):
        issue_token(SETTINGS, "alice", ("user",), ttl_seconds=SETTINGS.jwt_refresh_ttl_seconds + 1)
    # ...and a visitor's token may be renewed until VISITOR_RENEW_SECONDS after it expired, which may be longer.
    visitor = SETTINGS.visitor_token_ttl_seconds + SETTINGS.visitor_renew_seconds
    assert longest_token_life(SETTINGS) == max(SETTINGS.jwt_refresh_ttl_seconds, visitor) + CLOCK_SKEW_SECONDS
    short_renewal = replace(SETTINGS, visitor_renew_seconds=60)
    assert longest_token_life(short_renewal) == SETTINGS.jwt_refresh_ttl_seconds + CLOCK_SKEW_SECONDS


# -- reading: what is refused -----------------------------------------------------------------------------------------


def test_an_expired_token_is_refused_unless_expired_ones_are_asked_for() -> None:
    token = issue_token(SETTINGS, "alice", ("user",), ttl_seconds=-(CLOCK_SKEW_SECONDS + 5))
    with pytest.raises(jwt.ExpiredSignatureError):
        read_token(SETTINGS, token)
    assert read_token(SETTINGS, token, allow_expired=True)["sub"] == "alice"


def test_a_token_expired_within_the_clock_skew_is_still_accepted() -> None:
    assert read_token(SETTINGS, issue_token(SETTINGS, "alice", ("user",), ttl_seconds=-1))["sub"] == "alice"


def test_a_token_signed_with_another_key_is_refused() -> None:
    with pytest.raises(jwt.InvalidSignatureError):
        read_token(SETTINGS, issue_token(OTHER_KEY, "alice", ("admin",)))


def test_a_changed_payload_is_refused() -> None:
    header, _payload, signature = issue_token(SETTINGS, "alice", ("user",)).split(".")
    forged = jwt.utils.base64url_encode(json.dumps(good_claims(roles=["admin"])).encode()).decode()
    with pytest.raises(jwt.InvalidSignatureError):
        read_token(SETTINGS, f"{header}.{forged}.{signature}")


@pytest.mark.parametrize("algorithm", ["none", "HS512"])
def test_only_hs256_is_accepted(algorithm: str) -> None:
    key = None if algorithm == "none" else SETTINGS.jwt_secret
    with pytest.raises(jwt.InvalidAlgorithmError):
        read_token(SETTINGS, sign(good_claims(), key, algorithm))  # type: ignore[arg-type]


def test_wrong_audience_and_issuer_are_refused() -> None:
    with pytest.raises(jwt.InvalidAudienceError):
        read_token(SETTINGS, issue_token(replace(SETTINGS, jwt_audience="other"), "alice", ("user",)))
    with pytest.raises(jwt.InvalidIssuerError):
        read_token(SETTINGS, issue_token(replace(SETTINGS, jwt_issuer="other"), "alice", ("user",)))
    with pytest.raises(jwt.MissingRequiredClaimError, match="aud"):
        read_token(SETTINGS, sign(good_claims(aud=None)))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"exp": None}, "exp"),
        ({"jti": None}, "jti"),
        ({"type": "id"}, "type"),
        ({"roles": "admin"}, "list of strings"),
        ({"roles": [1, 2]}, "list of strings"),
        ({"roles": ["root"]}, "unknown role"),
        ({"roles": ["visitor", "admin"]}, "cannot be combined"),
        ({"type": "refresh", "roles": ["visitor"]}, "cannot be refreshed"),
    ],
)
def test_signed_tokens_with_bad_claims_are_refused(changes: dict[str, object], message: str) -> None:
    with pytest.raises(TokenClaimsError, match=message):
        read_token(SETTINGS, sign(good_claims(**changes)))
    assert message in (claims_problem(claims_of(sign(good_claims(**changes)))) or "")


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "Bearer x"])
def test_garbage_is_refused(garbage: str) -> None:
    with pytest.raises(jwt.InvalidTokenError):
        read_token(SETTINGS, garbage)


# -- the embedded revocation store ------------------------------------------------------------------------------------


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "revoked.sqlite3"


def test_a_revoked_token_is_revoked_for_every_process_opening_the_file(store_path: Path) -> None:
    server, command = SqliteRevocations(store_path, 3600), SqliteRevocations(store_path, 3600)
    try:
        assert not server.is_revoked("j-1", "alice", time.time())
        command.revoke_token("j-1", time.time() + 60)
        assert server.is_revoked("j-1", "alice", time.time())
        assert not server.is_revoked("j-2", "alice", time.time())
    finally:
        server.close()
        command.close()


def test_revoking_a_subject_refuses_its_tokens_issued_until_then_only(store_path: Path) -> None:
    store = SqliteRevocations(store_path, 3600)
    try:
        before = time.time()
        cutoff = before + 0.001
        store.revoke_subject("alice", cutoff)
        assert store.is_revoked("j-old", "alice", before)
        assert store.is_revoked("j-same", "alice", cutoff)
        # Issued a millisecond later: a new login right after the revocation works.
        assert not store.is_revoked("j-new", "alice", cutoff + 0.001)
        assert not store.is_revoked("j-bob", "bob", before)
    finally:
        store.close()


def test_rows_past_their_time_are_dropped_on_the_next_write(store_path: Path) -> None:
    store = SqliteRevocations(store_path, keep_seconds=-1)  # subject cutoffs are past their time at once
    try:
        store.revoke_token("gone", time.time() - 1)  # expired already: nothing to store
        store.revoke_subject("alice", time.time())
        store.revoke_token("kept", time.time() + 60)
    finally:
        store.close()
    with sqlite3.connect(store_path) as db:
        assert db.execute("SELECT jti FROM revoked_tokens").fetchall() == [("kept",)]
        assert db.execute("SELECT subject FROM revoked_subjects").fetchall() == []


def test_revoke_keeps_a_token_refused_until_it_expires_for_good(store_path: Path) -> None:
    claims = read_token(SETTINGS, issue_token(SETTINGS, "alice", ("user",), ttl_seconds=60))
    store = SqliteRevocations(store_path, 3600)
    try:
        revoke(store, claims)
        assert store.is_revoked(str(claims["jti"]), "alice", float(claims["iat"]))
    finally:
        store.close()
    with sqlite3.connect(store_path) as db:
        (until,) = db.execute("SELECT until FROM revoked_tokens").fetchone()
    assert until == claims["exp"] + CLOCK_SKEW_SECONDS


def test_the_embedded_layout_keeps_revocations_in_the_data_folder(tmp_path: Path) -> None:
    store = open_revocations(replace(SETTINGS, data_dir=tmp_path / "data"))
    try:
        store.revoke_token("j-1", time.time() + 60)
    finally:
        store.close()
    assert (tmp_path / "data" / "revoked_tokens.sqlite3").exists()
