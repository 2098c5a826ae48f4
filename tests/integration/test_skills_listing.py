"""``GET /api/skills`` over real HTTP: a registered skill's webhook URL is shown to admins only."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
import requests

from adapters.tokens import issue_token
from assistant.bootstrap import build_gateway
from assistant.embedded import build_embedded
from pipeline.settings import Settings

HOOK = "https://hooks.example.com/orders?token=tok-5e1f0a9b"


@pytest.fixture
def api(tmp_path: Path, serve: Callable[..., AbstractContextManager[str]]) -> Iterator[Callable[..., Any]]:
    """``api(method, path, role, **kwargs)`` against an embedded gateway on a real port (no workers needed)."""
    settings = Settings.from_env({"ASSISTANT_DATA_DIR": str(tmp_path / "data"),
                                  "ASSISTANT_CONFIG_DIR": str(tmp_path / "config")})  # fmt: skip
    adapters, celery_app, _ = build_embedded(settings)
    app = build_gateway(settings, adapters, celery_app)
    tokens = {
        "user": issue_token(settings, "bob", ("user",), 600),
        "admin": issue_token(settings, "root", ("user", "admin"), 600),
    }
    try:
        with serve(app) as base:

            def call(method: str, path: str, role: str, **kwargs: Any) -> requests.Response:
                headers = {"Authorization": f"Bearer {tokens[role]}"}
                return requests.request(method, base + path, headers=headers, timeout=10, **kwargs)

            yield call
    finally:
        app.extensions["assistant"]["hub"].close()
        adapters.close()


def test_only_admins_see_webhook_urls(api: Callable[..., requests.Response]) -> None:
    hooked, fixed = f"hook-{uuid.uuid4().hex[:6]}", f"fixed-{uuid.uuid4().hex[:6]}"
    definitions = [
        {"name": hooked, "description": "查订单", "triggers": ["订单"], "webhook": HOOK},
        {"name": fixed, "description": "营业时间", "triggers": ["营业时间"], "response": "九点开门。"},
    ]
    for definition in definitions:
        assert api("POST", "/api/skills", "admin", json=definition).status_code == 201

    as_user = api("GET", "/api/skills", "user")
    assert as_user.status_code == 200, as_user.text
    assert "tok-5e1f0a9b" not in as_user.text and "hooks.example.com" not in as_user.text
    listed = {s["name"]: s for s in as_user.json()["skills"]}
    assert "webhook" not in listed[hooked] and "webhook" not in listed[fixed]
    assert (listed[hooked]["kind"], listed[hooked]["triggers"]) == ("registered", ["订单"])
    assert listed[fixed]["response"] == "九点开门。"

    as_admin = {s["name"]: s for s in api("GET", "/api/skills", "admin").json()["skills"]}
    assert as_admin[hooked]["webhook"] == HOOK
    assert as_admin[fixed]["webhook"] is None
