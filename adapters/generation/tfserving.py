"""Replies from a model on TensorFlow Serving's REST predict API (the port 8501 server)."""

from __future__ import annotations

import base64
import binascii
import json
import logging
import time
from typing import Any
from urllib.parse import quote

import requests

from adapters.generation.httpbody import PooledHttp, body_chunks, host_of
from adapters.generation.prompt import prompt_text
from pipeline.generation import DeltaListener, GenerationRequest, ModelUnavailable
from pipeline.model_config import ModelConfig

logger = logging.getLogger(__name__)


class TFServing(PooledHttp):
    """``POST {endpoint}/v1/models/{name}:predict`` with one instance in row format; no streaming.

    The instance is ``{MODEL_INPUT_KEY: prompt}``, the prompt being the whole conversation as one string
    (``MODEL_PROMPT_FORMAT``, see ``prompt.prompt_text``); with ``MODEL_INPUT_KEY`` empty it is the bare string, for a
    model with a single input. ``MODEL_SIGNATURE`` adds ``signature_name``. The reply is read from
    ``predictions[0]``: under ``MODEL_OUTPUT_KEY`` when the model has several outputs (an object per instance),
    as is when it has one (TensorFlow Serving then leaves the name out). It may be a string, a ``{"b64": ...}``
    string (outputs named ``*_bytes``), or a list of strings (token pieces or a ``[1]``-shaped string tensor),
    joined as they are; a reply that repeats the prompt first has it cut off. ``MODEL_NAME`` may carry a version,
    ``assistant/versions/2``.
    """

    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        self.url = f"{config.endpoint.rstrip('/')}/v1/models/{quote(config.name, safe='/')}:predict"
        self.host = host_of(self.url)
        super().__init__()

    def warm_up(self) -> None:
        """Nothing to load: the connection opens with the first reply."""

    def generate(self, request: GenerationRequest, on_delta: DeltaListener | None = None) -> str:
        started = time.monotonic()
        deadline = started + request.timeout_seconds
        prompt = prompt_text(request, self.config)
        body: dict[str, Any] = {"instances": [{self.config.input_key: prompt} if self.config.input_key else prompt]}
        if self.config.signature_name:
            body["signature_name"] = self.config.signature_name
        remaining = request.timeout_seconds
        try:
            response = self._http().post(self.url, json=body, stream=True, timeout=(remaining, remaining))
        except requests.Timeout as exc:
            raise self._unavailable("timed out") from exc
        except requests.RequestException as exc:
            raise self._unavailable(type(exc).__name__) from exc
        try:
            raw = b"".join(body_chunks(response, deadline, self._unavailable))
            status = response.status_code
        finally:
            response.close()
        # The error text is not passed on: TensorFlow Serving's messages may quote the instance, the user's text.
        if not 200 <= status < 300:
            raise self._unavailable(f"HTTP {status}")
        try:
            answer = json.loads(raw)
        except ValueError as exc:
            raise self._unavailable("answer is not JSON") from exc
        if not isinstance(answer, dict) or "error" in answer:
            raise self._unavailable("error answer" if isinstance(answer, dict) else "answer is not a JSON object")
        text = self._reply(answer, prompt).strip()
        if not text:
            raise self._unavailable("empty answer")
        logger.debug("tfserving reply: %d characters in %.0f ms", len(text), (time.monotonic() - started) * 1000)
        if on_delta is not None:
            on_delta(text)
        return text

    def _reply(self, answer: dict[str, Any], prompt: str) -> str:
        predictions = answer.get("predictions")
        if not isinstance(predictions, list) or not predictions:
            raise self._unavailable("answer has no predictions")
        first = predictions[0]
        if isinstance(first, dict) and "b64" not in first:
            if self.config.output_key not in first:
                raise self._unavailable(f"prediction has no output {self.config.output_key!r}")
            first = first[self.config.output_key]
        text = _as_text(first)
        if text is None:
            raise self._unavailable("prediction is not text")
        # Models exported from a generate() loop often answer the prompt followed by its continuation.
        return text[len(prompt) :] if text.startswith(prompt) else text

    def _unavailable(self, failure: str) -> ModelUnavailable:
        return ModelUnavailable(f"tfserving {self.host}: {failure}")


def _as_text(value: Any) -> str | None:
    """A string tensor's value as text: a string, a ``{"b64": ...}`` object, or (nested) lists of them joined."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("b64"), str):
        try:
            return base64.b64decode(value["b64"], validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
    if isinstance(value, list):
        parts = [_as_text(item) for item in value]
        return None if any(part is None for part in parts) else "".join(part for part in parts if part is not None)
    return None
