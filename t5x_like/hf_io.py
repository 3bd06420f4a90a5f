"""Hugging Face checkpoint I/O: safetensors (single file or sharded index) <-> Flax params.

Loading streams one tensor at a time: read it (fp32/fp16/bf16), transpose it into our layout, cast
it, and place it straight onto its sharding, so the host never holds a second copy of the model.
Saving gathers one tensor at a time and writes safetensors incrementally (header first, then each
tensor's bytes), into a temporary directory renamed into place when complete.

The HF name <-> param path table `_TABLE` is the single place that knows both layouts.

Tied embeddings: when `tie_word_embeddings` is true, a checkpoint's `lm_head.weight` is ignored
(transformers ties it to the embedding the same way); if it differs from the embedding a warning
names the file, because the head the checkpoint carries is then not the one used.
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import logging
import math
import os
import re
import shutil
from typing import Any, Iterable, Iterator

import flax.linen as nn
import jax
import numpy as np
from flax import traverse_util
from jax.experimental import multihost_utils
from safetensors import SafetensorError, safe_open
from tqdm import tqdm

from t5x_like import io_utils, safetensors_io
from t5x_like.errors import UserError
from t5x_like.models.config import DTYPES, ModelConfig
from t5x_like.models.llama import init_params
from t5x_like.models.lora import LORA_LEAVES, merge_lora

log = logging.getLogger(__name__)

Params = dict[str, Any]
Path = tuple[str, ...]

MAX_SHARD_BYTES = 5 * 1024**3
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json",
                   "added_tokens.json", "chat_template.jinja", "vocab.json", "merges.txt")

# HF tensor name <-> our param path, and whether the weight is transposed (HF Linear is (out, in)).
_GROUPS = {"i": r"\d+", "attn": r"[qkvo]_proj", "mlp": r"(?:gate|up|down)_proj",
           "norm": r"input_layernorm|post_attention_layernorm"}
_TABLE = (
    ("model.embed_tokens.weight", "embed_tokens/embedding", False),
    ("model.layers.{i}.self_attn.{attn}.weight", "layers_{i}/self_attn/{attn}/kernel", True),
    ("model.layers.{i}.mlp.{mlp}.weight", "layers_{i}/mlp/{mlp}/kernel", True),
    ("model.layers.{i}.{norm}.weight", "layers_{i}/{norm}/scale", False),
    ("model.norm.weight", "norm/scale", False),
    ("lm_head.weight", "lm_head/kernel", True),
)
# Buffers some older checkpoints carry that hold no learned weights.
_IGNORED = re.compile(r"model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq")
_SHOWN = 8  # names listed per problem kind before "(+N more)"


class CheckpointError(UserError, ValueError):
    """A checkpoint directory or file that cannot be loaded or written as asked."""


def _template_regex(template: str) -> re.Pattern:
    parts = re.split(r"\{(\w+)\}", template)
    pattern = "".join(re.escape(p) if k % 2 == 0 else f"(?P<{p}>{_GROUPS[p]})" for k, p in enumerate(parts))
    return re.compile(pattern)


_RULES = tuple((_template_regex(hf), hf, _template_regex(ours), ours, t) for hf, ours, t in _TABLE)


def hf_to_path(hf_name: str) -> tuple[Path, bool] | None:
    """(our param path, transpose?) of an HF tensor name, or None if no rule maps it."""
    for hf_re, _, _, ours, transpose in _RULES:
        m = hf_re.fullmatch(hf_name)
        if m:
            return tuple(ours.format(**m.groupdict()).split("/")), transpose
    return None


def path_to_hf(path: Path) -> tuple[str, bool]:
    """(HF tensor name, transpose?) of one of our param paths."""
    joined = "/".join(path)
    for _, hf, ours_re, _, transpose in _RULES:
        m = ours_re.fullmatch(joined)
        if m:
            return hf.format(**m.groupdict()), transpose
    raise CheckpointError(f"param {joined!r} has no Hugging Face name (LoRA leaves must be merged first)")


@functools.lru_cache(maxsize=16)
def expected_shapes(config: ModelConfig) -> dict[Path, tuple[int, ...]]:
    """Shape of every base (non-LoRA) param of `config`, from an abstract init (no memory used)."""
    abstract = jax.eval_shape(lambda: init_params(config.replace(lora=None), jax.random.key(0)))
    flat = traverse_util.flatten_dict(nn.meta.unbox(abstract))
    return {path: tuple(leaf.shape) for path, leaf in flat.items()}


def _summary(kind: str, names: list[str]) -> str:
    names = sorted(names, key=_natural_key)
    more = f" (+{len(names) - _SHOWN} more)" if len(names) > _SHOWN else ""
    return f"{len(names)} {kind}: {', '.join(names[:_SHOWN])}{more}"


def _natural_key(name: str) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------
def weight_files(path: str) -> dict[str, str]:
    """HF tensor name -> safetensors file holding it (single file or sharded index)."""
    index = os.path.join(path, safetensors_io.INDEX_FILE)
    single = os.path.join(path, safetensors_io.SINGLE_FILE)
    if os.path.isfile(index):
        try:
            with open(index) as f:
                weight_map = json.load(f)["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise CheckpointError(f"{index}: not a valid safetensors index ({e!r})") from e
        missing = sorted({f for f in weight_map.values() if not os.path.isfile(os.path.join(path, f))})
        if missing:
            raise CheckpointError(f"{index}: lists shard file(s) missing from {path}: {', '.join(missing)}")
        return {name: os.path.join(path, f) for name, f in weight_map.items()}
    if os.path.isfile(single):
        with _open(single) as f:
            return {name: single for name in f.keys()}
    if not os.path.isdir(path):
        raise CheckpointError(f"{path}: model directory does not exist")
    bins = sorted(f for f in os.listdir(path) if f.endswith((".bin", ".pt", ".pth")))
    if bins:
        raise CheckpointError(
            f"{path}: only PyTorch pickle weights ({', '.join(bins)}); t5x_like reads safetensors only — "
            f"re-save with transformers' save_pretrained (safe_serialization is the default)")
    raise CheckpointError(f"{path}: no {safetensors_io.SINGLE_FILE} or {safetensors_io.INDEX_FILE}")


def _open(file: str):
    """safe_open in flax mode (reads bf16), turning a corrupt/truncated file into one clear error."""
    try:
        return safe_open(file, framework="flax", backend="pread")
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{file}: not a readable safetensors file, truncated or corrupt ({e})") from e


@dataclasses.dataclass(frozen=True)
class _Entry:
    """One tensor to load: where it is, where it goes, and how."""

    hf_name: str
    file: str
    path: Path
    transpose: bool


def plan_load(directory: str, config: ModelConfig) -> tuple[list[_Entry], str | None]:
    """Checks names and shapes against `config` without reading data; returns the load plan and the
    file holding an `lm_head.weight` that tying makes redundant (or None).

    Every missing, unexpected and wrongly-shaped tensor is reported together in one error.
    """
    files = weight_files(directory)
    expected = expected_shapes(config)
    entries, unexpected, wrong, redundant_head = [], [], [], None
    seen: set[Path] = set()
    by_file: dict[str, list[str]] = {}
    for name, file in files.items():
        by_file.setdefault(file, []).append(name)
    for file, names in by_file.items():
        with _open(file) as f:
            absent = sorted(set(names) - set(f.keys()))
            if absent:
                raise CheckpointError(f"{file}: the index lists {_summary('tensor(s) not in this file', absent)}")
            for name in names:
                if _IGNORED.fullmatch(name):
                    continue
                if name == "lm_head.weight" and config.tie_word_embeddings:
                    redundant_head = file
                    continue
                mapped = hf_to_path(name)
                if mapped is None or mapped[0] not in expected:
                    unexpected.append(name)
                    continue
                path, transpose = mapped
                seen.add(path)
                hf_shape = tuple(f.get_slice(name).get_shape())
                want = expected[path][::-1] if transpose else expected[path]
                if hf_shape != want:
                    wrong.append(f"{name} {list(hf_shape)} != {list(want)}")
                    continue
                entries.append(_Entry(name, file, path, transpose))
    missing = [path_to_hf(p)[0] for p in set(expected) - seen]
    problems = [_summary(kind, names) for kind, names in
                (("missing", missing), ("unexpected", unexpected), ("wrongly shaped", wrong)) if names]
    if problems:
        raise CheckpointError(f"{directory}: checkpoint does not match its config "
                              f"({config.model_type}, {config.num_layers} layers): " + "; ".join(problems))
    entries.sort(key=lambda e: (e.file, _natural_key(e.hf_name)))
    return entries, redundant_head


def _flat_shardings(shardings: Any, paths: Iterable[Path]) -> dict[Path, Any]:
    """Per-path shardings from None, one Sharding for all, or a nested dict with our paths."""
    if shardings is None or isinstance(shardings, jax.sharding.Sharding):
        return {p: shardings for p in paths}
    flat = traverse_util.flatten_dict(shardings)
    missing = sorted("/".join(p) for p in paths if p not in flat)
    if missing:
        raise CheckpointError(f"shardings given for the load lack {_summary('param path(s)', missing)}")
    return flat


def _place(host: np.ndarray, sharding: jax.sharding.Sharding | None) -> jax.Array:
    """Puts a host array on its sharding (each device receives only its own slice), or the default device."""
    if sharding is None:
        return jax.device_put(host)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def _read(f, name: str, transpose: bool = False, dtype: Any = None) -> np.ndarray:
    """One tensor as a host array (read via the CPU device, never an accelerator), in our layout and `dtype`."""
    with jax.default_device(jax.local_devices(backend="cpu")[0]):
        host = np.asarray(f.get_tensor(name))
    host = host.T if transpose else host
    return host if dtype is None else host.astype(dtype, copy=False)


def _np_dtype(dtype: Any) -> np.dtype:
    """numpy dtype of a name in DTYPES or of a numpy/jax dtype."""
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise CheckpointError(f"dtype={dtype!r}; choose one of {sorted(DTYPES)}")
        dtype = DTYPES[dtype]
    return np.dtype(dtype)


def load_params(path: str, config: ModelConfig, *, shardings: Any = None, dtype: Any = None) -> Params:
    """Loads an HF safetensors directory into a nested dict of jax arrays with our param paths.

    `shardings`: None (default device), one `jax.sharding.Sharding` for every param, or a nested
    dict of them with our paths. `dtype`: stored dtype (default `config.param_dtype`). LoRA params
    are not part of a base checkpoint: add them with `t5x_like.models.lora.combine`.
    """
    entries, redundant_head = plan_load(path, config)
    target = _np_dtype(dtype or config.param_dtype)
    placement = _flat_shardings(shardings, [e.path for e in entries])
    flat: dict[Path, jax.Array] = {}
    progress = tqdm(total=len(entries), desc=f"loading {path}", unit="tensor",
                    disable=jax.process_index() != 0 or len(entries) < 50)
    for file, group in itertools.groupby(entries, key=lambda e: e.file):
        with _open(file) as f:
            for entry in group:
                host = _read(f, entry.hf_name, entry.transpose, target)
                flat[entry.path] = _place(host, placement[entry.path])
                del host
                progress.update()
    progress.close()
    if redundant_head is not None:
        _warn_if_head_differs(redundant_head, weight_files(path)["model.embed_tokens.weight"])
    return traverse_util.unflatten_dict(flat)


def _warn_if_head_differs(head_file: str, embed_file: str) -> None:
    """With tied embeddings the checkpoint's lm_head.weight is unused; say so if it is not the embedding."""
    with _open(head_file) as f:
        head = _read(f, "lm_head.weight")
    with _open(embed_file) as f:
        same = np.array_equal(head, _read(f, "model.embed_tokens.weight"))
    if not same:
        log.warning("%s: lm_head.weight differs from model.embed_tokens.weight but config.json sets "
                    "tie_word_embeddings=true, so (as in transformers) the embedding is used as the head", head_file)


