"""``/operator`` over real HTTP, in both layouts: the page, its script and style, and the headers that keep it to
itself (Redis DB 14 for the distributed layout)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
import requests

from assistant.bootstrap import build_adapters, build_gateway, build_worker_app
from assistant.embedded import build_embedded
from ingress.operator_page import STATIC
from pipeline.settings import Settings

REDIS_DB = 14
HOOKS = ("operator-token", "operator-login", "operator-take", "operator-input", "operator-send", "operator-release",
         "operator-status")  # fmt: skip


@pytest.fixture(scope="module", params=["embedded", pytest.param("distributed", marks=pytest.mark.servers)])
def gateway(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, serve: Callable[..., Any]
) -> Iterator[str]:
    root = tmp_path_factory.mktemp(request.param)
    if request.param == "embedded":
        settings = Settings.from_env({"ASSISTANT_DATA_DIR": str(root / "data"), "ASSISTANT_CONFIG_DIR": str(root)})
        adapters, celery_app, _ = build_embedded(settings)  # no workers: no message is sent
    else:
        redis.Redis(db=REDIS_DB).flushdb()
        settings = Settings.from_env({
            "BROKER_URL": f"redis://127.0.0.1:6379/{REDIS_DB}",
            "REDIS_URL": f"redis://127.0.0.1:6379/{REDIS_DB}",
            "DATABASE_URL": f"sqlite:///{root / 'db.sqlite3'}",
            "JWT_SECRET": "operator-page-test-secret-" + "o" * 32,
            "ASSISTANT_CONFIG_DIR": str(root),
        })  # fmt: skip
        adapters = build_adapters(settings, migrate=True)
        celery_app = build_worker_app(settings)
    app = build_gateway(settings, adapters, celery_app)
    try:
        with serve(app) as base:
            yield base
    finally:
        app.extensions["assistant"]["hub"].close()
        adapters.close()
        if request.param == "distributed":
            redis.Redis(db=REDIS_DB).flushdb()


def test_the_page_is_served_with_its_hooks_and_a_strict_policy(gateway: str) -> None:
    page = requests.get(f"{gateway}/operator", timeout=10)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy and "connect-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy and page.headers["X-Frame-Options"] == "DENY"
    # Stream URLs carry tickets: no Referer may take them elsewhere.
    assert page.headers["Referrer-Policy"] == "no-referrer"
    for hook in HOOKS:
        assert f'data-testid="{hook}"' in page.text
    # Nothing inline: the policy would block it.
    assert not re.search(r"<script(?![^>]*\bsrc=)", page.text) and "<style" not in page.text
    assert not re.search(r"<[^>]*\son\w+\s*=", page.text), "an inline event handler"


@pytest.mark.parametrize(("path", "kind", "name"), [
    ("/operator/operator.js", "text/javascript", "operator.js"),
    ("/operator/operator.css", "text/css", "operator.css"),
])  # fmt: skip
def test_the_script_and_style_are_served_revalidated(gateway: str, path: str, kind: str, name: str) -> None:
    response = requests.get(gateway + path, timeout=10)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith(kind)
    assert response.headers["Cache-Control"] == "no-cache" and response.headers["ETag"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.content == (STATIC / name).read_bytes()
    again = requests.get(gateway + path, headers={"If-None-Match": response.headers["ETag"]}, timeout=10)
    assert again.status_code == 304


def test_the_script_carries_every_hook_and_both_languages() -> None:
    script = (STATIC / "operator.js").read_text(encoding="utf-8")
    for hook in ("operator-session", "operator-message"):
        assert f'"{hook}"' in script
    assert "该会话已被{agent}接入。" in script and "Already taken: {agent} has this session." in script
