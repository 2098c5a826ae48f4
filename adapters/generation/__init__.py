"""The generative backends behind ``pipeline.generation.Generator``, chosen by ``MODEL_BACKEND``."""

from __future__ import annotations

from pipeline.generation import Generator
from pipeline.model_config import ModelConfig


def build_generator(config: ModelConfig) -> Generator | None:
    """The configured backend, or None when ``MODEL_BACKEND`` is unset (the fallback reply answers).

    Nothing is opened or loaded here: the HTTP session and the ONNX session are built on first use (or by the
    backend's ``warm_up``). Each backend's module is imported only when chosen, so a worker without onnxruntime
    configured never imports it.
    """
    if config.backend is None:
        return None
    if config.backend == "openai":
        from adapters.generation.openai_chat import OpenAIChat

        return OpenAIChat(config)
    if config.backend == "tfserving":
        from adapters.generation.tfserving import TFServing

        return TFServing(config)
    if config.backend == "onnx":
        from adapters.generation.onnx_lm import OnnxLanguageModel

        return OnnxLanguageModel(config)
    raise ValueError(f"unknown model backend {config.backend!r}")
