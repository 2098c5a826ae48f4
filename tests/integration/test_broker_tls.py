"""A managed Redis over TLS (``rediss://``) as the broker: the pipeline's transport, the certificate verified."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from kombu.exceptions import OperationalError

from pipeline.settings import Settings
from pipeline.stages import TASK_NAMES, Stage
from tasks.celery_app import create_celery_app

pytestmark = [
    pytest.mark.servers,
    pytest.mark.skipif(
        shutil.which("redis-server") is None or shutil.which("openssl") is None,
        reason="needs redis-server (built with TLS) and openssl",
    ),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """This module's own Redis, TLS only, with a certificate for 127.0.0.1 from a CA made here; its URL and CA."""
    certs = tmp_path_factory.mktemp("tls")
    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-subj",
        "/CN=test-ca",
        "-days",
        "1",
        cwd=certs,
    )
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
        "-addext",
        "subjectAltName=IP:127.0.0.1",
        cwd=certs,
    )
    openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "1",
        "-copy_extensions",
        "copy",
        cwd=certs,
    )
    port = free_port()
    server = subprocess.Popen(
        [
            "redis-server",
            "--port",
            "0",
            "--tls-port",
            str(port),
            "--tls-cert-file",
            "server.crt",
            "--tls-key-file",
            "server.key",
            "--tls-ca-cert-file",
            "ca.crt",
            "--tls-auth-clients",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        cwd=certs,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"rediss://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url, ssl_ca_certs=str(certs / "ca.crt"))
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if server.poll() is not None or time.monotonic() > deadline:
                    output = server.stdout.read().decode() if server.stdout else ""
                    pytest.skip(f"redis-server did not serve TLS: {output[-500:]}")
                time.sleep(0.1)
        yield url, certs / "ca.crt"
    finally:
        client.close()
        server.terminate()
        server.wait(10)


def settings_for(url: str) -> Settings:
    return Settings.from_env({"BROKER_URL": url, "REDIS_URL": url, "JWT_SECRET": uuid.uuid4().hex * 2})


def test_a_rediss_broker_gets_the_pipeline_transport_over_verified_tls(
    tls_redis: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, ca = tls_redis
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))  # the operator's private CA, as deploy/README.md says
    app = create_celery_app(settings_for(url), lambda app: pytest.fail("nothing runs a task here"))
    try:
        with app.connection_for_write() as connection:
            # Lease renewals need the pipeline's transport: a stock one would hand long tasks to a second worker.
            assert connection.transport_cls == "tasks.broker:PipelineTransport"
        app.send_task(TASK_NAMES[Stage.DISPATCH], args=[{}])
    finally:
        app.close()
    client = redis.Redis.from_url(url, ssl_ca_certs=str(ca))
    try:
        assert client.llen(str(Stage.DISPATCH)) == 1
    finally:
        client.delete(str(Stage.DISPATCH))
        client.close()


def test_a_server_whose_certificate_is_not_trusted_is_refused(
    tls_redis: tuple[str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url, _ = tls_redis
    # A CA file that does not hold the server's CA: kombu alone would connect anyway (CERT_NONE).
    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "other.key",
        "-out",
        "other.crt",
        "-subj",
        "/CN=other-ca",
        "-days",
        "1",
        cwd=tmp_path,
    )
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "other.crt"))
    # Another database: kombu keeps connections in a process-wide pool per URL, and the first test's is verified.
    other = url.replace("/0", "/1")
    app = create_celery_app(settings_for(other), lambda app: pytest.fail("nothing runs a task here"))
    try:
        with pytest.raises(OperationalError):
            app.send_task(TASK_NAMES[Stage.DISPATCH], args=[{}])
    finally:
        app.close()
