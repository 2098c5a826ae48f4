"""A local TensorFlow Serving REST server: ``POST /v1/models/<name>[/versions/<n>]:predict`` in row format.

It answers as TensorFlow Serving does: ``{"predictions": [...]}``, one item per instance, an object of named outputs
when the model has several and the bare value when it has one; errors are ``{"error": "<message>"}`` with a 4xx or
5xx status (404 for an unknown model, 400 for a body it cannot read). The model has one string input; its reply is
set on the fake. Requests are recorded.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from werkzeug.wrappers import Request, Response

from .serving import LocalServer, ModelServerFake

#: How ``predictions`` look: ``named`` (objects with the output and a score), ``single`` (the bare string),
#: ``tokens`` (a list of token strings), ``bytes`` (``{"b64": ...}`` under ``<output_key>_bytes``).
OUTPUT_SHAPES = ("named", "single", "tokens", "bytes")


@dataclass(frozen=True, slots=True)
class RecordedPredict:
    """One request the fake got."""

    #: Request path (``/v1/models/assistant:predict``).
    path: str
    #: The JSON body (None when it was not JSON).
    body: Any


@dataclass
class FakeTFServing(ModelServerFake):
    """The fake server; ``with FakeTFServing() as fake:`` and point a backend at ``fake.url``."""

    #: The model name it serves.
    model: str = "assistant"
    #: The model's input name; an instance object must carry it (a bare string instance is accepted too, as
    #: TensorFlow Serving accepts for a model with one input).
    input_key: str = "inputs"
    #: The name of the reply output.
    output_key: str = "outputs"
    #: The reply, one piece per token for the ``tokens`` shape.
    tokens: Sequence[str] = ("你好", "，", "world")
    #: One of ``OUTPUT_SHAPES``.
    shape: str = "named"
    #: Answer the prompt followed by the reply, as a model exported from a generate loop does.
    echo_prompt: bool = False
    #: Signatures the model has.
    signatures: Sequence[str] = ("serving_default",)
    #: Answer this status with ``{"error": ...}`` instead of predictions.
    fail_status: int | None = None
    #: Seconds to wait before answering (ended early by ``stop``).
    hang: float = 0.0
    #: Answer this body verbatim (status 200) instead of predictions.
    raw_answer: bytes | None = None
    #: Requests received, in order.
    requests: list[RecordedPredict] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._server: LocalServer | None = None

    @Request.application  # type: ignore[arg-type]
    def _app(self, request: Request) -> Response:
        try:
            body = json.loads(request.get_data())
        except ValueError:
            body = None
        with self._lock:
            self.requests.append(RecordedPredict(request.path, body))
        if self.hang:
            self._released.wait(self.hang)
        name, _, verb = request.path.removeprefix("/v1/models/").partition(":")
        name = name.split("/versions/")[0]
        if request.method != "POST" or not request.path.startswith("/v1/models/") or verb != "predict":
            return _error(404, "Malformed request: POST " + request.path)
        if name != self.model:
            return _error(404, f"Servable not found for request: Latest({name})")
        if self.fail_status is not None:
            return _error(self.fail_status, "Resources exhausted: the model server is overloaded")
        if self.raw_answer is not None:
            return Response(self.raw_answer, status=200, content_type="application/json")
        if not isinstance(body, dict) or not isinstance(body.get("instances"), list):
            return _error(400, "JSON Value: missing 'instances': Excepting 'instances' to be an list/array")
        signature = body.get("signature_name", "serving_default")
        if signature not in self.signatures:
            return _error(400, f'Serving signature name: "{signature}" not found in signature def')
        predictions = []
        for index, instance in enumerate(body["instances"]):
            prompt = instance.get(self.input_key) if isinstance(instance, dict) else instance
            if not isinstance(prompt, str):
                return _error(
                    400,
                    f"Failed to process element: {index} key: {self.input_key} of 'instances' list. "
                    f"Error: Invalid argument: JSON object: does not have named input: {self.input_key}",
                )
            predictions.append(self._prediction(prompt))
        return Response(json.dumps({"predictions": predictions}, ensure_ascii=False), content_type="application/json")

    def _prediction(self, prompt: str) -> Any:
        text = (prompt if self.echo_prompt else "") + "".join(self.tokens)
        if self.shape == "single":
            return text
        if self.shape == "tokens":
            return ([prompt] if self.echo_prompt else []) + list(self.tokens)
        if self.shape == "bytes":
            return {f"{self.output_key}_bytes": {"b64": base64.b64encode(text.encode()).decode()}, "length": len(text)}
        return {self.output_key: text, "scores": 0.5}


def _error(status: int, message: str) -> Response:
    return Response(json.dumps({"error": message}), status=status, content_type="application/json")
