"""Replies from a local causal language model on onnxruntime, decoded greedily or by sampling.

The model folder (``MODEL_ENDPOINT``) holds ``model.onnx`` and the Hugging Face ``tokenizer.json``. The model takes
``input_ids`` int64 [batch, sequence], and ``attention_mask`` / ``position_ids`` if it declares them, and answers
``logits`` [batch, sequence, vocab]. Exports that need past key values (a KV cache) are refused: each step runs the
whole sequence again, which is fine for the small models this backend is for and keeps one code path for every
export. The prompt is ``prompt.prompt_text`` (ChatML by default); a ``chat_template`` in ``tokenizer_config.json`` is
not read. Generation stops at an end token (``eos_token_id`` of ``generation_config.json`` or ``config.json``, and
``<|im_end|>``, ``<|endoftext|>``, ``</s>``, ``<|eot_id|>``, ``<|end|>``, ``<eos>`` when the tokenizer has them), at
``MODEL_MAX_TOKENS`` new tokens, or fails at the deadline.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from adapters.generation.prompt import prompt_text
from pipeline.errors import ConfigurationError
from pipeline.generation import DeltaListener, GenerationRequest, ModelUnavailable
from pipeline.model_config import ModelConfig

logger = logging.getLogger(__name__)

MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
#: Token strings that end a reply when the tokenizer has them (the chat formats' end of turn, end of text).
STOP_TOKENS = ("<|im_end|>", "<|endoftext|>", "</s>", "<|eot_id|>", "<|end|>", "<eos>", "<|end_of_text|>")
#: Inputs the decoding loop knows how to feed.
FED_INPUTS = frozenset({"input_ids", "attention_mask", "position_ids"})
_OPTIMIZATION_LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}


def choose_providers(wanted: Sequence[str], available: Sequence[str]) -> list[str]:
    """The execution providers to ask for: ``wanted`` as configured (each must be available), else CUDA where
    onnxruntime has it, then the CPU."""
    if wanted:
        missing = [name for name in wanted if name not in available]
        if missing:
            raise ConfigurationError(
                f"MODEL_PROVIDER asks for {', '.join(missing)}, which this onnxruntime lacks "
                f"(it has {', '.join(available)})"
            )
        return list(wanted)
    return [name for name in ("CUDAExecutionProvider",) if name in available] + ["CPUExecutionProvider"]


@dataclass(frozen=True, slots=True)
class _Loaded:
    """What one model folder loads into; shared by every thread (onnxruntime sessions and tokenizers are)."""

    #: The onnxruntime ``InferenceSession``.
    session: Any
    #: The ``tokenizers.Tokenizer``.
    tokenizer: Any
    #: Inputs the model declares, in the subset the loop feeds.
    inputs: frozenset[str]
    #: Name of the logits output.
    logits: str
    #: Token ids that end the reply.
    stop_ids: frozenset[int]


class OnnxLanguageModel:
    """One model folder, loaded once per process on first use (or ``warm_up``)."""

    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        self.folder = Path(config.endpoint)
        self._loaded: _Loaded | None = None
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        """Load the model now; raises ``ConfigurationError`` when the folder is unusable."""
        self._load()

    @property
    def providers(self) -> list[str]:
        """The execution providers the loaded session runs on."""
        return list(self._load().session.get_providers())

    def generate(self, request: GenerationRequest, on_delta: DeltaListener | None = None) -> str:
        """The reply; ``on_delta`` gets each new run of whole characters. Exceptions ``on_delta`` raises stop the
        reply and propagate."""
        deadline = time.monotonic() + request.timeout_seconds
        try:
            model = self._load()
        except ConfigurationError as exc:
            raise ModelUnavailable(f"onnx: {exc}") from exc
        import onnxruntime

        max_new = int(request.options.get("max_tokens", self.config.max_tokens))
        temperature = float(request.options.get("temperature", self.config.temperature or 0.0))
        rng = np.random.default_rng(self.config.seed)
        ids = list(model.tokenizer.encode(prompt_text(request, self.config), add_special_tokens=False).ids)
        generated: list[int] = []
        emitted = ""
        # The deadline is checked between tokens, and a step still running at the deadline is stopped by
        # onnxruntime's terminate flag (a large model's one step can take seconds).
        run_options = onnxruntime.RunOptions()
        timer = threading.Timer(max(deadline - time.monotonic(), 0.0), _terminate, (run_options,))
        timer.daemon = True
        timer.start()
        try:
            for _ in range(max_new):
                if time.monotonic() >= deadline:
                    raise self._timed_out(generated)
                try:
                    logits = self._next_logits(model, ids + generated, run_options)
                except ModelUnavailable as exc:
                    if time.monotonic() >= deadline:
                        raise self._timed_out(generated) from exc
                    raise
                token = _pick(logits, temperature, self.config.top_k, rng)
                if token in model.stop_ids:
                    break
                generated.append(token)
                emitted = self._emit(model, generated, emitted, on_delta, final=False)
        finally:
            timer.cancel()
        emitted = self._emit(model, generated, emitted, on_delta, final=True)
        if not emitted.strip():
            raise ModelUnavailable(f"onnx {self.folder.name}: empty answer")
        return emitted

    def _timed_out(self, generated: list[int]) -> ModelUnavailable:
        return ModelUnavailable(f"onnx {self.folder.name}: timed out after {len(generated)} tokens")

    @staticmethod
    def _emit(model: _Loaded, generated: list[int], emitted: str, on_delta: DeltaListener | None, final: bool) -> str:
        """Pass on what the tokens decoded so far add to ``emitted``; returns the new ``emitted``.

        The whole reply is decoded each time and only a suffix ending in a whole character is sent: byte-level
        tokens split a Chinese character over several tokens, and a half character decodes to U+FFFD. The last
        call drops such a half character, cut off by the token limit.
        """
        text = model.tokenizer.decode(generated, skip_special_tokens=True).lstrip()
        if final:
            text = text.rstrip("\ufffd")
        elif text.endswith("\ufffd"):
            return emitted
        # A decoder may rewrite earlier text (rarely); what was sent stays, the rest waits for a consistent prefix.
        if len(text) > len(emitted) and text.startswith(emitted):
            if on_delta is not None:
                on_delta(text[len(emitted) :])
            return text
        return emitted

    def _next_logits(self, model: _Loaded, ids: list[int], run_options: Any) -> np.ndarray:
        input_ids = np.asarray([ids], dtype=np.int64)
        feeds = {"input_ids": input_ids}
        if "attention_mask" in model.inputs:
            feeds["attention_mask"] = np.ones_like(input_ids)
        if "position_ids" in model.inputs:
            feeds["position_ids"] = np.arange(len(ids), dtype=np.int64)[np.newaxis, :]
        try:
            (logits,) = model.session.run([model.logits], feeds, run_options)
        except Exception as exc:  # onnxruntime's errors have no common base worth naming
            raise ModelUnavailable(f"onnx {self.folder.name}: {type(exc).__name__} while running") from exc
        logits = np.asarray(logits)
        # [batch, sequence, vocab], or [batch, vocab] for exports that keep the last position only.
        return logits[0, -1] if logits.ndim == 3 else logits[0]

    def close(self) -> None:
        """Drop the loaded model; the next reply loads it again."""
        with self._lock:
            self._loaded = None

    def _load(self) -> _Loaded:
        with self._lock:
            if self._loaded is None:
                self._loaded = _open(self.folder, self.config)
            return self._loaded


def _terminate(run_options: Any) -> None:
    run_options.terminate = True


def _pick(logits: np.ndarray, temperature: float, top_k: int, rng: np.random.Generator) -> int:
    """The next token: the most likely one when ``temperature`` is 0, else a draw from the softmax at
    ``temperature`` over the ``top_k`` most likely (all when 0)."""
    if temperature <= 0:
        return int(np.argmax(logits))
    scores = logits.astype(np.float64) / temperature
    candidates = np.arange(scores.shape[0])
    if 0 < top_k < scores.shape[0]:
        candidates = np.argpartition(scores, -top_k)[-top_k:]
        scores = scores[candidates]
    weights = np.exp(scores - scores.max())
    return int(candidates[rng.choice(len(candidates), p=weights / weights.sum())])


def _open(folder: Path, config: ModelConfig) -> _Loaded:
    """Load the folder's tokenizer and model; ``ConfigurationError`` says what is missing or wrong."""
    import onnxruntime
    from tokenizers import Tokenizer

    if not folder.is_dir():
        raise ConfigurationError(f"model folder {folder} does not exist (MODEL_ENDPOINT)")
    for name in (MODEL_FILE, TOKENIZER_FILE):
        if not (folder / name).is_file():
            raise ConfigurationError(f"model folder {folder} has no {name}")
    try:
        tokenizer = Tokenizer.from_file(str(folder / TOKENIZER_FILE))
    except Exception as exc:  # tokenizers raises a bare Exception for a malformed file
        raise ConfigurationError(f"{folder / TOKENIZER_FILE} is not a tokenizers file") from exc
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = config.intra_op_threads
    options.inter_op_num_threads = config.inter_op_threads
    options.graph_optimization_level = getattr(
        onnxruntime.GraphOptimizationLevel, _OPTIMIZATION_LEVELS[config.graph_optimization]
    )
    options.log_severity_level = 3
    providers = choose_providers(config.providers, onnxruntime.get_available_providers())
    try:
        session = onnxruntime.InferenceSession(str(folder / MODEL_FILE), sess_options=options, providers=providers)
    except Exception as exc:  # InvalidProtobuf, Fail, NoSuchFile ...: all mean the file is not a usable model
        raise ConfigurationError(f"{folder / MODEL_FILE} is not a loadable ONNX model ({type(exc).__name__})") from exc
    declared = {item.name for item in session.get_inputs()}
    if "input_ids" not in declared:
        raise ConfigurationError(f"{folder / MODEL_FILE} has no input_ids input")
    unfed = sorted(declared - FED_INPUTS)
    if unfed:
        raise ConfigurationError(
            f"{folder / MODEL_FILE} needs inputs {', '.join(unfed[:3])}: export it without past key values "
            "(input_ids in, logits out)"
        )
    outputs = [item.name for item in session.get_outputs()]
    stop_ids = _stop_ids(folder, tokenizer)
    if not stop_ids:
        logger.warning("model folder %s names no end token: every reply runs to MODEL_MAX_TOKENS", folder)
    logger.info("onnx model %s loaded on %s", folder, ", ".join(session.get_providers()))
    return _Loaded(
        session=session,
        tokenizer=tokenizer,
        inputs=frozenset(declared & FED_INPUTS),
        logits="logits" if "logits" in outputs else outputs[0],
        stop_ids=stop_ids,
    )


def _stop_ids(folder: Path, tokenizer: Any) -> frozenset[int]:
    """End tokens: ``eos_token_id`` from the folder's generation or model config, and the known end tokens."""
    ids: set[int] = set()
    for name in ("generation_config.json", "config.json"):
        path = folder / name
        if not path.is_file():
            continue
        try:
            value = json.loads(path.read_text(encoding="utf-8")).get("eos_token_id")
        except (ValueError, AttributeError) as exc:
            raise ConfigurationError(f"{path} is not a JSON object") from exc
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, int) and not isinstance(item, bool):
                ids.add(item)
    for token in STOP_TOKENS:
        token_id = tokenizer.token_to_id(token)
        if token_id is not None:
            ids.add(token_id)
    return frozenset(ids)
