"""Stream tickets and tokens in URLs never reach a log: gunicorn's access log (a real ``assistant gateway``), the
embedded cheroot server, werkzeug's request lines, and our JSON lines."""

from __future__ import annotations

import logging
import os
import shlex
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import requests
from support import eventually

from assistant.bootstrap import build_gateway
from assistant.embedded import build_embedded, http_server
from assistant.logging_setup import configure_logging
from pipeline.ops_config import LogConfig
from pipeline.settings import Settings

BIN = Path(sys.executable).parent
TICKET = "TICKET-SECRET-8c1f2b"
TOKEN = "TOKEN-SECRET-77aa19"
BEARER = "BEARER-SECRET-0b9e"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def send_secrets(base: str) -> None:
    """Requests that carry a ticket, a token in the query and a bearer header; each is refused (401)."""
    session = "s-logs-1"
    urls = [
        f"{base}/api/sessions/{session}/events?ticket={TICKET}&after=1-0",
        f"{base}/api/sessions/{session}/events?after=1-0&ticket={TICKET}",
        f"{base}/api/sessions/{session}?access_token={TOKEN}",
        f"{base}/api/sessions/{session}?token={TOKEN}",
    ]
    for url in urls:
        response = requests.get(url, headers={"Authorization": f"Bearer {BEARER}"}, timeout=10)
        assert response.status_code == 401, (url, response.text)


def assert_redacted(text: str, *, logged: bool = True) -> None:
    for secret in (TICKET, TOKEN, BEARER):
        assert secret not in text, f"{secret} in the log:\n{text}"
    if logged:
        # The request lines are there, with the values taken out.
        assert "ticket=[redacted]" in text and "access_token=[redacted]" in text and "token=[redacted]" in text


@pytest.mark.servers
def test_gunicorns_access_log_shows_no_ticket_or_token(tmp_path: Path) -> None:
    access_log = tmp_path / "access.log"
    env = {
        **os.environ,
        "ASSISTANT_DATA_DIR": str(tmp_path / "data"),
        "ASSISTANT_CONFIG_DIR": str(tmp_path / "config"),
        "JWT_SECRET": "access-log-secret-" + "a" * 32,
        "LOG_FORMAT": "json",
        "LOG_FILE": str(tmp_path / "assistant.log"),
        "GATEWAY_ACCESS_LOG": str(access_log),
        # Every atom a format could name that holds the URL or a credential header.
        "GUNICORN_CMD_ARGS": "--access-logformat "
        + shlex.quote(
            '%(h)s "%(r)s" %(s)s q=%(q)s raw=%({raw_uri}e)s qs=%({query_string}e)s auth=%({authorization}i)s'
        ),
    }
    migrated = subprocess.run([str(BIN / "assistant"), "migrate"], cwd=tmp_path, env=env, capture_output=True,
                              timeout=120)  # fmt: skip
    assert migrated.returncode == 0, migrated.stderr
    port = free_port()
    with open(tmp_path / "gateway.err", "wb") as err:
        child = subprocess.Popen([str(BIN / "assistant"), "gateway", "--port", str(port)], cwd=tmp_path, env=env,
                                 stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)  # fmt: skip
        try:
            base = f"http://127.0.0.1:{port}"
            eventually(lambda: _answers(f"{base}/healthz"), 60, what="the gateway", interval=0.2)
            send_secrets(base)
            eventually(lambda: access_log.exists() and access_log.read_text().count("\n") >= 5, 10,
                       what="the access log lines")  # fmt: skip
        finally:
            os.killpg(child.pid, 15)
            child.wait(15)
    text = access_log.read_text()
    assert_redacted(text)
    assert "auth=[redacted]" in text and "q=after=1-0&ticket=[redacted]" in text
    assert_redacted((tmp_path / "gateway.err").read_text() + (tmp_path / "assistant.log").read_text(), logged=False)


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


@contextmanager
def logging_to(path: Path, settings: Settings) -> Iterator[None]:
    """``configure_logging`` at INFO into ``path`` for the block; the test run's own logging after."""
    root = logging.getLogger()
    before = (list(root.handlers), root.level, logging.getLogger("werkzeug").level)
    configure_logging(replace(settings, log_level="INFO", logs=LogConfig(format="json", file=path)), "embedded")
    logging.getLogger("werkzeug").setLevel(logging.INFO)  # conftest quiets it; here its request lines are the point
    try:
        yield
    finally:
        for handler in [h for h in root.handlers if getattr(h, "_assistant", False)]:
            root.removeHandler(handler)
            handler.close()
        root.handlers[:] = before[0]
        root.setLevel(before[1])
        logging.getLogger("werkzeug").setLevel(before[2])


@pytest.fixture(scope="module")
def embedded_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, Any]]:
    root = tmp_path_factory.mktemp("logs")
    settings = Settings.from_env({"ASSISTANT_DATA_DIR": str(root / "data"), "ASSISTANT_CONFIG_DIR": str(root)})
    adapters, celery_app, _workers = build_embedded(settings)
    app = build_gateway(settings, adapters, celery_app)
    try:
        yield settings, app
    finally:
        app.extensions["assistant"]["hub"].close()
        adapters.close()


def test_werkzeugs_request_lines_show_no_ticket_or_token(
    tmp_path: Path, embedded_app: tuple[Settings, Any], serve: Any
) -> None:
    settings, app = embedded_app
    log = tmp_path / "assistant.log"
    with logging_to(log, settings), serve(app) as base:
        send_secrets(base)
        time.sleep(0.2)  # werkzeug logs after the response is sent
    assert_redacted(log.read_text())


def test_the_embedded_server_logs_no_ticket_or_token(tmp_path: Path, embedded_app: tuple[Settings, Any]) -> None:
    settings, app = embedded_app
    log = tmp_path / "assistant.log"
    server = http_server(app, "127.0.0.1", 0)
    server.prepare()
    thread = threading.Thread(target=server.serve, daemon=True)
    with logging_to(log, settings):
        thread.start()
        try:
            send_secrets(f"http://127.0.0.1:{server.bind_addr[1]}")
            # cheroot's own error lines (a request it could not handle, with its URL) go through the same log.
            server.error_log(f"bad request GET /api/sessions/s/events?ticket={TICKET}", level=logging.WARNING)
        finally:
            server.stop()
            thread.join(5)
    text = log.read_text()
    assert_redacted(text, logged=False)
    assert '"logger": "cheroot"' in text and "ticket=[redacted]" in text
