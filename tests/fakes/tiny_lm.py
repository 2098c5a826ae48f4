"""A tiny causal language model of the real ONNX signature and its byte-level BPE tokenizer, for the onnx backend.

The model maps ``input_ids`` [batch, seq] (and ``attention_mask``) to ``logits`` [batch, seq, vocab] by looking each
token's row up in a fixed table (a ``Gather``): a bigram model whose most likely next token is set so that greedy
decoding after the ChatML prompt's last token (the newline after ``<|im_start|>assistant``) spells ``REPLY`` and
ends with ``<|im_end|>``. Every other token leads to ``<|endoftext|>``.

The tokenizer is GPT-2 style byte-level BPE over the 256 byte symbols, with one merged token, "你": "好" and "，"
stay three byte tokens each, so decoding token by token meets half characters, as with real models.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

#: What greedy decoding answers after any ChatML prompt.
REPLY = "你好，world"
#: Special tokens, after the 256 byte symbols and the merges.
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
#: Characters merged into one token each; the rest of the text is byte tokens.
MERGED = ("你",)
#: Logit of the intended next token; all others are 0, so greedy is certain and sampling at temperature 1 almost.
PEAK = 10.0


def byte_symbols() -> list[str]:
    """GPT-2's printable stand-in for each byte value, in byte order (what ``ByteLevel`` pre-tokenizes to)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = 0
    symbols: list[str] = []
    for value in range(256):
        if value in printable:
            symbols.append(chr(value))
        else:
            symbols.append(chr(256 + extra))
            extra += 1
    return symbols


def build_tokenizer() -> Tokenizer:
    """The tiny byte-level BPE tokenizer."""
    symbols = byte_symbols()
    vocab = {symbol: index for index, symbol in enumerate(symbols)}
    merges: list[tuple[str, str]] = []
    for character in MERGED:
        parts = [symbols[b] for b in character.encode()]
        merged = parts[0]
        for part in parts[1:]:
            merges.append((merged, part))
            merged += part
            vocab.setdefault(merged, len(vocab))
    for token in SPECIAL_TOKENS:
        vocab[token] = len(vocab)
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in SPECIAL_TOKENS])
    return tokenizer


def build_tiny_lm(
    folder: Path,
    *,
    reply: str = REPLY,
    attention_mask: bool = True,
    position_ids: bool = False,
    extra_inputs: Sequence[str] = (),
    generation_config: bool = False,
    slow_matmuls: int = 0,
) -> Path:
    """Write ``model.onnx`` and ``tokenizer.json`` into ``folder`` (and ``generation_config.json`` naming the stop
    tokens if asked); returns ``folder``. ``extra_inputs`` adds required float inputs the backend does not feed
    (``past_key_values.0.key``), like a KV-cache export. ``slow_matmuls`` makes each run do that many
    1024×1024 matrix products that depend on the input (so they cannot be folded away) without changing the
    logits: a stand-in for a large model whose one step takes long."""
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    tokenizer.save(str(folder / "tokenizer.json"))
    vocab_size = tokenizer.get_vocab_size()
    start = tokenizer.token_to_id(byte_symbols()[ord("\n")])
    end_of_text, end_of_turn = (tokenizer.token_to_id(t) for t in ("<|endoftext|>", "<|im_end|>"))
    chain = [start, *tokenizer.encode(reply, add_special_tokens=False).ids, end_of_turn]
    table = np.zeros((vocab_size, vocab_size), dtype=np.float32)
    table[:, end_of_text] = PEAK
    successors: dict[int, int] = {}
    for current, following in itertools.pairwise(chain):
        if successors.setdefault(current, following) != following:
            raise ValueError(f"a bigram model cannot spell {reply!r}: token {current} needs two successors")
        table[current, end_of_text] = 0.0
        table[current, following] = PEAK
    if generation_config:
        (folder / "generation_config.json").write_text(json.dumps({"eos_token_id": [end_of_text, end_of_turn]}))
    graph = _graph(table, attention_mask, position_ids, extra_inputs, slow_matmuls)
    onnx.save(graph, str(folder / "model.onnx"))
    return folder


def _graph(
    table: np.ndarray, attention_mask: bool, position_ids: bool, extra_inputs: Sequence[str], slow_matmuls: int
) -> onnx.ModelProto:
    inputs = [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"])]
    nodes = [helper.make_node("Gather", ["table", "input_ids"], ["rows"], axis=0)]
    initializers = [numpy_helper.from_array(table, "table"), numpy_helper.from_array(np.array([-1]), "last_axis")]
    current = "rows"
    if attention_mask:
        # Masked positions get all-zero logits; the mask is really used, so a missing feed fails the run.
        inputs.append(helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "sequence"]))
        nodes += [
            helper.make_node("Cast", ["attention_mask"], ["mask_float"], to=TensorProto.FLOAT),
            helper.make_node("Unsqueeze", ["mask_float", "last_axis"], ["mask_column"]),
            helper.make_node("Mul", [current, "mask_column"], ["masked"]),
        ]
        current = "masked"
    if position_ids:
        # Adds position * 0: the input is read (and must be fed) without changing the answer.
        inputs.append(helper.make_tensor_value_info("position_ids", TensorProto.INT64, ["batch", "sequence"]))
        initializers.append(numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero"))
        nodes += [
            helper.make_node("Cast", ["position_ids"], ["positions_float"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["positions_float", "zero"], ["positions_zero"]),
            helper.make_node("Unsqueeze", ["positions_zero", "last_axis"], ["positions_column"]),
            helper.make_node("Add", [current, "positions_column"], ["positioned"]),
        ]
        current = "positioned"
    if slow_matmuls:
        size = 1024
        square = np.full((size, size), 1.0 / size, dtype=np.float32)
        initializers += [
            numpy_helper.from_array(square, "square"),
            numpy_helper.from_array(np.array(0.0, dtype=np.float32), "nothing"),
        ]
        nodes += [
            helper.make_node("ReduceSum", ["input_ids"], ["id_sum"], keepdims=0),
            helper.make_node("Cast", ["id_sum"], ["id_sum_float"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["square", "id_sum_float"], ["product_0"]),
        ]
        for step in range(slow_matmuls):
            nodes.append(helper.make_node("MatMul", [f"product_{step}", "square"], [f"product_{step + 1}"]))
        nodes += [
            helper.make_node("ReduceSum", [f"product_{slow_matmuls}"], ["product_sum"], keepdims=0),
            helper.make_node("Mul", ["product_sum", "nothing"], ["product_zero"]),
            helper.make_node("Add", [current, "product_zero"], ["slowed"]),
        ]
        current = "slowed"
    for name in extra_inputs:
        inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", 2, "past", 4]))
    nodes.append(helper.make_node("Identity", [current], ["logits"]))
    output = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "sequence", table.shape[1]])
    graph = helper.make_graph(nodes, "tiny_lm", inputs, [output], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="assistant-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model
