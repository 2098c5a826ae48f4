"""Webhook calls against real local HTTP servers: internal addresses refused, no redirects, capped answers."""

from __future__ import annotations

import gzip
import json
import logging
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from adapters.http import post_json
from assistant.bootstrap import build_adapters
from pipeline.settings import Settings
from pipeline.skilldefs import SkillDefinition, WebhookError, WebhookRefused
from skills.declarative import DeclarativeSkill

TIMEOUT = 2.0
CAP = 1000
SECRET = "tok-7f3a9c1e5b"
USER_TEXT = "我的订单号是 A-123456，寄到北京"
UNAVAILABLE_ZH = "抱歉，这个功能暂时不可用。"


@dataclass
class Hook:
    """A webhook service that records every request; the path picks the answer."""

    seen: list[dict[str, Any]] = field(default_factory=list)
    #: Where ``/redirect`` sends the caller.
    redirect_to: str = ""

    @Request.application  # type: ignore[arg-type]
    def __call__(self, request: Request) -> Response:
        self.seen.append({"path": request.full_path, "headers": dict(request.headers), "body": request.get_data()})
        path = "/" + request.path.rsplit("/", 1)[-1]  # the last segment picks the answer
        if path == "/redirect":
            return Response("", status=302, headers={"Location": self.redirect_to})
        if path == "/exactly-cap":
            return Response(b"x" * CAP, content_type="text/plain")
        if path == "/over-cap":
            return Response(b"x" * (CAP + 1), content_type="text/plain")
        if path == "/endless":
            # No Content-Length: the client only notices the size by reading.
            return Response(_endless(), content_type="text/plain")
        if path == "/drip":
            return Response(_drip(), content_type="text/plain")
        if path == "/gzip":
            packed = gzip.compress(b"{}" + b" " * 1_000_000)
            return Response(packed, content_type="application/json", headers={"Content-Encoding": "gzip"})
        if path == "/fail":
            return Response("boom", status=500)
        return Response(json.dumps({"text": "好的"}, ensure_ascii=False), content_type="application/json")


def _endless() -> Iterator[bytes]:
    for _ in range(10_000):  # 640 MB if someone read it all; the client must stop at the cap
        yield b"y" * 65536


def _drip() -> Iterator[bytes]:
    for _ in range(100):  # 10 s in all, each byte well within the read timeout
        time.sleep(0.1)
        yield b"z"


@pytest.fixture
def hook(serve: Callable[..., AbstractContextManager[str]]) -> Iterator[tuple[Hook, str, int]]:
    service = Hook()
    with serve(service) as base:
        yield service, base, int(base.rsplit(":", 1)[1])


def never_resolve(host: str, port: int) -> Sequence[str]:
    raise AssertionError(f"{host} should have been refused before any lookup")


def resolver(table: dict[str, list[str]]) -> Callable[[str, int], Sequence[str]]:
    """A DNS stand-in: ``table`` answers, every lookup is counted in ``resolve.calls``."""
    calls: list[str] = []

    def resolve(host: str, port: int) -> Sequence[str]:
        calls.append(host)
        return table[host]

    resolve.calls = calls  # type: ignore[attr-defined]
    return resolve


# --- refused destinations ---------------------------------------------------------------------------------------


def test_loopback_is_refused_without_the_allow_list(hook: tuple[Hook, str, int]) -> None:
    service, base, _ = hook
    with pytest.raises(WebhookRefused, match="loopback"):
        post_json(f"{base}/ok", {"message": "hi"}, TIMEOUT)
    assert service.seen == []
    # The same server answers once its host is listed.
    assert post_json(f"{base}/ok", {"message": "hi"}, TIMEOUT, allow_hosts=["127.0.0.1"]) == {"text": "好的"}
    assert len(service.seen) == 1


def test_the_localhost_name_is_refused(hook: tuple[Hook, str, int]) -> None:
    service, _, port = hook
    for host in ("localhost", "LOCALHOST.", "api.localhost", "metadata.google.internal"):
        with pytest.raises(WebhookRefused):
            post_json(f"http://{host}:{port}/ok", {}, TIMEOUT, resolve=never_resolve)
    # The allow-list matches the URL's host as written: listing the address does not open the name.
    with pytest.raises(WebhookRefused):
        post_json(f"http://localhost:{port}/ok", {}, TIMEOUT, allow_hosts=["127.0.0.1"])
    assert service.seen == []


