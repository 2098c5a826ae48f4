"""The local ONNX backend: real onnxruntime runs the decoding loop over a tiny causal LM of the real signature."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from fakes.tiny_lm import REPLY, build_tiny_lm

from adapters.generation import build_generator
from adapters.generation.onnx_lm import OnnxLanguageModel, choose_providers
from pipeline.errors import ConfigurationError
from pipeline.generation import ChatTurn, GenerationRequest, ModelUnavailable
from pipeline.model_config import ModelConfig


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_lm(tmp_path_factory.mktemp("tiny-lm"))


def backend(folder: Path, **changes: object) -> OnnxLanguageModel:
    config = ModelConfig(backend="onnx", endpoint=str(folder))
    return OnnxLanguageModel(replace(config, **changes))  # type: ignore[arg-type]


def ask(text: str = "你好", **changes: object) -> GenerationRequest:
    history = (ChatTurn("hi", "hello"),)
    return replace(GenerationRequest(text=text, language="zh", history=history), **changes)  # type: ignore[arg-type]


def test_greedy_decoding_spells_the_reply_in_whole_characters(folder: Path) -> None:
    deltas: list[str] = []
    assert backend(folder).generate(ask(), deltas.append) == REPLY
    # "好" and "，" are three byte tokens each: no delta carries half a character.
    assert deltas == ["你", "好", "，", "w", "o", "r", "l", "d"]


@pytest.mark.parametrize(("max_tokens", "text"), [(1, "你"), (2, "你"), (4, "你好"), (7, "你好，"), (9, "你好，wo")])
def test_max_tokens_cuts_the_reply_and_drops_a_half_character(folder: Path, max_tokens: int, text: str) -> None:
    deltas: list[str] = []
    assert backend(folder, max_tokens=max_tokens).generate(ask(), deltas.append) == text
    assert "".join(deltas) == text


def test_request_options_override_the_token_limit(folder: Path) -> None:
    assert backend(folder).generate(ask(options={"max_tokens": 4})) == "你好"


def test_sampling_with_a_seed_is_reproducible(folder: Path) -> None:
    first = backend(folder, temperature=3.0, seed=2, max_tokens=24).generate(ask())
    again = backend(folder, temperature=3.0, seed=2, max_tokens=24).generate(ask())
    other = backend(folder, temperature=3.0, seed=3, max_tokens=24).generate(ask())
    assert first == again
    assert first != other
    assert first != REPLY  # at this temperature the peak no longer dominates


def test_sampling_from_the_top_one_token_is_greedy(folder: Path) -> None:
    assert backend(folder, temperature=3.0, top_k=1, seed=1).generate(ask()) == REPLY


def test_the_same_seeded_backend_repeats_itself(folder: Path) -> None:
    lm = backend(folder, temperature=3.0, seed=3, max_tokens=16)
    assert lm.generate(ask()) == lm.generate(ask())


@pytest.mark.parametrize(
    "layout",
    [{"attention_mask": False}, {"position_ids": True}, {"generation_config": True}],
    ids=["no-attention-mask", "position-ids", "generation-config"],
)
def test_other_export_layouts_decode_the_same(tmp_path: Path, layout: dict[str, bool]) -> None:
    assert backend(build_tiny_lm(tmp_path, **layout)).generate(ask()) == REPLY


@pytest.mark.parametrize("optimization", ["disable", "basic", "extended", "all"])
def test_session_options_from_settings(folder: Path, optimization: str) -> None:
    lm = backend(folder, intra_op_threads=1, inter_op_threads=1, graph_optimization=optimization)
    assert lm.generate(ask()) == REPLY
    assert lm.providers == ["CPUExecutionProvider"]


def test_a_kv_cache_export_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    lm = backend(build_tiny_lm(tmp_path, extra_inputs=("past_key_values.0.key",)))
    with pytest.raises(ConfigurationError, match=r"needs inputs past_key_values\.0\.key: export it without past"):
        lm.warm_up()
    with pytest.raises(ModelUnavailable, match="past key values"):
        lm.generate(ask())


def test_missing_or_broken_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"model folder .*nowhere does not exist"):
        backend(tmp_path / "nowhere").warm_up()
    build_tiny_lm(tmp_path)
    (tmp_path / "tokenizer.json").unlink()
    with pytest.raises(ModelUnavailable, match=r"^onnx: model folder .* has no tokenizer\.json$"):
        backend(tmp_path).generate(ask())
    (tmp_path / "model.onnx").unlink()
    with pytest.raises(ConfigurationError, match=r"has no model\.onnx$"):
        backend(tmp_path).warm_up()
    build_tiny_lm(tmp_path)
    (tmp_path / "model.onnx").write_bytes(b"not a model")
    with pytest.raises(ConfigurationError, match=r"model\.onnx is not a loadable ONNX model"):
        backend(tmp_path).warm_up()
    build_tiny_lm(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{}")
    with pytest.raises(ConfigurationError, match=r"tokenizer\.json is not a tokenizers file"):
        backend(tmp_path).warm_up()


def test_loading_is_lazy_and_a_folder_that_appears_later_is_used(tmp_path: Path) -> None:
    lm = backend(tmp_path / "later")
    with pytest.raises(ModelUnavailable):
        lm.generate(ask())
    build_tiny_lm(tmp_path / "later")
    assert lm.generate(ask()) == REPLY


def test_the_deadline_stops_the_loop(folder: Path) -> None:
    lm = backend(folder)
    lm.warm_up()
    with pytest.raises(ModelUnavailable, match="timed out after 0 tokens"):
        lm.generate(ask(timeout_seconds=1e-9))


def test_many_threads_share_one_session(folder: Path) -> None:
    lm = backend(folder)
    results: list[str] = []
    lock = threading.Lock()

    def one() -> None:
        text = lm.generate(ask())
        with lock:
            results.append(text)

    threads = [threading.Thread(target=one) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == [REPLY] * 6


def test_cuda_is_chosen_where_present_and_a_missing_provider_is_refused() -> None:
    cuda_machine = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert choose_providers((), cuda_machine) == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert choose_providers((), ["AzureExecutionProvider", "CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    assert choose_providers(("CPUExecutionProvider",), cuda_machine) == ["CPUExecutionProvider"]
    with pytest.raises(ConfigurationError, match="CUDAExecutionProvider, which this onnxruntime lacks"):
        choose_providers(("CUDAExecutionProvider", "CPUExecutionProvider"), ["CPUExecutionProvider"])


def test_a_configured_provider_onnxruntime_lacks_is_a_clear_error(folder: Path) -> None:
    config = ModelConfig.from_env({"MODEL_BACKEND": "onnx", "MODEL_ENDPOINT": str(folder), "MODEL_PROVIDER": "rocm"})
    with pytest.raises(ConfigurationError, match="ROCMExecutionProvider"):
        backend(folder, providers=config.providers).warm_up()


def test_build_generator_picks_onnx_and_other_backends_never_import_onnxruntime(folder: Path) -> None:
    lm = build_generator(ModelConfig(backend="onnx", endpoint=str(folder)))
    assert isinstance(lm, OnnxLanguageModel)
    assert lm.generate(ask()) == REPLY
    script = (
        "import sys\n"
        "from adapters.generation import build_generator\n"
        "from pipeline.model_config import ModelConfig\n"
        "build_generator(ModelConfig(backend='openai', endpoint='http://127.0.0.1:9/v1'))\n"
        "build_generator(ModelConfig(backend='tfserving', endpoint='http://127.0.0.1:9', name='m'))\n"
        "assert 'onnxruntime' not in sys.modules and 'tokenizers' not in sys.modules, 'imported'\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)


def test_a_long_step_is_stopped_at_the_deadline(tmp_path: Path) -> None:
    # Each step runs 60 products of 1024×1024 matrices (over a second on one thread); the deadline ends it mid-run.
    lm = backend(build_tiny_lm(tmp_path, slow_matmuls=60), intra_op_threads=1)
    lm.warm_up()
    started = time.monotonic()
    with pytest.raises(ModelUnavailable, match="timed out after 0 tokens"):
        lm.generate(ask(timeout_seconds=0.3))
    assert time.monotonic() - started < 0.9
