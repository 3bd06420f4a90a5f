"""What a training run carries from step to step, and how the model's params split into trained/frozen.

The checkpointed `TrainState` holds only what training changes: the trained params (fp32 master
copy), their optimizer state, the step and the RNG. In LoRA mode the frozen base weights are not
part of it: they are reloaded from the model source (in `model.param_dtype`, e.g. bf16), so a
checkpoint of a 7B LoRA run is megabytes, not gigabytes.
"""
from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax
from jax.sharding import PartitionSpec

from t5x_like.models import lora as lora_lib

Params = dict[str, Any]
TRAIN_MODES = ("lora", "full")


class TrainState(flax.struct.PyTreeNode):
    """step, trained params (fp32), optimizer state, base RNG (per-step keys are folded in)."""

    step: jax.Array
    params: Params
    opt_state: optax.OptState
    rng: jax.Array


def split_trainable(params: Params, mode: str) -> tuple[Params, Params]:
    """(trained, frozen) params: adapters vs base in LoRA mode, everything vs nothing in full mode."""
    if mode == "lora":
        frozen, trained = lora_lib.split_lora(params)
        if not jax.tree.leaves(trained):
            raise ValueError("train.mode='lora' but the model has no LoRA params; set train.lora.targets")
        return trained, frozen
    if mode == "full":
        return params, {}
    raise ValueError(f"train.mode={mode!r}; choose one of {TRAIN_MODES}")


def to_master(trained: Params) -> Params:
    """The fp32 master copy of the trained params (bf16 compute casts them per matmul)."""
    return jax.tree.map(lambda x: x.astype(jnp.float32), trained)


def init_state(trained: Params, tx: optax.GradientTransformation, rng: jax.Array) -> TrainState:
    """A fresh state at step 0 (called under jit/eval_shape so its shardings follow the params)."""
    master = to_master(trained)
    return TrainState(step=jnp.zeros((), jnp.int32), params=master, opt_state=tx.init(master), rng=rng)


def state_logical_specs(abstract_state: TrainState, param_specs: Params) -> TrainState:
    """Logical PartitionSpecs for every state leaf: optimizer moments follow their param, scalars replicate.

    Optax states hold param-shaped subtrees (mu, nu); they are matched to the param specs by tree
    structure, and every other leaf (counts, step, rng) is replicated.
    """
    param_struct = jax.tree.structure(abstract_state.params)

    def walk(node: Any) -> Any:
        if jax.tree.structure(node) == param_struct and jax.tree.leaves(node):
            return param_specs
        if _is_namedtuple(node):
            return type(node)(*(walk(x) for x in node))
        if isinstance(node, (tuple, list)):
            return type(node)(walk(x) for x in node)
        if isinstance(node, dict):
            return {k: walk(v) for k, v in node.items()}
        if node is None or isinstance(node, optax.MaskedNode):
            return node
        return PartitionSpec()

    return TrainState(step=PartitionSpec(), params=param_specs,
                      opt_state=walk(abstract_state.opt_state), rng=PartitionSpec())


def _is_namedtuple(x: Any) -> bool:
    return isinstance(x, tuple) and hasattr(x, "_fields")
