"""Replies from an OpenAI-compatible chat-completions server (Ollama, vLLM, llama.cpp's server), streamed."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import requests

from adapters.generation.httpbody import PooledHttp, body_chunks, host_of
from adapters.generation.prompt import chat_messages
from pipeline.generation import DeltaListener, GenerationRequest, ModelUnavailable
from pipeline.model_config import ModelConfig

logger = logging.getLogger(__name__)

#: How long the end of a finished stream is waited for, so the connection can go back to the pool.
DRAIN_SECONDS = 0.05


class OpenAIChat(PooledHttp):
    """``POST {endpoint}/chat/completions`` with ``stream: true``; each content delta goes to ``on_delta``.

    The whole call, connecting included, has ``request.timeout_seconds``: every socket read waits at most what is
    left of it, so neither a silent server nor one trickling bytes forever holds a worker longer. A server that
    ignores ``stream`` and answers one JSON completion is accepted too (one delta, the whole text).
    """

    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        self.url = config.endpoint.rstrip("/") + "/chat/completions"
        self.host = host_of(self.url)
        super().__init__()

    def warm_up(self) -> None:
        """Nothing to load: the connection opens with the first reply."""

    def generate(self, request: GenerationRequest, on_delta: DeltaListener | None = None) -> str:
        """The reply; ``on_delta`` gets each content delta as it arrives. Exceptions ``on_delta`` raises stop the
        reply and propagate."""
        started = time.monotonic()
        deadline = started + request.timeout_seconds
        body = self._body(request)
        headers = {"Accept": "text/event-stream, application/json", "Accept-Encoding": "identity"}
        if self.config.api_key:
            headers["Authorization"] = f"Bearer {self.config.api_key}"
        remaining = request.timeout_seconds
        try:
            response = self._http().post(
                self.url, json=body, headers=headers, stream=True, timeout=(remaining, remaining)
            )
        except requests.Timeout as exc:
            raise self._unavailable("timed out") from exc
        except requests.RequestException as exc:
            raise self._unavailable(type(exc).__name__) from exc
        try:
            if not 200 <= response.status_code < 300:
                raise self._unavailable(f"HTTP {response.status_code}")
            content_type = response.headers.get("Content-Type", "")
            if "text/event-stream" in content_type:
                text = self._read_stream(response, deadline, on_delta)
            else:
                text = self._read_completion(response, deadline, on_delta)
        finally:
            response.close()
        if not text.strip():
            raise self._unavailable("empty answer")
        logger.debug("openai reply: %d characters in %.0f ms", len(text), (time.monotonic() - started) * 1000)
        return text

    def _body(self, request: GenerationRequest) -> dict[str, Any]:
        body: dict[str, Any] = {"messages": chat_messages(request, self.config), "stream": True}
        if self.config.name:
            body["model"] = self.config.name
        body["max_tokens"] = int(request.options.get("max_tokens", self.config.max_tokens))
        temperature = request.options.get("temperature", self.config.temperature)
        if temperature is not None:
            body["temperature"] = float(temperature)
        return body

    def _read_stream(self, response: requests.Response, deadline: float, on_delta: DeltaListener | None) -> str:
        """Server-sent events: ``data: {chunk}`` events until ``data: [DONE]``."""
        pieces: list[str] = []
        buffer = b""
        event: list[bytes] = []
        finished = False
        for data in body_chunks(response, deadline, self._unavailable):
            buffer += data
            *lines, buffer = buffer.split(b"\n")
            for raw_line in lines:
                line = raw_line.rstrip(b"\r")
                if line.startswith(b"data:"):
                    event.append(line[5:].removeprefix(b" "))
                elif not line and event:
                    payload, event = b"\n".join(event), []
                    if payload.strip() == b"[DONE]":
                        self._drain(response, deadline)
                        return "".join(pieces)
                    finished |= self._take_chunk(payload, pieces, on_delta)
                # Comments (": keep-alive"), "event:", "id:" and "retry:" lines carry no text.
        # The body ended: a last line without its newline, and a last event without its blank line, still count.
        last = buffer.rstrip(b"\r")
        if last.startswith(b"data:"):
            event.append(last[5:].removeprefix(b" "))
        payload = b"\n".join(event)
        if payload.strip() == b"[DONE]":
            return "".join(pieces)
        if payload:
            finished |= self._take_chunk(payload, pieces, on_delta)
        # Some servers close after the chunk with the finish reason instead of sending [DONE]; a stream cut before
        # the model said it had finished is a failure, not a short reply.
        if not finished:
            raise self._unavailable("stream ended before the reply was complete")
        return "".join(pieces)

    def _take_chunk(self, payload: bytes, pieces: list[str], on_delta: DeltaListener | None) -> bool:
        """Add one chunk's content delta; True when the chunk carries a ``finish_reason``."""
        try:
            chunk = json.loads(payload)
        except ValueError as exc:
            raise self._unavailable("malformed stream chunk") from exc
        if not isinstance(chunk, dict):
            raise self._unavailable("malformed stream chunk")
        if "error" in chunk:
            raise self._unavailable("error in stream")
        choices = chunk.get("choices")
        if not isinstance(choices, list):
            raise self._unavailable("malformed stream chunk")
        if not choices:
            return False  # the usage chunk of stream_options.include_usage
        choice = choices[0]
        delta = choice.get("delta") if isinstance(choice, dict) else None
        if not isinstance(delta, dict):
            raise self._unavailable("malformed stream chunk")
        content = delta.get("content")
        if content is not None and not isinstance(content, str):
            raise self._unavailable("malformed stream chunk")
        if content:
            pieces.append(content)
            if on_delta is not None:
                on_delta(content)
        return bool(choice.get("finish_reason"))

    def _read_completion(self, response: requests.Response, deadline: float, on_delta: DeltaListener | None) -> str:
        """A whole ``chat.completion`` object, from a server that does not stream."""
        body = b"".join(body_chunks(response, deadline, self._unavailable))
        try:
            completion = json.loads(body)
            content = completion["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise self._unavailable("malformed answer") from exc
        if not isinstance(content, str):
            raise self._unavailable("malformed answer")
        if content and on_delta is not None:
            on_delta(content)
        return content

    def _drain(self, response: requests.Response, deadline: float) -> None:
        """Read the stream's end so the connection can be reused; give up quietly if it does not come at once."""
        with_drain = min(deadline, time.monotonic() + DRAIN_SECONDS)
        try:
            for _ in body_chunks(response, with_drain, self._unavailable):
                pass
        except ModelUnavailable:
            pass  # the reply is complete; the connection is just not reused

    def _unavailable(self, failure: str) -> ModelUnavailable:
        return ModelUnavailable(f"openai server {self.host}: {failure}")
