"""A WSGI app on a real local port, in a thread, for the fake servers (the same way ``conftest.serve_wsgi`` does)."""

from __future__ import annotations

import threading
from typing import Any, Self

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server


class _QuietHandler(WSGIRequestHandler):
    """No access-log line per request (benchmarks make thousands); errors are still logged."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class LocalServer:
    """``app`` served on 127.0.0.1 (a free port unless given) until ``stop``."""

    def __init__(self, app: Any, port: int = 0) -> None:
        self._server: BaseWSGIServer = make_server("127.0.0.1", port, app, threaded=True, request_handler=_QuietHandler)
        self.port = self._server.port
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


class ModelServerFake:
    """Start, stop and ``with`` for the fake model servers: ``self._app`` served on a local port; a test's hangs and
    stalls wait on ``self._released``, which ``stop`` sets so that no request outlives the server."""

    _app: Any
    _released: threading.Event
    _server: LocalServer | None

    @property
    def url(self) -> str:
        """Base URL of the server (``http://127.0.0.1:<port>``)."""
        if self._server is None:
            raise RuntimeError(f"the {type(self).__name__} server is not started")
        return self._server.url

    def start(self, port: int = 0) -> Self:
        self._released.clear()
        self._server = LocalServer(self._app, port)
        return self

    def stop(self) -> None:
        """Release every hang and stall, then stop serving."""
        self._released.set()
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