@pytest.mark.parametrize(
    "host",
    [
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "100.64.0.1",
        "169.254.169.254",
        "[fd00:ec2::254]",
        "[::1]",
        "[::ffff:127.0.0.1]",
        "[::ffff:a9fe:a9fe]",  # 169.254.169.254, IPv4-mapped in hex
        "[64:ff9b::7f00:1]",  # 127.0.0.1 through NAT64
        "[2002:7f00:1::]",  # 127.0.0.1 through 6to4
        "[fe80::1]",
        "[fc00::1]",
        "0.0.0.0",
        "[::]",
        "224.0.0.1",
        "[ff02::1]",
        "240.0.0.1",
        "255.255.255.255",
    ],
)
def test_internal_addresses_are_refused_before_connecting(host: str) -> None:
    with pytest.raises(WebhookRefused):
        post_json(f"http://{host}:8080/hook?token={SECRET}", {}, TIMEOUT, resolve=never_resolve)


@pytest.mark.parametrize("spelling", ["127.1", "2130706433", "0x7f.0.0.1", "017700000001"])
def test_unusual_spellings_of_loopback_are_refused(hook: tuple[Hook, str, int], spelling: str) -> None:
    service, _, port = hook
    # Not IP literals to ipaddress, so they go to the system resolver, which reads them as 127.0.0.1.
    with pytest.raises(WebhookRefused):
        post_json(f"http://{spelling}:{port}/ok", {}, TIMEOUT)
    assert service.seen == []


def test_a_public_looking_name_that_resolves_to_loopback_is_refused(hook: tuple[Hook, str, int]) -> None:
    service, _, port = hook
    resolve = resolver({"hooks.example.com": ["127.0.0.1"], "mixed.example.com": ["93.184.215.14", "10.1.2.3"]})
    with pytest.raises(WebhookRefused, match=r"hooks\.example\.com resolves to 127\.0\.0\.1"):
        post_json(f"http://hooks.example.com:{port}/ok", {}, TIMEOUT, resolve=resolve)
    # One internal address among public ones is enough to refuse.
    with pytest.raises(WebhookRefused, match=r"10\.1\.2\.3"):
        post_json(f"http://mixed.example.com:{port}/ok", {}, TIMEOUT, resolve=resolve)
    assert service.seen == []


def test_the_connection_goes_to_the_address_that_was_checked(hook: tuple[Hook, str, int]) -> None:
    """One lookup per call, and the connection uses its answer: a second, rebound answer is never asked for.

    ``.invalid`` names never resolve in real DNS, so reaching the server at all proves the client connected to
    the address the check saw rather than looking the name up again.
    """
    service, _, port = hook
    resolve = resolver({"rebind.invalid": ["127.0.0.1"]})
    answer = post_json(f"http://rebind.invalid:{port}/ok", {"message": "hi"}, TIMEOUT,
                       allow_hosts=["rebind.invalid"], resolve=resolve)  # fmt: skip
    assert answer == {"text": "好的"}
    assert resolve.calls == ["rebind.invalid"]  # type: ignore[attr-defined]
    assert service.seen[0]["headers"]["Host"] == f"rebind.invalid:{port}"
    assert json.loads(service.seen[0]["body"]) == {"message": "hi"}


def test_the_next_address_is_tried_when_one_refuses_connections(hook: tuple[Hook, str, int]) -> None:
    service, _, port = hook
    # Nothing listens on 127.0.0.2's port (the server is bound to 127.0.0.1 only).
    resolve = resolver({"two.invalid": ["127.0.0.2", "127.0.0.1"]})
    answer = post_json(f"http://two.invalid:{port}/ok", {}, TIMEOUT, allow_hosts=["two.invalid"], resolve=resolve)
    assert answer == {"text": "好的"}
    assert len(service.seen) == 1


@pytest.mark.parametrize("url", ["ftp://example.org/x", "file:///etc/passwd", "gopher://example.org/", "http:///x"])
def test_only_http_and_https_with_a_host(url: str) -> None:
    with pytest.raises(WebhookRefused):
        post_json(url, {}, TIMEOUT, resolve=never_resolve)


