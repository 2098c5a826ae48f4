"""``/widget.js`` and ``/demo`` over real HTTP: the script is served to any page and cached; ``/demo`` carries it with
the built-in ``demo`` site in embedded mode, and does not exist when gateway and workers run apart (Redis DB 13)."""

from __future__ import annotations

import gzip
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
import requests

from assistant.bootstrap import build_adapters, build_gateway, build_worker_app
from assistant.embedded import build_embedded
from ingress.pages import STATIC
from pipeline.settings import Settings

REDIS_DB = 13
#: The widget stays small: what a page downloads, gzipped.
MAX_GZIP_BYTES = 8 * 1024


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory, serve: Callable[..., Any]) -> Iterator[str]:
    root = tmp_path_factory.mktemp("embedded")
    settings = Settings.from_env({"ASSISTANT_DATA_DIR": str(root / "data"), "ASSISTANT_CONFIG_DIR": str(root)})
    adapters, celery_app, _ = build_embedded(settings)  # no workers: no message is sent
    app = build_gateway(settings, adapters, celery_app)
    try:
        with serve(app) as base:
            yield base
    finally:
        app.extensions["assistant"]["hub"].close()
        adapters.close()


@pytest.fixture(scope="module")
def distributed(tmp_path_factory: pytest.TempPathFactory, serve: Callable[..., Any]) -> Iterator[str]:
    root = tmp_path_factory.mktemp("distributed")
    redis.Redis(db=REDIS_DB).flushdb()
    settings = Settings.from_env({
        "BROKER_URL": f"redis://127.0.0.1:6379/{REDIS_DB}",
        "REDIS_URL": f"redis://127.0.0.1:6379/{REDIS_DB}",
        "DATABASE_URL": f"sqlite:///{root / 'db.sqlite3'}",
        "JWT_SECRET": "widget-pages-test-secret-" + "w" * 32,
        "ASSISTANT_CONFIG_DIR": str(root),
    })  # fmt: skip
    adapters = build_adapters(settings, migrate=True)
    app = build_gateway(settings, adapters, build_worker_app(settings))
    try:
        with serve(app) as base:
            yield base
    finally:
        app.extensions["assistant"]["hub"].close()
        adapters.close()
        redis.Redis(db=REDIS_DB).flushdb()


def test_the_widget_script_is_served_to_any_page_and_cached(embedded: str) -> None:
    response = requests.get(f"{embedded}/widget.js", headers={"Origin": "https://anywhere.example"}, timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/javascript")
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "max-age=3600" in response.headers["Cache-Control"]
    assert response.content == (STATIC / "widget.js").read_bytes()
    for hook in ("assistant-open", "assistant-input", "assistant-send", "assistant-message", "assistant-typing"):
        assert f'"{hook}"' in response.text
    assert len(gzip.compress(response.content, 9)) <= MAX_GZIP_BYTES


def test_the_demo_page_carries_the_widget_with_the_demo_site(embedded: str) -> None:
    page = requests.get(f"{embedded}/demo", timeout=10)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert '<script src="/widget.js" data-site-key="demo"' in page.text and 'data-lang="en"' in page.text
    chinese = requests.get(f"{embedded}/demo?lang=zh", timeout=10)
    assert '<html lang="zh">' in chinese.text and 'data-lang="zh"' in chinese.text and "在线客服" in chinese.text


@pytest.mark.servers
def test_there_is_no_demo_page_outside_embedded_mode(distributed: str) -> None:
    page = requests.get(f"{distributed}/demo", timeout=10)
    assert page.status_code == 404 and page.json()["error"] == "not_found"
    assert requests.get(f"{distributed}/widget.js", timeout=10).status_code == 200
