"""Pallas splash (flash) attention for TPU: softmax attention without the (T, S) scores in HBM.

Used for rows without branches (training rows, generation prefills from an empty cache) whose
length is a multiple of the kernel's 128-lane blocks: there the model's mask (causal by position,
valid keys, same document, sliding window) is exactly splash's static causal / local mask by array
index plus segment ids, because each document's positions are consecutive at increasing indices.
Packed scoring rows (branches continuing one prefix) are not expressible that way and stay on the
chunked XLA attention. Under a mesh the kernel runs per shard (`jax.shard_map`) with batch rows and
heads split as the rules table splits the activations, as MaxText does; off a TPU the same kernel
runs through Pallas's interpreter (slow: tests only).
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as kernel_lib
from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_mask as mask_lib
from jax.sharding import PartitionSpec

LANES = 128  # a row length splash can take is a multiple of this
MAX_BLOCK = 512  # query / key block of the kernel (MaxText's default for 128-wide heads)
PADDING_SEGMENT = -1  # segment id of invalid (padding) tokens: they see only each other


def supports(queries: int) -> bool:
    """Whether a row of `queries` tokens fits the kernel's blocks."""
    return queries % LANES == 0


def segment_ids(valid_bt: jax.Array, documents_bt: jax.Array | None) -> jax.Array:
    """int32 (B, T): the token's document (0 for unpacked rows) where valid, PADDING_SEGMENT elsewhere."""
    documents = jnp.zeros(valid_bt.shape, jnp.int32) if documents_bt is None else documents_bt.astype(jnp.int32)
    return jnp.where(valid_bt, documents, PADDING_SEGMENT)


def block_size(queries: int) -> int:
    """The largest block of at most MAX_BLOCK that divides the row."""
    return next(b for b in (MAX_BLOCK, 256, LANES) if queries % b == 0)


def local_splash(q_bnth: jax.Array, k_bkth: jax.Array, v_bkth: jax.Array, segments_bt: jax.Array,
                 sliding_window: int | None, interpret: bool) -> jax.Array:
    """Splash attention on one shard's rows and heads (head-major operands, queries pre-scaled)."""
    _, heads, t, _ = q_bnth.shape
    if sliding_window is None or sliding_window >= t:
        mask = mask_lib.CausalMask((t, t))
    else:  # key j is visible to query i when i - (window - 1) <= j <= i
        mask = mask_lib.LocalMask((t, t), window_size=(sliding_window - 1, 0), offset=0)
    block = block_size(t)
    blocks = kernel_lib.BlockSizes(block_q=block, block_kv=block, block_kv_compute=block, block_q_dkv=block,
                                   block_kv_dkv=block, block_kv_dkv_compute=block, block_q_dq=block,
                                   block_kv_dq=block)
    kernel = kernel_lib.make_splash_mha(mask_lib.MultiHeadMask([mask] * heads), block_sizes=blocks, head_shards=1,
                                        q_seq_shards=1, interpret=interpret)
    segments = kernel_lib.SegmentIds(q=segments_bt, kv=segments_bt)
    return jax.vmap(kernel)(q_bnth, k_bkth, v_bkth, segment_ids=segments)


def splash_attention(q_btnh: jax.Array, k_btkh: jax.Array, v_btkh: jax.Array, segments_bt: jax.Array,
                     sliding_window: int | None, interpret: bool) -> jax.Array:
    """Causal GQA attention of (B, T, N, H) queries over the row's own keys, masked by `segments_bt`.

    Within each segment a query sees the keys at its index and before (and within the sliding
    window); the output has the queries' shape and dtype. `interpret`: run the kernel through
    Pallas's interpreter (any backend but a TPU).
    """
    head_dim = q_btnh.shape[-1]
    q_bnth = jnp.transpose(q_btnh, (0, 2, 1, 3)) * jnp.asarray(head_dim ** -0.5, q_btnh.dtype)
    k_bkth, v_bkth = jnp.transpose(k_btkh, (0, 2, 1, 3)), jnp.transpose(v_btkh, (0, 2, 1, 3))
    body = lambda q, k, v, s: local_splash(q, k, v, s, sliding_window, interpret)
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
        out_bnth = body(q_bnth, k_bkth, v_bkth, segments_bt)
    else:
        # one spec per operand: Flax gives a mesh axis to only one name of a spec (heads and KV heads share one)
        q_spec = nn.logical_to_mesh_axes(("activation_batch", "activation_heads", None, None))
        kv_spec = nn.logical_to_mesh_axes(("activation_batch", "activation_kv_heads", None, None))
        batch = q_spec[0]
        out_bnth = jax.shard_map(body, in_specs=(q_spec, kv_spec, kv_spec, PartitionSpec(batch, None)),
                                 out_specs=q_spec, check_vma=False)(q_bnth, k_bkth, v_bkth, segments_bt)
    return jnp.transpose(out_bnth, (0, 2, 1, 3))
