"""Settings of the inference stage: the generative model backend and the intent classifier."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import ConfigurationError

#: ``MODEL_BACKEND`` values; unset means the fallback reply.
BACKENDS = frozenset({"openai", "tfserving", "onnx"})


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

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ModelConfig:
        defaults = cls()
        backend = (env.get("MODEL_BACKEND") or "").strip().lower() or None
        if backend is not None and backend not in BACKENDS:
            raise ConfigurationError(f"MODEL_BACKEND must be one of {', '.join(sorted(BACKENDS))}, got {backend!r}")
        config = cls(
            backend=backend,
            endpoint=env.get("MODEL_ENDPOINT", defaults.endpoint).strip(),
            name=env.get("MODEL_NAME", defaults.name).strip(),
            timeout_seconds=_float(env, "MODEL_TIMEOUT_SECONDS", defaults.timeout_seconds),
        )
        if config.timeout_seconds <= 0:
            raise ConfigurationError("MODEL_TIMEOUT_SECONDS must be above 0")
        if config.backend is not None and not config.endpoint:
            raise ConfigurationError(f"MODEL_BACKEND={config.backend} needs MODEL_ENDPOINT")
        return config


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
