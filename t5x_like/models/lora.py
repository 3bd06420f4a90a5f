"""LoRA: a projection layer with an optional low-rank adapter, and pytree helpers around it.

Adapter weights live next to the frozen kernel (`q_proj/kernel`, `q_proj/lora_a`,
`q_proj/lora_b`), so one params tree describes the model; `split_lora` separates what is
trained from what is frozen, and `merge_lora` folds adapters into kernels for export.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import traverse_util

from t5x_like.models.config import LoraConfig

LORA_LEAVES = ("lora_a", "lora_b")
Params = dict[str, Any]


class Projection(nn.Module):
    """x @ kernel (+ scale * dropout(x) @ lora_a @ lora_b when this layer carries an adapter)."""

    features: int
    kernel_axes: tuple[str, str]
    lora_axes: tuple[str, str] | None = None  # (in, out) logical names of the adapter's outer dims
    lora: LoraConfig | None = None
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    deterministic: bool = True

    @nn.compact
    def __call__(self, x_btd: jax.Array) -> jax.Array:
        d_in = x_btd.shape[-1]
        kernel = self.param(
            "kernel", nn.with_logical_partitioning(nn.initializers.normal(0.02), self.kernel_axes),
            (d_in, self.features), self.param_dtype)
        x = x_btd.astype(self.dtype)
        y_btf = jnp.einsum("...d,df->...f", x, kernel.astype(self.dtype))
        if self.lora is None:
            return y_btf
        in_axis, out_axis = self.lora_axes or self.kernel_axes
        # PEFT's init: A ~ kaiming-uniform(a=sqrt(5)) = U(-1/sqrt(d_in), 1/sqrt(d_in)), B = 0.
        bound = 1.0 / jnp.sqrt(d_in)
        lora_a = self.param(
            "lora_a", nn.with_logical_partitioning(
                lambda k, s, d: jax.random.uniform(k, s, d, -bound, bound), (in_axis, "lora_rank")),
            (d_in, self.lora.rank), self.param_dtype)
        lora_b = self.param(
            "lora_b", nn.with_logical_partitioning(nn.initializers.zeros, ("lora_rank", out_axis)),
            (self.lora.rank, self.features), self.param_dtype)
        x_drop = nn.Dropout(self.lora.dropout)(x, deterministic=self.deterministic)
        low_btr = jnp.einsum("...d,dr->...r", x_drop, lora_a.astype(self.dtype))
        delta_btf = jnp.einsum("...r,rf->...f", low_btr, lora_b.astype(self.dtype))
        return y_btf + self.lora.scale * delta_btf


def _is_lora_path(path: tuple[str, ...]) -> bool:
    return path[-1] in LORA_LEAVES


def split_lora(params: Params) -> tuple[Params, Params]:
    """(frozen base params, adapter params) as two nested dicts with disjoint leaves."""
    flat = traverse_util.flatten_dict(params)
    base = {k: v for k, v in flat.items() if not _is_lora_path(k)}
    lora = {k: v for k, v in flat.items() if _is_lora_path(k)}
    return traverse_util.unflatten_dict(base), traverse_util.unflatten_dict(lora)


def combine(base: Params, lora: Params) -> Params:
    """Inverse of `split_lora`."""
    flat = traverse_util.flatten_dict(base)
    flat.update(traverse_util.flatten_dict(lora))
    return traverse_util.unflatten_dict(flat)


def merge_lora(params: Params, lora: LoraConfig) -> Params:
    """Folds every adapter into its kernel (kernel + scale * A @ B) and drops the adapter leaves."""
    flat = traverse_util.flatten_dict(params)
    out = {}
    for path, value in flat.items():
        if _is_lora_path(path):
            continue
        if path[-1] == "kernel" and path[:-1] + ("lora_a",) in flat:
            a = flat[path[:-1] + ("lora_a",)].astype(jnp.float32)
            b = flat[path[:-1] + ("lora_b",)].astype(jnp.float32)
            value = (value.astype(jnp.float32) + lora.scale * (a @ b)).astype(value.dtype)
        out[path] = value
    return traverse_util.unflatten_dict(out)
