"""A local OpenAI-compatible chat-completions server with the published request and streaming answer shapes.

``POST /v1/chat/completions`` answers ``text/event-stream``: a first chunk with the assistant role, one
``chat.completion.chunk`` per token (``choices[0].delta.content``), a last chunk with ``finish_reason: "stop"``, then
``data: [DONE]``. Errors are OpenAI's ``{"error": {"message", "type", "param", "code"}}``. Settable between calls:
the tokens, the pace between them, a status to fail with, a hang before answering, a stall or a closed connection
part-way, a malformed chunk, a non-streaming answer, a required API key. Every request is recorded, and so is the
moment each token was handed to the socket (``time.monotonic()`` and ``time.time()``), for latency benchmarks.
"""

from __future__ import annotations

import itertools
import json
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from werkzeug.wrappers import Request, Response

from .serving import LocalServer, ModelServerFake

#: What the fake answers unless told otherwise: "你好，world" in three deltas.
DEFAULT_TOKENS = ("你好", "，", "world")


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request the fake got."""

    #: Request path (``/v1/chat/completions``).
    path: str
    #: Headers, as sent.
    headers: dict[str, str]
    #: The JSON body (None when it was not JSON).
    body: Any


@dataclass(frozen=True, slots=True)
class SentToken:
    """One token the fake wrote to the stream."""

    #: Which request (index into ``requests``) it answered.
    request: int
    #: Position of the token in that reply.
    index: int
    text: str
    #: ``time.monotonic()`` and ``time.time()`` just before the chunk was written.
    monotonic: float
    wall: float


@dataclass
class FakeOpenAI(ModelServerFake):
    """The fake server; start with ``with FakeOpenAI() as fake:`` and point a backend at ``fake.endpoint``."""

    #: The reply, one streamed chunk per item.
    tokens: Sequence[str] = DEFAULT_TOKENS
    #: Seconds between tokens (and before the first).
    pace: float = 0.0
    #: Answer this status (429, 500, 503, ...) with OpenAI's error JSON instead of a reply.
    fail_status: int | None = None
    #: Seconds to wait before answering at all (ended early by ``close``).
    hang: float = 0.0
    #: After this many tokens, go silent for ``stall_seconds`` (ended early by ``close``).
    stall_after: int | None = None
    stall_seconds: float = 60.0
    #: After this many tokens, shut the connection down without finishing the stream.
    close_after: int | None = None
    #: Send a chunk that is not JSON after the first token.
    malformed: bool = False
    #: Send ``data: {"error": {...}}`` after the first token, as servers do when generation fails part-way.
    error_in_stream: bool = False
    #: Line ending of the event stream (``"\r\n"`` is allowed by the SSE format).
    newline: str = "\n"
    #: Send a ``: keep-alive`` comment line before each token.
    keepalive: bool = False
    #: False: ignore ``stream`` and answer one ``chat.completion`` JSON object.
    stream: bool = True
    #: End without ``data: [DONE]`` (the finish chunk is still sent unless ``close_after`` cuts it).
    send_done: bool = True
    #: When set, requests without ``Authorization: Bearer <api_key>`` get 401.
    api_key: str | None = None
    #: Requests received, in order.
    requests: list[RecordedRequest] = field(default_factory=list)
    #: Tokens written, in order.
    sent: list[SentToken] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._ids = itertools.count(1)
        self._server: LocalServer | None = None

    @property
    def endpoint(self) -> str:
        """What ``MODEL_ENDPOINT`` is set to: the base URL with ``/v1``."""
        return f"{self.url}/v1"

    @Request.application  # type: ignore[arg-type]
    def _app(self, request: Request) -> Response:
        try:
            body = json.loads(request.get_data())
        except ValueError:
            body = None
        with self._lock:
            number = len(self.requests)
            self.requests.append(RecordedRequest(request.path, dict(request.headers), body))
        if self.hang:
            self._released.wait(self.hang)
        if request.method != "POST" or request.path != "/v1/chat/completions":
            return _error(404, "not found", "invalid_request_error")
        if self.api_key is not None and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return _error(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
        if self.fail_status is not None:
            return _error(self.fail_status, "The server is overloaded or not ready yet.", "server_error")
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return _error(400, "'messages' is a required property", "invalid_request_error")
        model = str(body.get("model", "fake-model"))
        completion_id = f"chatcmpl-{next(self._ids)}"
        if not (self.stream and body.get("stream")):
            return self._completion(completion_id, model, number)
        stream = self._chunks(completion_id, model, number, request.environ.get("werkzeug.socket"))
        response = Response(stream, status=200, content_type="text/event-stream; charset=utf-8")
        response.headers["Cache-Control"] = "no-cache"
        return response

    def _chunks(self, completion_id: str, model: str, number: int, sock: socket.socket | None) -> Iterator[bytes]:
        created = int(time.time())

        def chunk(delta: dict[str, str], finish_reason: str | None = None) -> bytes:
            data = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_fake",
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
            }
            return event("data: " + json.dumps(data, ensure_ascii=False))

        def event(line: str) -> bytes:
            return (line + self.newline * 2).encode()

        yield chunk({"role": "assistant", "content": ""})
        for index, token in enumerate(self.tokens):
            if index == self.stall_after:
                self._released.wait(self.stall_seconds)
            if index == self.close_after and sock is not None:
                sock.shutdown(socket.SHUT_RDWR)
                return
            if self.pace:
                time.sleep(self.pace)
            if self.keepalive:
                yield (": keep-alive" + self.newline).encode()
            with self._lock:
                self.sent.append(SentToken(number, index, token, time.monotonic(), time.time()))
            yield chunk({"content": token})
            if index == 0 and self.malformed:
                yield event('data: {"id": "chatcmpl-broken", "choices": [')
            if index == 0 and self.error_in_stream:
                yield event('data: {"error": {"message": "CUDA out of memory", "type": "server_error"}}')
        if self.close_after is not None and self.close_after >= len(self.tokens) and sock is not None:
            sock.shutdown(socket.SHUT_RDWR)
            return
        yield chunk({}, "stop")
        if self.send_done:
            yield event("data: [DONE]")

    def _completion(self, completion_id: str, model: str, number: int) -> Response:
        text = "".join(self.tokens)
        with self._lock:
            now = (time.monotonic(), time.time())
            self.sent.extend(SentToken(number, i, t, *now) for i, t in enumerate(self.tokens))
        data = {
            "id": completion_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 10, "completion_tokens": len(text), "total_tokens": 10 + len(text)},
        }
        return Response(json.dumps(data, ensure_ascii=False), status=200, content_type="application/json")


def _error(status: int, message: str, kind: str, code: str | None = None) -> Response:
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return Response(json.dumps(body), status=status, content_type="application/json")