@pytest.fixture
def tls_hook(tmp_path: Path) -> Iterator[tuple[Hook, int, str]]:
    """The hook over https on 127.0.0.1 with a self-signed certificate for ``hooks.test``; yields its CA file."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=hooks.test",
         "-addext", "subjectAltName=DNS:hooks.test", "-addext", "basicConstraints=critical,CA:TRUE",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    service = Hook()
    server = make_server("127.0.0.1", 0, service, threaded=True, ssl_context=context)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield service, server.port, str(cert)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_https_goes_to_the_checked_address_and_verifies_the_urls_host(tls_hook: tuple[Hook, int, str]) -> None:
    service, port, ca_file = tls_hook
    resolve = resolver({"hooks.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]})
    call = partial(post_json, body={}, timeout=TIMEOUT, allow_hosts=["hooks.test", "other.test", "127.0.0.1"],
                   resolve=resolve, ca_file=ca_file)  # fmt: skip
    # Connected to 127.0.0.1, yet the TLS handshake named hooks.test and checked the certificate against it.
    assert call(f"https://hooks.test:{port}/ok") == {"text": "好的"}
    assert service.seen[0]["headers"]["Host"] == f"hooks.test:{port}"
    # The same server and address under a name its certificate does not carry: refused by TLS.
    for url in (f"https://other.test:{port}/ok", f"https://127.0.0.1:{port}/ok"):
        with pytest.raises(WebhookError, match="cannot connect"):
            call(url)
    # Without the test CA, the certificate is not trusted at all.
    with pytest.raises(WebhookError, match="cannot connect"):
        post_json(f"https://hooks.test:{port}/ok", {}, TIMEOUT, allow_hosts=["hooks.test"], resolve=resolve)
    assert len(service.seen) == 1


# --- redirects and answers --------------------------------------------------------------------------------------


def test_a_redirect_is_not_followed(serve: Callable[..., AbstractContextManager[str]]) -> None:
    first, elsewhere = Hook(), Hook()
    with serve(first) as base, serve(elsewhere) as other:
        first.redirect_to = f"{other}/ok"
        with pytest.raises(WebhookRefused, match="302"):
            post_json(f"{base}/redirect", {}, TIMEOUT, allow_hosts=["127.0.0.1"])
        skill = DeclarativeSkill(
            SkillDefinition(name="orders", description="", triggers=("订单",), webhook=f"{base}/redirect"),
            partial(post_json, timeout=TIMEOUT, allow_hosts=["127.0.0.1"]),
        )
        assert skill.execute({"message": "订单", "language": "zh"}) == UNAVAILABLE_ZH
    assert [s["path"] for s in first.seen] == ["/redirect?", "/redirect?"]
    assert elsewhere.seen == []


def test_the_answer_is_capped(hook: tuple[Hook, str, int]) -> None:
    _, base, _ = hook
    call = partial(post_json, body={}, timeout=TIMEOUT, max_bytes=CAP, allow_hosts=["127.0.0.1"])
    assert call(f"{base}/exactly-cap") == "x" * CAP
    with pytest.raises(WebhookError, match=f"more than {CAP} bytes"):
        call(f"{base}/over-cap")
    started = time.monotonic()
    with pytest.raises(WebhookError, match=f"more than {CAP} bytes"):
        call(f"{base}/endless")
    assert time.monotonic() - started < TIMEOUT  # stopped at the cap, not at the end of the stream


def test_a_slow_trickle_fails_at_the_deadline(hook: tuple[Hook, str, int]) -> None:
    _, base, _ = hook
    started = time.monotonic()
    with pytest.raises(WebhookError, match="too long"):
        post_json(f"{base}/drip", {}, 0.5, allow_hosts=["127.0.0.1"])
    assert time.monotonic() - started < 2


def test_a_compressed_answer_is_refused(hook: tuple[Hook, str, int]) -> None:
    _, base, _ = hook
    with pytest.raises(WebhookError, match="Content-Encoding gzip"):
        post_json(f"{base}/gzip", {}, TIMEOUT, allow_hosts=["127.0.0.1"])


def test_credentials_in_the_url_become_basic_auth(hook: tuple[Hook, str, int]) -> None:
    service, _, port = hook
    post_json(f"http://user:p%40ss@127.0.0.1:{port}/ok", {}, TIMEOUT, allow_hosts=["127.0.0.1"])
    assert service.seen[0]["headers"]["Authorization"] == "Basic dXNlcjpwQHNz"  # user:p@ss
    assert service.seen[0]["headers"]["Host"] == f"127.0.0.1:{port}"


def test_the_settings_reach_the_composition_root(hook: tuple[Hook, str, int], tmp_path: Path) -> None:
    _, base, _ = hook
    env = {"ASSISTANT_DATA_DIR": str(tmp_path / "data"), "ASSISTANT_CONFIG_DIR": str(tmp_path / "config")}
    closed = build_adapters(Settings.from_env(env))
    listed = build_adapters(Settings.from_env({**env, "WEBHOOK_ALLOW_HOSTS": "127.0.0.1", "WEBHOOK_MAX_BYTES": "100"}))
    try:
        with pytest.raises(WebhookRefused):
            closed.post_json(f"{base}/ok", {})
        assert listed.post_json(f"{base}/ok", {}) == {"text": "好的"}
        with pytest.raises(WebhookError, match="more than 100 bytes"):
            listed.post_json(f"{base}/exactly-cap", {})
    finally:
        closed.close()
        listed.close()


# --- what the logs show -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "allowed", "verb"),
    [("/fail", ["127.0.0.1"], "failed"), ("/ok", [], "refused"), ("/redirect", ["127.0.0.1"], "refused")],
)
def test_a_failed_webhook_logs_the_skill_and_host_only(
    hook: tuple[Hook, str, int], caplog: pytest.LogCaptureFixture, path: str, allowed: list[str], verb: str
) -> None:
    service, _, port = hook
    service.redirect_to = f"http://127.0.0.1:{port}/ok?token={SECRET}"
    url = f"http://127.0.0.1:{port}/{SECRET}{path}?token={SECRET}"
    definition = SkillDefinition(name="orders", description="", triggers=("订单",), webhook=url)
    skill = DeclarativeSkill(definition, partial(post_json, timeout=TIMEOUT, allow_hosts=allowed))
    with caplog.at_level(logging.DEBUG):
        assert skill.execute({"message": USER_TEXT, "language": "zh"}) == UNAVAILABLE_ZH
    warnings = [r for r in caplog.records if r.name == "skills.declarative" and r.levelno == logging.WARNING]
    assert len(warnings) == 1, caplog.text
    line = warnings[0].getMessage()
    assert "orders" in line and "host 127.0.0.1" in line and verb in line, line
    everything = caplog.text + "".join(str(r.args) for r in caplog.records)
    assert SECRET not in everything
    assert USER_TEXT not in everything and "A-123456" not in everything


def test_an_unusable_answer_logs_no_answer_text(hook: tuple[Hook, str, int], caplog: pytest.LogCaptureFixture) -> None:
    _, base, _ = hook
    definition = SkillDefinition(name="orders", description="", triggers=("订单",), webhook=f"{base}/exactly-cap")
    skill = DeclarativeSkill(definition, lambda url, body: {"status": USER_TEXT})
    with caplog.at_level(logging.DEBUG):
        assert skill.execute({"message": USER_TEXT, "language": "zh"}) == UNAVAILABLE_ZH
    assert "orders" in caplog.text and "host 127.0.0.1" in caplog.text
    assert USER_TEXT not in caplog.text and "exactly-cap" not in caplog.text


def test_an_exception_quoting_the_url_is_logged_by_type_only(caplog: pytest.LogCaptureFixture) -> None:
    url = f"https://hooks.example.com/x?token={SECRET}"

    def leaky(target: str, body: dict[str, Any]) -> Any:
        raise ConnectionError(f"cannot reach {target} with {body}")

    skill = DeclarativeSkill(SkillDefinition(name="orders", description="", triggers=("x",), webhook=url), leaky)
    with caplog.at_level(logging.DEBUG):
        assert skill.execute({"message": USER_TEXT, "language": "zh"}) == UNAVAILABLE_ZH
    assert "ConnectionError" in caplog.text and "host hooks.example.com" in caplog.text
    assert SECRET not in caplog.text and USER_TEXT not in caplog.text
