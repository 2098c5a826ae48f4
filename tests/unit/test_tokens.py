"""Access tokens: issue and verify, expiry, the wrong secret, roles."""

from __future__ import annotations

import time

import jwt
import pytest

from adapters.tokens import ALGORITHM, Identity, TokenError, issue_token, verify_token

SECRET = "s" * 40
OTHER_SECRET = "o" * 40


def test_issued_token_verifies_to_its_subject_and_roles() -> None:
    token = issue_token(SECRET, "alice", ("user",), ttl_seconds=60)
    identity = verify_token(SECRET, token)
    assert identity == Identity(subject="alice", roles=("user",))
    assert not identity.is_admin


def test_admin_role_makes_an_admin() -> None:
    identity = verify_token(SECRET, issue_token(SECRET, "root", ("user", "admin"), ttl_seconds=60))
    assert identity.roles == ("user", "admin")
    assert identity.is_admin


def test_token_lifetime_is_the_ttl() -> None:
    before = int(time.time())
    claims = jwt.decode(issue_token(SECRET, "alice", ("user",), ttl_seconds=3600), SECRET, algorithms=[ALGORITHM])
    assert claims["exp"] - claims["iat"] == 3600
    assert claims["iat"] >= before


def test_expired_token_is_refused() -> None:
    token = issue_token(SECRET, "alice", ("user",), ttl_seconds=-5)
    with pytest.raises(TokenError, match="expired"):
        verify_token(SECRET, token)


def test_token_signed_with_another_secret_is_refused() -> None:
    token = issue_token(OTHER_SECRET, "alice", ("admin",), ttl_seconds=60)
    with pytest.raises(TokenError, match="invalid"):
        verify_token(SECRET, token)


def test_tampered_token_is_refused() -> None:
    token = issue_token(SECRET, "alice", ("user",), ttl_seconds=60)
    header, _payload, signature = token.split(".")
    forged_payload = jwt.utils.base64url_encode(b'{"sub":"alice","roles":["admin"],"exp":9999999999}').decode()
    with pytest.raises(TokenError):
        verify_token(SECRET, f"{header}.{forged_payload}.{signature}")


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "Bearer x"])
def test_garbage_is_refused(garbage: str) -> None:
    with pytest.raises(TokenError):
        verify_token(SECRET, garbage)


def test_unsigned_token_is_refused() -> None:
    token = jwt.encode({"sub": "alice", "roles": ["admin"], "exp": int(time.time()) + 60}, None, algorithm="none")
    with pytest.raises(TokenError):
        verify_token(SECRET, token)


def test_token_without_expiry_is_refused() -> None:
    token = jwt.encode({"sub": "alice", "roles": ["user"]}, SECRET, algorithm=ALGORITHM)
    with pytest.raises(TokenError):
        verify_token(SECRET, token)


@pytest.mark.parametrize("roles", ["admin", [1, 2], {"admin": True}])
def test_roles_must_be_a_list_of_strings(roles: object) -> None:
    token = jwt.encode({"sub": "alice", "roles": roles, "exp": int(time.time()) + 60}, SECRET, algorithm=ALGORITHM)
    with pytest.raises(TokenError, match="roles"):
        verify_token(SECRET, token)


def test_unknown_role_cannot_be_issued() -> None:
    with pytest.raises(ValueError, match="superuser"):
        issue_token(SECRET, "alice", ("user", "superuser"), ttl_seconds=60)


def test_a_token_needs_a_subject() -> None:
    with pytest.raises(ValueError, match="subject"):
        issue_token(SECRET, "", ("user",), ttl_seconds=60)
