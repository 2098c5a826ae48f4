"""Settings of the inference stage: the generative model backend and the intent classifier."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.errors import ConfigurationError

#: ``MODEL_BACKEND`` values; unset means the fallback reply.
BACKENDS = frozenset({"openai", "tfserving", "onnx"})
#: ``MODEL_PROMPT_FORMAT`` values: how the ``tfserving`` and ``onnx`` backends lay out one prompt string.
PROMPT_FORMATS = frozenset({"chatml", "plain"})
#: ``MODEL_GRAPH_OPTIMIZATION`` values, onnxruntime's graph optimization levels.
GRAPH_OPTIMIZATIONS = frozenset({"disable", "basic", "extended", "all"})
#: Short ``MODEL_PROVIDER`` names and the onnxruntime execution providers they stand for.
PROVIDER_NAMES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "rocm": "ROCMExecutionProvider",
    "migraphx": "MIGraphXExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "directml": "DmlExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
}
#: The system prompt unless ``MODEL_SYSTEM_PROMPT`` says otherwise: short answers, in the user's language.
DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful assistant in a self-hosted chat and voice service. Answer briefly and plainly, "
    "in the language the user writes in. "
    "你是一个自托管的聊天和语音助手。回答要简短、清楚；用户说中文时用中文回答，并使用全角标点（，。？！）。"
)


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """The generative backend that answers what no skill matched (``MODEL_*`` variables)."""

    #: ``openai`` (an OpenAI-compatible chat-completions server), ``tfserving`` (TensorFlow Serving's REST predict
    #: API) or ``onnx`` (a local causal LM on onnxruntime); None: the configured fallback reply.
    backend: str | None = None
    #: Base URL of the model server (``http://localhost:11434/v1``, ``http://tfserving:8501``); for ``onnx`` the
    #: model folder.
    endpoint: str = ""
    #: Model name the server knows (``qwen2.5:0.5b``), or the TensorFlow Serving model name.
    name: str = ""
    #: Seconds a reply may take in all before the user is told the model is unavailable.
    timeout_seconds: float = 30.0
    #: Instructions sent ahead of the conversation (``MODEL_SYSTEM_PROMPT``).
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    #: Earlier turns of the session sent as context (``MODEL_HISTORY_TURNS``); 0 sends the message alone.
    history_turns: int = 6
    #: Most tokens one reply may have (``MODEL_MAX_TOKENS``): ``max_tokens`` for ``openai``, max new tokens for
    #: ``onnx``.
    max_tokens: int = 256
    #: Sampling temperature (``MODEL_TEMPERATURE``). None: the server's default for ``openai``, greedy decoding for
    #: ``onnx``; 0 is greedy everywhere.
    temperature: float | None = None
    #: ``onnx`` sampling keeps the k most likely tokens (``MODEL_TOP_K``); 0 keeps them all.
    top_k: int = 0
    #: Seed of the ``onnx`` sampler (``MODEL_SEED``): each reply starts from it, so replies are reproducible.
    seed: int | None = None
    #: Bearer token for ``openai`` servers that want one (``MODEL_API_KEY``); never logged, never in errors.
    api_key: str = field(default="", repr=False)
    #: ``chatml`` (``<|im_start|>role ... <|im_end|>``) or ``plain`` (``User: ...`` lines): the prompt string
    #: ``tfserving`` and ``onnx`` get (``MODEL_PROMPT_FORMAT``).
    prompt_format: str = "chatml"
    #: ``tfserving``: the input each instance carries the prompt under, ``{"<key>": prompt}``
    #: (``MODEL_INPUT_KEY``); empty sends the bare prompt string as the instance (a model with one input).
    input_key: str = "inputs"
    #: ``tfserving``: the named output holding the reply (``MODEL_OUTPUT_KEY``); a model with one output answers
    #: without names and this is not needed.
    output_key: str = "outputs"
    #: ``tfserving``: the serving signature (``MODEL_SIGNATURE``); empty: the model's ``serving_default``.
    signature_name: str = ""
    #: ``onnx``: threads inside one operator (``MODEL_THREADS``) and across operators (``MODEL_INTER_OP_THREADS``);
    #: 0 lets onnxruntime choose.
    intra_op_threads: int = 0
    inter_op_threads: int = 0
    #: ``onnx``: execution providers in order of preference (``MODEL_PROVIDER``, comma-separated, ``cuda,cpu``);
    #: empty: CUDA where onnxruntime has it, then CPU.
    providers: tuple[str, ...] = ()
    #: ``onnx``: ``disable``, ``basic``, ``extended`` or ``all`` (``MODEL_GRAPH_OPTIMIZATION``).
    graph_optimization: str = "all"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ModelConfig:
        defaults = cls()
        backend = (env.get("MODEL_BACKEND") or "").strip().lower() or None
        if backend is not None and backend not in BACKENDS:
            raise ConfigurationError(f"MODEL_BACKEND must be one of {', '.join(sorted(BACKENDS))}, got {backend!r}")
        temperature = env.get("MODEL_TEMPERATURE", "").strip()
        seed = env.get("MODEL_SEED", "").strip()
        config = cls(
            backend=backend,
            endpoint=env.get("MODEL_ENDPOINT", defaults.endpoint).strip(),
            name=env.get("MODEL_NAME", defaults.name).strip(),
            timeout_seconds=_float(env, "MODEL_TIMEOUT_SECONDS", defaults.timeout_seconds),
            system_prompt=env.get("MODEL_SYSTEM_PROMPT", "").strip() or defaults.system_prompt,
            history_turns=_model_int(env, "MODEL_HISTORY_TURNS", defaults.history_turns),
            max_tokens=_model_int(env, "MODEL_MAX_TOKENS", defaults.max_tokens),
            temperature=_float(env, "MODEL_TEMPERATURE", 0.0) if temperature else None,
            top_k=_model_int(env, "MODEL_TOP_K", defaults.top_k),
            seed=_model_int(env, "MODEL_SEED", 0) if seed else None,
            api_key=env.get("MODEL_API_KEY", "").strip(),
            prompt_format=(env.get("MODEL_PROMPT_FORMAT", "").strip().lower() or defaults.prompt_format),
            input_key=env.get("MODEL_INPUT_KEY", defaults.input_key).strip(),
            output_key=env.get("MODEL_OUTPUT_KEY", defaults.output_key).strip(),
            signature_name=env.get("MODEL_SIGNATURE", defaults.signature_name).strip(),
            intra_op_threads=_model_int(env, "MODEL_THREADS", defaults.intra_op_threads),
            inter_op_threads=_model_int(env, "MODEL_INTER_OP_THREADS", defaults.inter_op_threads),
            providers=_providers(env.get("MODEL_PROVIDER", "")),
            graph_optimization=(env.get("MODEL_GRAPH_OPTIMIZATION", "").strip().lower() or defaults.graph_optimization),
        )
        config.check()
        return config

    def check(self) -> None:
        """Raise ``ConfigurationError`` naming the first setting out of range."""
        if self.backend is not None and self.backend not in BACKENDS:
            raise ConfigurationError(f"MODEL_BACKEND must be one of {', '.join(sorted(BACKENDS))}")
        if self.timeout_seconds <= 0:
            raise ConfigurationError("MODEL_TIMEOUT_SECONDS must be above 0")
        if self.backend is not None and not self.endpoint:
            raise ConfigurationError(f"MODEL_BACKEND={self.backend} needs MODEL_ENDPOINT")
        if self.backend in {"openai", "tfserving"} and not self.endpoint.startswith(("http://", "https://")):
            raise ConfigurationError(f"MODEL_BACKEND={self.backend} needs an http:// or https:// MODEL_ENDPOINT")
        if self.backend == "tfserving" and not self.name:
            raise ConfigurationError("MODEL_BACKEND=tfserving needs MODEL_NAME, the model's name in TensorFlow Serving")
        checks = (
            (self.history_turns >= 0, "MODEL_HISTORY_TURNS must be 0 or more"),
            (self.max_tokens >= 1, "MODEL_MAX_TOKENS must be at least 1"),
            (self.temperature is None or 0 <= self.temperature <= 10, "MODEL_TEMPERATURE must be between 0 and 10"),
            (self.top_k >= 0, "MODEL_TOP_K must be 0 or more"),
            (self.intra_op_threads >= 0, "MODEL_THREADS must be 0 or more"),
            (self.inter_op_threads >= 0, "MODEL_INTER_OP_THREADS must be 0 or more"),
            (
                self.prompt_format in PROMPT_FORMATS,
                f"MODEL_PROMPT_FORMAT must be one of {', '.join(sorted(PROMPT_FORMATS))}",
            ),
            (
                self.graph_optimization in GRAPH_OPTIMIZATIONS,
                f"MODEL_GRAPH_OPTIMIZATION must be one of {', '.join(sorted(GRAPH_OPTIMIZATIONS))}",
            ),
        )
        for ok, message in checks:
            if not ok:
                raise ConfigurationError(message)


def _model_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigurationError(f"{name} must be a whole number, got {raw!r}") from exc


def _providers(raw: str) -> tuple[str, ...]:
    """``cuda, cpu`` → onnxruntime's provider names; full names (``CUDAExecutionProvider``) pass unchanged."""
    names = [part.strip() for part in raw.split(",") if part.strip()]
    return tuple(dict.fromkeys(PROVIDER_NAMES.get(name.lower(), name) for name in names))


@dataclass(frozen=True, slots=True)
class IntentConfig:
    """The intent classifier dispatch consults when no trigger matches (``INTENT_*`` variables)."""

    #: Folder of the ONNX model and its label file (``assistant train-intents`` writes them).
    model_dir: Path = Path("data/intents")
    #: Confidence below which the classifier's guess is not taken (the message goes to inference).
    threshold: float = 0.5
    #: False: triggers alone, as before the classifier.
    enabled: bool = True

    @classmethod
    def from_env(cls, env: Mapping[str, str], data_dir: Path) -> IntentConfig:
        defaults = cls()
        raw_dir = env.get("INTENT_MODEL_DIR")
        config = cls(
            model_dir=Path(raw_dir) if raw_dir else data_dir / "intents",
            threshold=_float(env, "INTENT_THRESHOLD", defaults.threshold),
            enabled=(env.get("INTENT_MODEL", "on").strip().lower() not in {"off", "0", "false", "no"}),
        )
        if not 0 <= config.threshold <= 1:
            raise ConfigurationError("INTENT_THRESHOLD must be between 0 and 1")
        return config


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ConfigurationError(f"{name} must be a number, got {raw!r}") from exc
