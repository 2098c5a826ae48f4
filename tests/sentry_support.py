"""A local server that receives Sentry's envelopes as sentry.io would, for the tests of error reports."""

from __future__ import annotations

import gzip
import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True, slots=True)
class Envelope:
    """One envelope as Sentry's server receives it: the raw (decompressed) bytes and its items."""

    raw: bytes
    #: (item header, payload) pairs.
    items: list[tuple[dict[str, Any], bytes]]

    def payloads(self, kind: str) -> list[dict[str, Any]]:
        return [json.loads(payload) for header, payload in self.items if header.get("type") == kind]


def parse_envelope(raw: bytes) -> Envelope:
    """Sentry's envelope format: a header line, then per item a header line and a payload of ``length`` bytes (or
    up to the next newline when the header gives no length)."""
    _header, _, rest = raw.partition(b"\n")
    items: list[tuple[dict[str, Any], bytes]] = []
    while rest.strip():
        line, _, rest = rest.partition(b"\n")
        if not line.strip():
            continue
        header = json.loads(line)
        length = header.get("length")
        if length is None:
            payload, _, rest = rest.partition(b"\n")
        else:
            payload, rest = rest[:length], rest[length:].removeprefix(b"\n")
        items.append((header, payload))
    return Envelope(raw, items)


class SentryServer:
    """Accepts ``POST /api/<project>/envelope/`` as Sentry does, keeping every envelope it was sent."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []
        self.paths: list[str] = []
        lock = threading.Lock()
        received = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                encoding = (self.headers.get("Content-Encoding") or "").lower()
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding:
                    self.send_response(415)
                    self.end_headers()
                    return
                with lock:
                    received.paths.append(self.path)
                    received.envelopes.append(parse_envelope(body))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    @property
    def dsn(self) -> str:
        return f"http://public@127.0.0.1:{self.port}/1"

    def payloads(self, kind: str) -> list[dict[str, Any]]:
        return [payload for envelope in list(self.envelopes) for payload in envelope.payloads(kind)]

    def raw(self) -> bytes:
        return b"\n".join(envelope.raw for envelope in list(self.envelopes))

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
