"""The embedded HTTP server keeps answering while many event streams are open: its thread pool grows with them."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import requests

from assistant.embedded import HTTP_THREADS_MIN, http_server

#: More open streams than the pool has threads at start.
STREAMS = HTTP_THREADS_MIN * 3


def streaming_app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
    """``/stream`` sends a line, then holds the connection as an event stream does; anything else answers at once."""
    if environ["PATH_INFO"] != "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return iter([b"ok"])
    start_response("200 OK", [("Content-Type", "text/event-stream")])

    def events() -> Iterator[bytes]:
        yield b": open\n\n"
        for _ in range(60):
            time.sleep(0.5)
            yield b": keep-alive\n\n"

    return events()


def first_bytes(sock: socket.socket) -> bytes:
    """What arrives on ``sock`` until the stream's first event (the headers may come in a packet of their own)."""
    received = b""
    while b": open" not in received:
        chunk = sock.recv(4096)
        if not chunk:
            break
        received += chunk
    return received


def test_many_open_streams_leave_the_server_answering() -> None:
    server = http_server(streaming_app, "127.0.0.1", 0)
    server.prepare()
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    port = server.bind_addr[1]
    streams: list[socket.socket] = []
    try:
        for _ in range(STREAMS):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(b"GET /stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            streams.append(sock)
            assert b": open" in first_bytes(sock)  # each stream is served, the last ones too
        started = time.monotonic()
        response = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        assert response.status_code == 200 and response.text == "ok"
        assert time.monotonic() - started < 2.0
    finally:
        for sock in streams:
            sock.close()
        server.stop()
        thread.join(5)
