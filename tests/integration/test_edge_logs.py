"""The HTTP edge's logs over real HTTP: failed readiness checks and unhandled errors show types, not messages."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask

from assistant.bootstrap import build_gateway
from assistant.embedded import build_embedded
from pipeline.settings import Settings

PASSWORD = "hunter2-Zq81"
USER_TEXT = "我的手机号是 138-0013-8000"


class UnreachableDatabase:
    """A repository whose server is down, failing the way drivers do: with the connection URL in the message."""

    def ping(self) -> None:
        raise ConnectionError(f"could not connect to postgresql://assistant:{PASSWORD}@db:5432/assistant")


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    settings = Settings.from_env({"ASSISTANT_DATA_DIR": str(tmp_path / "data"),
                                  "ASSISTANT_CONFIG_DIR": str(tmp_path / "config")})  # fmt: skip
    adapters, celery_app, _ = build_embedded(settings)
    flask_app = build_gateway(settings, replace(adapters, repository=UnreachableDatabase()), celery_app)  # type: ignore[arg-type]

    @flask_app.get("/explode")
    def explode() -> Any:
        raise ValueError(f"row failed: ({USER_TEXT})")

    try:
        yield flask_app
    finally:
        flask_app.extensions["assistant"]["hub"].close()
        adapters.close()


def test_a_failed_readiness_check_logs_only_the_error_type(
    app: Flask, serve: Callable[..., AbstractContextManager[str]], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG), serve(app) as base:
        response = requests.get(f"{base}/readyz", timeout=10)
    assert response.status_code == 503
    assert response.json()["checks"]["database"] == "unreachable: ConnectionError"
    assert "readiness check database failed: ConnectionError" in caplog.text
    assert PASSWORD not in caplog.text


def test_an_unhandled_error_is_logged_without_its_message(
    app: Flask, serve: Callable[..., AbstractContextManager[str]], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG), serve(app) as base:
        response = requests.get(f"{base}/explode", timeout=10)
    assert (response.status_code, response.json()["error"]) == (500, "internal_server_error")
    assert "unhandled error: builtins.ValueError" in caplog.text and "in explode" in caplog.text
    assert "138-0013-8000" not in caplog.text