def load_model_dir(path: str, *, dtype: str = "float32", param_dtype: str | None = None,
                   shardings: Any = None) -> tuple[ModelConfig, Params]:
    """(config, params) of an HF directory; `param_dtype` defaults to `dtype`."""
    config = ModelConfig.from_hf_dir(path, dtype=dtype, param_dtype=param_dtype or dtype)
    return config, load_params(path, config, shardings=shardings)


# --------------------------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _OutTensor:
    """One tensor to write: its HF name, HF-layout shape, and where it comes from."""

    hf_name: str
    shape: tuple[int, ...]
    path: Path
    transpose: bool


def _export_plan(flat: dict[Path, Any], config: ModelConfig) -> list[_OutTensor]:
    """HF names and shapes of `flat` in HF order, after checking it against `config` (one error)."""
    expected = expected_shapes(config)
    missing = sorted("/".join(p) for p in set(expected) - set(flat))
    unexpected = sorted("/".join(p) for p in set(flat) - set(expected))
    wrong = sorted(f"{'/'.join(p)} {list(v.shape)} != {list(expected[p])}"
                   for p, v in flat.items() if p in expected and tuple(v.shape) != expected[p])
    problems = [_summary(kind, names) for kind, names in
                (("missing", missing), ("unexpected", unexpected), ("wrongly shaped", wrong)) if names]
    if problems:
        raise CheckpointError("params do not match the config: " + "; ".join(problems))
    out = []
    for path, value in flat.items():
        name, transpose = path_to_hf(path)
        out.append(_OutTensor(name, tuple(value.shape[::-1] if transpose else value.shape), path, transpose))
    order = {"model.embed_tokens.weight": 0, "model.norm.weight": 2, "lm_head.weight": 3}
    return sorted(out, key=lambda t: (order.get(t.hf_name, 1), _natural_key(t.hf_name)))


