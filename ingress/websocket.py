"""WebSocket connections inside Flask views, on gunicorn's gevent worker and on the embedded cheroot server.

A view calls ``accept`` (simple_websocket answers the upgrade on the request's own socket), talks over the
connection, and returns ``taken_over()``: the server then writes no HTTP response and closes the connection.
gunicorn puts the socket in the environ itself (``gunicorn.socket``) and stops on ``StopIteration``; cheroot does
neither, so the embedded server runs ``WebSocketGateway``, which does both.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable
from contextlib import suppress
from typing import Any
from urllib.parse import parse_qsl, urlencode

from cheroot.wsgi import Gateway_10
from flask import Response
from simple_websocket import Server

#: The environ key simple_websocket looks for the connection's socket under first (werkzeug's name).
SOCKET_KEY = "werkzeug.socket"
#: gunicorn's environ key for the connection's socket.
GUNICORN_SOCKET_KEY = "gunicorn.socket"
#: Set in the environ once a view answered the upgrade: the connection belongs to the WebSocket now.
TAKEN_OVER_KEY = "assistant.websocket"
#: Set in the environ by ``WebSocketGateway``: the server that handles taken-over connections itself.
GATEWAY_KEY = "assistant.websocket_gateway"
#: The query parameter a browser, which cannot set headers on a WebSocket, may carry its token in (RFC 6750).
QUERY_TOKEN = "access_token"

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def accept(environ: dict[str, Any], ping_interval: float | None = 25.0, max_message_size: int | None = None) -> Server:
    """Answer the upgrade on the request's socket; the connection is the WebSocket's from here on.

    ``ping_interval`` seconds of quiet bring a ping; a client that does not answer it is dropped.
    """
    raw = environ.get(SOCKET_KEY)
    for sock in (raw, environ.get(GUNICORN_SOCKET_KEY)):
        if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
            # Small frames in real time: no waiting to fill a segment (Nagle), which holds frames up to 40 ms.
            with suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if isinstance(raw, socket.socket):
        # A descriptor of its own: simple_websocket closes its socket when the connection ends, and cheroot
        # shuts its own down when the view returns; each must find the one it closes still open.
        own = raw.dup()
        # cheroot gives accepted sockets its request timeout: an idle WebSocket must not time out with it.
        own.settimeout(None)
        environ[SOCKET_KEY] = own
    ws = Server(environ, ping_interval=ping_interval, max_message_size=max_message_size)
    environ[TAKEN_OVER_KEY] = True
    return ws


class _TakenOver(Response):
    """What a view returns after ``accept``: the server must send nothing more on the connection."""

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if GUNICORN_SOCKET_KEY in environ:
            # gunicorn's async workers treat StopIteration from the app as "close the connection", and write
            # neither a response nor an access-log line.
            raise StopIteration
        if environ.get(GATEWAY_KEY):
            return []  # WebSocketGateway sees TAKEN_OVER_KEY and writes nothing
        # werkzeug's development server (tests) takes a ConnectionError for a client that went away.
        raise ConnectionError("the connection was a WebSocket and is closed")


def taken_over() -> Response:
    """The response of a view whose request became a WebSocket (after it closed)."""
    return _TakenOver()


class WebSocketGateway(Gateway_10):
    """cheroot's WSGI gateway, plus the connection's socket in the environ; a taken-over connection gets no
    HTTP response and is closed."""

    def get_environ(self) -> dict[str, Any]:  # type: ignore[override]  # cheroot's stubs say None
        environ: dict[str, Any] = super().get_environ()
        environ[SOCKET_KEY] = self.req.conn.socket
        environ[GATEWAY_KEY] = True
        return environ

    def respond(self) -> None:
        response = self.req.server.wsgi_app(self.env, self.start_response)
        if self.env.get(TAKEN_OVER_KEY):
            close = getattr(response, "close", None)
            if close is not None:
                close()
            self.req.sent_headers = True  # so cheroot writes no headers of its own
            self.req.close_connection = True
            return
        try:
            for chunk in filter(None, response):
                if not isinstance(chunk, bytes):
                    raise ValueError("WSGI applications must yield bytes")
                self.write(chunk)
        finally:
            self.req.ensure_headers_sent()
            close = getattr(response, "close", None)
            if close is not None:
                close()


def query_token_to_header(app: WsgiApp, paths: frozenset[str]) -> WsgiApp:
    """Wrap ``app`` so that on ``paths`` a ``?access_token=`` becomes the ``Authorization`` header.

    The token leaves the query string before anything reads it, so no access log (gunicorn's ``%(r)s`` and
    ``%(q)s`` read this environ after the request) and no error message ever shows it. A header sent as well wins.
    """

    def middleware(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        query = environ.get("QUERY_STRING", "")
        if environ.get("PATH_INFO") in paths and QUERY_TOKEN in query:
            pairs = parse_qsl(query, keep_blank_values=True)
            token = next((value for name, value in pairs if name == QUERY_TOKEN), "")
            kept = urlencode([(name, value) for name, value in pairs if name != QUERY_TOKEN])
            environ["QUERY_STRING"] = kept
            for key in ("RAW_URI", "REQUEST_URI"):
                if key in environ:
                    path = environ[key].partition("?")[0]
                    environ[key] = f"{path}?{kept}" if kept else path
            if token and not environ.get("HTTP_AUTHORIZATION"):
                environ["HTTP_AUTHORIZATION"] = f"Bearer {token}"
        return app(environ, start_response)

    return middleware
