"""``MODEL_*`` settings: defaults, every variable read, and clear errors for values out of range."""

from __future__ import annotations

import pytest

from pipeline.errors import ConfigurationError
from pipeline.model_config import DEFAULT_SYSTEM_PROMPT, ModelConfig
from pipeline.settings import Settings

OPENAI = {"MODEL_BACKEND": "openai", "MODEL_ENDPOINT": "http://localhost:11434/v1"}


def test_defaults_mean_no_backend() -> None:
    config = ModelConfig.from_env({})
    assert config == ModelConfig()
    assert config.backend is None
    assert config.system_prompt == DEFAULT_SYSTEM_PROMPT
    assert "中文" in config.system_prompt and "language the user writes in" in config.system_prompt
    assert config.history_turns == 6 and config.max_tokens == 256 and config.timeout_seconds == 30
    assert config.temperature is None and config.seed is None and config.top_k == 0
    assert config.api_key == ""
    assert (config.input_key, config.output_key, config.signature_name) == ("inputs", "outputs", "")
    assert (config.intra_op_threads, config.inter_op_threads) == (0, 0)
    assert config.providers == () and config.graph_optimization == "all" and config.prompt_format == "chatml"


def test_every_variable_is_read() -> None:
    config = ModelConfig.from_env(
        {
            "MODEL_BACKEND": " OpenAI ",
            "MODEL_ENDPOINT": "http://vllm:8000/v1",
            "MODEL_NAME": "Qwen/Qwen2.5-0.5B-Instruct",
            "MODEL_TIMEOUT_SECONDS": "12.5",
            "MODEL_SYSTEM_PROMPT": "你是客服助手。",
            "MODEL_HISTORY_TURNS": "0",
            "MODEL_MAX_TOKENS": "64",
            "MODEL_TEMPERATURE": "0.7",
            "MODEL_TOP_K": "40",
            "MODEL_SEED": "42",
            "MODEL_API_KEY": "sk-local",
            "MODEL_PROMPT_FORMAT": "Plain",
            "MODEL_INPUT_KEY": "prompt",
            "MODEL_OUTPUT_KEY": "reply",
            "MODEL_SIGNATURE": "chat",
            "MODEL_THREADS": "2",
            "MODEL_INTER_OP_THREADS": "1",
            "MODEL_PROVIDER": "cuda, CPU, OpenVINOExecutionProvider, cuda",
            "MODEL_GRAPH_OPTIMIZATION": "Extended",
        }
    )
    assert config.backend == "openai"
    assert (config.endpoint, config.name, config.timeout_seconds) == (
        "http://vllm:8000/v1",
        "Qwen/Qwen2.5-0.5B-Instruct",
        12.5,
    )
    assert config.system_prompt == "你是客服助手。"
    assert (config.history_turns, config.max_tokens, config.temperature, config.top_k, config.seed) == (
        0,
        64,
        0.7,
        40,
        42,
    )
    assert config.api_key == "sk-local"
    assert config.prompt_format == "plain"
    assert (config.input_key, config.output_key, config.signature_name) == ("prompt", "reply", "chat")
    assert (config.intra_op_threads, config.inter_op_threads) == (2, 1)
    assert config.providers == ("CUDAExecutionProvider", "CPUExecutionProvider", "OpenVINOExecutionProvider")
    assert config.graph_optimization == "extended"


def test_the_api_key_never_shows_in_repr() -> None:
    config = ModelConfig.from_env({**OPENAI, "MODEL_API_KEY": "sk-very-secret"})
    assert "sk-very-secret" not in repr(config)
    settings = Settings.from_env({**OPENAI, "MODEL_API_KEY": "sk-very-secret", "JWT_SECRET": "x" * 32})
    assert settings.model.api_key == "sk-very-secret"


def test_an_empty_input_key_is_kept_and_a_blank_system_prompt_means_the_default() -> None:
    config = ModelConfig.from_env({**OPENAI, "MODEL_INPUT_KEY": "", "MODEL_SYSTEM_PROMPT": "  "})
    assert config.input_key == ""
    assert config.system_prompt == DEFAULT_SYSTEM_PROMPT


def test_temperature_zero_is_kept_apart_from_unset() -> None:
    assert ModelConfig.from_env({**OPENAI, "MODEL_TEMPERATURE": "0"}).temperature == 0.0
    assert ModelConfig.from_env({**OPENAI, "MODEL_TEMPERATURE": ""}).temperature is None


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MODEL_BACKEND": "llama"}, "MODEL_BACKEND must be one of onnx, openai, tfserving"),
        ({"MODEL_BACKEND": "openai"}, "MODEL_BACKEND=openai needs MODEL_ENDPOINT"),
        ({"MODEL_BACKEND": "openai", "MODEL_ENDPOINT": "localhost:11434"}, "http:// or https:// MODEL_ENDPOINT"),
        ({"MODEL_BACKEND": "tfserving", "MODEL_ENDPOINT": "http://tf:8501"}, "needs MODEL_NAME"),
        ({**OPENAI, "MODEL_TIMEOUT_SECONDS": "0"}, "MODEL_TIMEOUT_SECONDS must be above 0"),
        ({**OPENAI, "MODEL_TIMEOUT_SECONDS": "soon"}, "MODEL_TIMEOUT_SECONDS must be a number"),
        ({**OPENAI, "MODEL_HISTORY_TURNS": "-1"}, "MODEL_HISTORY_TURNS must be 0 or more"),
        ({**OPENAI, "MODEL_HISTORY_TURNS": "many"}, "MODEL_HISTORY_TURNS must be a whole number"),
        ({**OPENAI, "MODEL_MAX_TOKENS": "0"}, "MODEL_MAX_TOKENS must be at least 1"),
        ({**OPENAI, "MODEL_TEMPERATURE": "-0.1"}, "MODEL_TEMPERATURE must be between 0 and 10"),
        ({**OPENAI, "MODEL_TOP_K": "-5"}, "MODEL_TOP_K must be 0 or more"),
        ({**OPENAI, "MODEL_SEED": "1.5"}, "MODEL_SEED must be a whole number"),
        ({**OPENAI, "MODEL_THREADS": "-1"}, "MODEL_THREADS must be 0 or more"),
        ({**OPENAI, "MODEL_INTER_OP_THREADS": "-2"}, "MODEL_INTER_OP_THREADS must be 0 or more"),
        ({**OPENAI, "MODEL_PROMPT_FORMAT": "llama3"}, "MODEL_PROMPT_FORMAT must be one of chatml, plain"),
        ({**OPENAI, "MODEL_GRAPH_OPTIMIZATION": "max"}, "MODEL_GRAPH_OPTIMIZATION must be one of all, basic"),
    ],
)
def test_bad_values_are_refused_naming_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message.replace("+", r"\+").replace("?", r"\?")):
        ModelConfig.from_env(env)


def test_an_onnx_folder_is_a_path_not_a_url() -> None:
    config = ModelConfig.from_env({"MODEL_BACKEND": "onnx", "MODEL_ENDPOINT": "data/models/tiny-lm"})
    assert config.endpoint == "data/models/tiny-lm"
