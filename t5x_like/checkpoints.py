"""Orbax checkpoints of a training run (state + data position), run identity, and model export.

A workdir holds `checkpoints/<step>/{state,data}` (orbax `CheckpointManager`, async saves,
`max_to_keep`) and `identity.json`: what makes its checkpoints restorable (experiment, model,
training mode, adapter shape). A different experiment pointed at the same workdir is refused
before anything is loaded. Restores go into an abstract target carrying the *current* mesh's
shardings, so a run can resume on a different topology.
"""
from __future__ import annotations

import json
import os
import re
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils
from flax import traverse_util
from safetensors.numpy import save_file

from t5x_like import hf_io, io_utils
from t5x_like.errors import UserError
from t5x_like.models.config import LoraConfig, ModelConfig
from t5x_like.models.lora import merge_lora, split_lora

IDENTITY_FILE = "identity.json"


class ForeignCheckpointError(UserError, ValueError):
    """The workdir holds checkpoints of a different run."""


def check_identity(workdir: str, identity: dict[str, Any]) -> None:
    """Records `identity` in the workdir; raises if the workdir holds checkpoints of a different run."""
    file = os.path.join(workdir, IDENTITY_FILE)
    ckpt_dir = os.path.join(workdir, "checkpoints")
    has_checkpoints = os.path.isdir(ckpt_dir) and any(name.isdigit() for name in os.listdir(ckpt_dir))
    if has_checkpoints and not os.path.isfile(file):
        raise ForeignCheckpointError(f"{ckpt_dir} exists but {workdir} has no {IDENTITY_FILE}: not a t5x_like "
                                     f"training run. Use a fresh --workdir")
    if has_checkpoints:
        with open(file) as f:
            stored = json.load(f)
        diffs = io_utils.changed_keys(stored, identity)
        if diffs:
            detail = "; ".join(f"{k}: workdir has {stored.get(k)!r}, this run {identity.get(k)!r}" for k in diffs)
            raise ForeignCheckpointError(
                f"{workdir} holds checkpoints of another run ({detail}). Use a fresh --workdir, or delete it to restart")
        return
    if jax.process_index() == 0:
        os.makedirs(workdir, exist_ok=True)
        io_utils.atomic_write_json(file, identity)


class Checkpointer:
    """An orbax CheckpointManager for (TrainState, data position) pairs keyed by step."""

    def __init__(self, workdir: str, *, max_to_keep: int, async_save: bool = True):
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, enable_async_checkpointing=async_save,
                                               create=True)
        self.manager = ocp.CheckpointManager(os.path.abspath(os.path.join(workdir, "checkpoints")),
                                             options=options, item_names=("state", "data"))

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state: Any, data: dict[str, Any]) -> None:
        """Starts an (async) save of `state` and the JSON `data` (data position, ...) at `step`."""
        self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                        data=ocp.args.JsonSave(data)), force=True)

    def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict[str, Any]]:
        """(state, data) at `step`, placed on the shardings carried by `abstract_state`'s leaves."""
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()))
        return restored.state, restored.data

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def abstract_with_shardings(abstract: Any, shardings: Any) -> Any:
    """ShapeDtypeStructs that carry the given shardings (the restore target for the current mesh)."""
    return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings)


ADAPTER_CONFIG = "adapter_config.json"  # PEFT's adapter directory layout
ADAPTER_WEIGHTS = "adapter_model.safetensors"
_PEFT_LEAVES = {"lora_a": "A", "lora_b": "B"}
_PEFT_NAME = re.compile(r"base_model\.model\.(.+)\.lora_([AB])\.weight")


def peft_tensor_name(module: str, leaf: str) -> str:
    """PEFT's name of an adapter matrix: `base_model.model.<hf module>.lora_A.weight` for lora_a."""
    return f"base_model.model.{module}.lora_{_PEFT_LEAVES[leaf]}.weight"


def export_adapter(lora_params: dict[str, Any], config: ModelConfig, out_dir: str,
                   run_config: dict[str, Any]) -> str:
    """Writes the adapter alone as a PEFT directory (adapter_model.safetensors + adapter_config.json).

    Tensor names follow PEFT (`base_model.model.<hf module>.lora_A.weight`, (r, in); `lora_B`,
    (out, r)), so `peft.PeftModel.from_pretrained` loads it; `train_config.json` is the config
    that made it.
    """
    flat = traverse_util.flatten_dict(lora_params)
    tensors = {}
    for path, value in flat.items():
        module = hf_io.path_to_hf(path[:-1] + ("kernel",))[0].removesuffix(".weight")
        tensors[peft_tensor_name(module, path[-1])] = np.ascontiguousarray(
            np.asarray(multihost_utils.process_allgather(value, tiled=True), np.float32).T)
    if jax.process_index() != 0:
        return out_dir
    adapter_config = {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": config.lora.rank,
        "lora_alpha": config.lora.alpha, "lora_dropout": config.lora.dropout,
        "target_modules": sorted(config.lora.targets), "bias": "none", "fan_in_fan_out": False,
        "base_model_name_or_path": run_config.get("model", {}).get("path", ""),
    }
    with io_utils.atomic_directory(out_dir) as tmp:
        save_file(tensors, os.path.join(tmp, ADAPTER_WEIGHTS))
        io_utils.atomic_write_json(os.path.join(tmp, ADAPTER_CONFIG), adapter_config)
        io_utils.atomic_write_json(os.path.join(tmp, "train_config.json"), run_config)
    return out_dir


def read_adapter(adapter_dir: str, param_dtype: Any) -> tuple[LoraConfig, dict[tuple[str, ...], np.ndarray]]:
    """An exported PEFT adapter (export_adapter's layout) as (LoraConfig, flat host leaves with our paths)."""
    from safetensors import safe_open

    adapter = io_utils.read_json(os.path.join(adapter_dir, ADAPTER_CONFIG))
    lora = LoraConfig(rank=int(adapter["r"]), alpha=float(adapter["lora_alpha"]), dropout=0.0,
                      targets=tuple(adapter["target_modules"]))
    leaves = {}
    with safe_open(os.path.join(adapter_dir, ADAPTER_WEIGHTS), framework="numpy") as f:
        for name in f.keys():
            m = _PEFT_NAME.fullmatch(name)
            mapped = hf_io.hf_to_path(f"{m[1]}.weight") if m else None
            if mapped is None:
                raise hf_io.CheckpointError(f"{adapter_dir}: adapter tensor {name!r} names no known projection")
            leaf = "lora_a" if m[2] == "A" else "lora_b"
            leaves[mapped[0][:-1] + (leaf,)] = f.get_tensor(name).T.astype(hf_io._np_dtype(param_dtype))
    return lora, leaves


def export_merged(params: dict[str, Any], config: ModelConfig, out_dir: str, *, tokenizer_dir: str,
                  run_config: dict[str, Any]) -> str:
    """The trained model (adapters folded into their kernels) as an HF directory, + train_config.json."""
    if config.lora is not None:
        params = merge_lora(params, config.lora)
    base, _ = split_lora(params)
    hf_io.save_params(base, config.replace(lora=None), out_dir, tokenizer_dir=tokenizer_dir, overwrite=True)
    if jax.process_index() == 0:
        io_utils.atomic_write_json(os.path.join(out_dir, "train_config.json"), run_config)
    return out_dir