def _gather(value: jax.Array) -> np.ndarray:
    """The full value of a (possibly multi-host sharded) array on this host; all processes must call it."""
    if isinstance(value, jax.Array) and not value.is_fully_addressable:
        return np.asarray(multihost_utils.process_allgather(value, tiled=True))
    return np.asarray(jax.device_get(value))


def _copy_tokenizer(tokenizer_dir: str, out: str) -> None:
    found = [f for f in TOKENIZER_FILES if os.path.isfile(os.path.join(tokenizer_dir, f))]
    if not found:
        raise CheckpointError(f"{tokenizer_dir}: no tokenizer files (looked for {', '.join(TOKENIZER_FILES)})")
    for name in found:
        shutil.copy2(os.path.join(tokenizer_dir, name), os.path.join(out, name))


def _write_json(file: str, obj: Any) -> None:
    with open(file, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def save_params(params: Params, config: ModelConfig, output_dir: str, *, tokenizer_dir: str | None = None,
                dtype: str | None = None, max_shard_bytes: int = MAX_SHARD_BYTES, overwrite: bool = False) -> str:
    """Writes an HF directory transformers loads: config.json, generation_config.json, safetensors
    (sharded with an index above `max_shard_bytes`) and the tokenizer files of `tokenizer_dir`.

    Params may be boxed or carry LoRA leaves (merged with `config.lora`). Sharded arrays are gathered
    one tensor at a time; every process must call this, process 0 writes. The directory appears
    atomically; an existing non-empty `output_dir` is an error unless `overwrite`.
    """
    dtype = dtype or config.param_dtype
    if dtype not in safetensors_io.ST_DTYPES:
        raise CheckpointError(f"dtype={dtype!r}; choose one of {sorted(safetensors_io.ST_DTYPES)}")
    params = nn.meta.unbox(params)
    flat = traverse_util.flatten_dict(params)
    if any(p[-1] in LORA_LEAVES for p in flat):
        if config.lora is None:
            raise CheckpointError("params carry LoRA leaves but config.lora is None; pass the LoRA config")
        flat = traverse_util.flatten_dict(merge_lora(params, config.lora))
    plan = _export_plan(flat, config)
    writer = jax.process_index() == 0
    target = np.dtype(DTYPES[dtype])
    need = sum(math.prod(t.shape) for t in plan) * target.itemsize
    _agree_on_output(_output_problem(output_dir, tokenizer_dir, overwrite, need) if writer else None, output_dir)
    shards = [[plan[i] for i in group] for group in
              safetensors_io.shard_plan([math.prod(t.shape) * target.itemsize for t in plan], max_shard_bytes)]
    names = safetensors_io.shard_file_names(len(shards))
    tmp = None
    if writer:
        tmp = io_utils.make_temp_dir(output_dir)
    try:
        progress = tqdm(total=len(plan), desc=f"saving {output_dir}", unit="tensor",
                        disable=not writer or len(plan) < 50)

        def arrays(shard: list[_OutTensor]) -> Iterator[np.ndarray]:
            for t in shard:
                host = _gather(flat[t.path])
                host = (host.T if t.transpose else host).astype(target, copy=False)
                progress.update()
                yield host

        for name, shard in zip(names, shards):
            if writer:
                safetensors_io.write_safetensors(os.path.join(tmp, name), [(t.hf_name, t.shape) for t in shard], dtype, arrays(shard))
            else:
                for _ in arrays(shard):  # take part in the gathers
                    pass
        progress.close()
        if writer:
            _write_metadata(tmp, config, dtype, shards, names, target.itemsize, tokenizer_dir)
            io_utils.replace_directory(tmp, output_dir)
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(f"save_params {output_dir}")
    return output_dir


def _output_problem(output_dir: str, tokenizer_dir: str | None, overwrite: bool, need_bytes: int) -> str | None:
    """Why process 0 cannot write `output_dir` (checked before any gather: existing output, missing
    tokenizer, a parent that is not writable or lacks `need_bytes` of free space), or None."""
    if os.path.isdir(output_dir) and os.listdir(output_dir) and not overwrite:
        return f"{output_dir}: exists and is not empty; choose another directory or pass overwrite"
    if tokenizer_dir is not None and not os.path.isdir(tokenizer_dir):
        return f"{tokenizer_dir}: tokenizer directory does not exist"
    try:
        io_utils.check_writable(os.path.dirname(os.path.abspath(output_dir)), need_bytes, what="export parent")
    except io_utils.OutputNotWritableError as error:
        return str(error)
    return None


def _agree_on_output(problem: str | None, output_dir: str) -> None:
    """Raises on every process when process 0 found a problem, so no process waits in a gather."""
    if not io_utils.all_processes_ok(problem is None):
        raise CheckpointError(problem or f"{output_dir}: process 0 cannot write the export (see its log)")


def _write_metadata(out: str, config: ModelConfig, dtype: str, shards: list[list[_OutTensor]],
                    names: list[str], itemsize: int, tokenizer_dir: str | None) -> None:
    """config.json, generation_config.json, the shard index (if sharded) and the tokenizer files."""
    hf = config.to_hf_dict()
    hf["torch_dtype"] = dtype
    _write_json(os.path.join(out, "config.json"), hf)
    _write_json(os.path.join(out, "generation_config.json"),
                {k: hf[k] for k in ("bos_token_id", "eos_token_id") if hf[k] is not None})
    if len(shards) > 1:
        total = sum(math.prod(t.shape) * itemsize for shard in shards for t in shard)
        safetensors_io.write_index(out, {t.hf_name: name for name, shard in zip(names, shards) for t in shard}, total)
    if tokenizer_dir is not None:
        _copy_tokenizer(tokenizer_dir, out)
    for name in (".", *os.listdir(out)):
        io_utils.set_default_mode(os.path.join(out, name))
