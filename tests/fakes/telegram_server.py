"""A local Telegram Bot API: ``/bot<token>/<method>`` and ``/file/bot<token>/<path>``, with the real request and
answer shapes (``{"ok": true, "result": ...}``, ``{"ok": false, "error_code", "description", "parameters"}``).

It records every call, and can be told to answer the next calls of a method with an error: flood control (429 with
``retry_after``), a server error, or a permanent refusal (403 "bot was blocked by the user").
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from werkzeug.wrappers import Request, Response

from .serving import LocalServer


@dataclass(frozen=True, slots=True)
class Call:
    """One Bot API call as the server received it."""

    method: str
    #: JSON body or form fields.
    params: dict[str, Any]
    #: Uploaded files by field name: ``(filename, content type, bytes)``.
    files: dict[str, tuple[str, str, bytes]] = field(default_factory=dict)
    #: ``time.monotonic()`` when it arrived.
    at: float = 0.0
    #: The status it was answered with.
    status: int = 200


class FakeTelegram:
    """The Bot API for one bot token, on a real local port."""

    def __init__(self, token: str) -> None:
        self.token = token
        self._lock = threading.Lock()
        self._calls: list[Call] = []
        self._failures: dict[str, deque[tuple[int, str, float | None]]] = {}
        self._files: dict[str, tuple[str, bytes]] = {}
        self._ids = itertools.count(1000)
        self._webhook: dict[str, Any] = {"url": "", "has_custom_certificate": False, "pending_update_count": 0}
        self._server = LocalServer(self)
        self.url = self._server.url

    def stop(self) -> None:
        self._server.stop()

    # -- what tests set up and read ---------------------------------------------------------------------------------

    def fail(
        self, method: str, status: int, description: str, retry_after: float | None = None, times: int = 1
    ) -> None:
        """Answer the next ``times`` calls of ``method`` with an error."""
        with self._lock:
            queue = self._failures.setdefault(method, deque())
            queue.extend([(status, description, retry_after)] * times)

    def add_file(self, file_id: str, data: bytes, path: str | None = None) -> None:
        """A file ``getFile`` describes and ``/file/bot<token>/<path>`` serves."""
        with self._lock:
            self._files[file_id] = (path or f"voice/{file_id}.oga", data)

    def calls(self, method: str | None = None, ok: bool | None = None) -> list[Call]:
        with self._lock:
            return [
                c
                for c in self._calls
                if (method is None or c.method == method) and (ok is None or (c.status == 200) == ok)
            ]

    def sent_to(self, chat_id: int | str) -> list[Call]:
        """Messages and voice notes Telegram accepted for ``chat_id``."""
        return [
            c
            for c in self.calls(ok=True)
            if c.method in ("sendMessage", "sendVoice") and str(c.params.get("chat_id")) == str(chat_id)
        ]

    def reset(self) -> None:
        with self._lock:
            self._calls.clear()
            self._failures.clear()

    # -- the server -------------------------------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        response = self._answer(request)
        return response(environ, start_response)

    def _answer(self, request: Request) -> Response:
        parts = request.path.strip("/").split("/")
        if len(parts) >= 3 and parts[0] == "file" and parts[1] == f"bot{self.token}":
            return self._file("/".join(parts[2:]))
        if len(parts) != 2 or not parts[0].startswith("bot"):
            return _error(404, "Not Found")
        if parts[0] != f"bot{self.token}":
            return _error(401, "Unauthorized")
        method = parts[1]
        params, files = _params(request)
        with self._lock:
            failures = self._failures.get(method)
            failure = failures.popleft() if failures else None
        status = failure[0] if failure else 200
        with self._lock:
            self._calls.append(Call(method, params, files, time.monotonic(), status))
        if failure is not None:
            status, description, retry_after = failure
            extra = {"parameters": {"retry_after": retry_after}} if retry_after is not None else {}
            return _error(status, description, extra)
        handler = getattr(self, f"_{method}", None)
        if handler is None:
            return _error(404, "Not Found: method not found")
        result = handler(params, files)
        if isinstance(result, Response):
            return result
        return _json(200, {"ok": True, "result": result})

    def _sendMessage(self, params: dict[str, Any], _files: Any) -> Any:  # the Bot API's method names
        text = params.get("text")
        if not isinstance(text, str) or not text:
            return _error(400, "Bad Request: message text is empty")
        if len(text.encode("utf-16-le")) // 2 > 4096:
            return _error(400, "Bad Request: message is too long")
        return self._message(params, text=text)

    def _sendVoice(self, params: dict[str, Any], files: dict[str, Any]) -> Any:
        if "voice" not in files:
            return _error(400, "Bad Request: there is no voice in the request")
        return self._message(params, voice={"file_id": f"sent-{next(self._ids)}", "duration": params.get("duration")})

    def _getFile(self, params: dict[str, Any], _files: Any) -> Any:
        file_id = params.get("file_id")
        with self._lock:
            known = self._files.get(str(file_id))
        if known is None:
            return _error(400, "Bad Request: invalid file_id")
        return {"file_id": file_id, "file_unique_id": f"u{file_id}", "file_size": len(known[1]), "file_path": known[0]}

    def _setWebhook(self, params: dict[str, Any], _files: Any) -> Any:
        with self._lock:
            self._webhook = {**self._webhook, "url": params.get("url", ""),
                             "allowed_updates": params.get("allowed_updates")}  # fmt: skip
        return True

    def _deleteWebhook(self, _params: dict[str, Any], _files: Any) -> Any:
        with self._lock:
            self._webhook = {**self._webhook, "url": ""}
        return True

    def _getWebhookInfo(self, _params: dict[str, Any], _files: Any) -> Any:
        with self._lock:
            return dict(self._webhook)

    def _message(self, params: dict[str, Any], **content: Any) -> dict[str, Any]:
        chat_id = params.get("chat_id")
        return {"message_id": next(self._ids), "date": int(time.time()), "chat": {"id": chat_id}, **content}

    def _file(self, path: str) -> Response:
        with self._lock:
            found = [data for file_path, data in self._files.values() if file_path == path]
        if not found:
            return Response("Not Found", status=404)
        return Response(found[0], status=200, content_type="application/octet-stream")


def _params(request: Request) -> tuple[dict[str, Any], dict[str, tuple[str, str, bytes]]]:
    if request.mimetype == "application/json":
        body = request.get_json(silent=True)
        return (body if isinstance(body, dict) else {}), {}
    params: dict[str, Any] = {}
    for key, value in request.form.items():
        try:
            params[key] = json.loads(value) if value[:1] in "[{" else value
        except ValueError:
            params[key] = value
    files = {name: (f.filename or "", f.mimetype, f.read()) for name, f in request.files.items()}
    return params, files


def _json(status: int, body: dict[str, Any]) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json")


def _error(status: int, description: str, extra: dict[str, Any] | None = None) -> Response:
    return _json(status, {"ok": False, "error_code": status, "description": description, **(extra or {})})
