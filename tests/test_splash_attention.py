"""The Pallas splash kernel (TPU; here through Pallas's interpreter) equals the XLA attention.

The kernel itself is JAX's; what these tests pin down is our mapping of the model's mask (causal by
position, valid keys, documents, sliding window) onto splash's causal / local mask by index plus
segment ids, on the rows the model sends to it: right-padded packed training rows, their
gradients, and left-padded prefills into a KV cache; and, on 8 devices, the shard_map split of rows
and heads under the Partitioner's meshes.
"""
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.linen import meta

from t5x_like.models import llama, splash
from t5x_like.models.api import DecoderModel
from t5x_like.models.config import ModelConfig
from t5x_like.models.llama import Llama, init_params

ROOT = pathlib.Path(__file__).resolve().parents[1]
# GQA (4 query heads over 2 KV heads), as the paper's Mistral / Llama-2-70B
CONFIG = ModelConfig(vocab_size=64, hidden_size=64, intermediate_size=96, num_layers=2, num_heads=4,
                     num_kv_heads=2, head_dim=16, sliding_window=None, max_position_embeddings=512)


def packed_rows(length: int = 256):
    """Two rows of two documents each (170 + 86 tokens), the second right-padded after 211 tokens."""
    rng = np.random.default_rng(0)
    tokens = jnp.asarray(rng.integers(1, 64, (2, length)), jnp.int32)
    split = 170
    documents = jnp.asarray(np.repeat([[0] * split + [1] * (length - split)], 2, axis=0), jnp.int32)
    positions = jnp.asarray([list(range(split)) + list(range(length - split))] * 2, jnp.int32)
    valid = jnp.asarray(np.arange(length)[None] < np.asarray([[length], [211]]))
    return tokens, positions, valid, documents


@pytest.mark.parametrize("window", [None, 40])
def test_splash_hidden_states_equal_xla_attention(window):
    """Packed, right-padded rows with and without a sliding window shorter than the row."""
    config = CONFIG.replace(sliding_window=window)
    params = meta.unbox(init_params(config, jax.random.PRNGKey(2)))
    tokens, positions, valid, documents = packed_rows()
    outputs = {}
    for impl in ("xla", "splash"):
        hidden, _ = Llama(config.replace(attention_impl=impl)).apply(
            {"params": params}, tokens, positions, valid, documents_bt=documents)
        outputs[impl] = np.asarray(hidden)
    mask = np.asarray(valid)
    np.testing.assert_allclose(outputs["splash"][mask], outputs["xla"][mask], atol=2e-5)


def test_splash_gradients_equal_xla_attention():
    """The kernel's backward (dq / dkv kernels) gives XLA attention's gradients of a training loss."""
    config = CONFIG.replace(sliding_window=48)
    params = meta.unbox(init_params(config, jax.random.PRNGKey(3)))
    tokens, positions, valid, _ = packed_rows(128)
    positions = jnp.broadcast_to(jnp.arange(128), (2, 128))

    def loss(p, impl):
        model = DecoderModel(config.replace(attention_impl=impl))
        batch = {"tokens": tokens, "positions": positions, "valid": valid, "weights": valid.astype(jnp.float32)}
        total, weight = model.loss_sums(p, batch, None)
        return total / weight

    grads = {impl: jax.grad(loss)(params, impl) for impl in ("xla", "splash")}
    for ours, ref in zip(jax.tree.leaves(grads["splash"]), jax.tree.leaves(grads["xla"])):
        np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-5)


def test_splash_prefill_equals_xla_prefill():
    """A left-padded prefill of 128 tokens into a longer cache: same logits and valid cache slots."""
    params = meta.unbox(init_params(CONFIG, jax.random.PRNGKey(4)))
    tokens = jnp.asarray(np.random.default_rng(2).integers(1, 64, (2, 128)), jnp.int32)
    valid = jnp.asarray(np.arange(128)[None] >= np.asarray([[0], [37]]))  # row 1 left-padded by 37
    positions = jnp.maximum(jnp.cumsum(valid, axis=1) - 1, 0)
    results = {}
    for impl in ("xla", "splash"):
        model = DecoderModel(CONFIG.replace(attention_impl=impl))
        logits, cache = model.prefill(params, tokens, positions, valid, model.init_cache(2, 160))
        slots = np.asarray(cache["valid"])  # padding slots hold whatever padding computed: never attended
        results[impl] = (np.asarray(logits), np.asarray(cache["k"][1]).transpose(0, 2, 1, 3)[slots],
                         np.asarray(cache["v"][0]).transpose(0, 2, 1, 3)[slots], slots)
    for ours, ref in zip(results["splash"], results["xla"]):
        np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_splash_only_where_its_mask_is_exact():
    """auto picks splash for long TPU rows without branches; branched rows, filled caches, lengths
    off the 128-lane blocks and other backends get what "auto" gives them on an accelerator."""
    long = llama.ATTENTION_CHUNK * 2
    assert llama.resolve_attention_impl("auto", long, "tpu", splash_ok=True) == "splash"
    assert llama.resolve_attention_impl("auto", long, "tpu", splash_ok=False) == "chunked"
    assert llama.resolve_attention_impl("auto", long + 1, "tpu", splash_ok=True) == "chunked"
    assert llama.resolve_attention_impl("auto", long, "gpu", splash_ok=True) == "chunked"
    assert llama.resolve_attention_impl("auto", llama.ATTENTION_CHUNK, "tpu", splash_ok=True) == "xla"
    assert llama.resolve_attention_impl("auto", long, "cpu", splash_ok=True) == "blocked"
    assert llama.resolve_attention_impl("splash", 128, "cpu", splash_ok=True) == "splash"
    assert llama.resolve_attention_impl("splash", 1, "tpu", splash_ok=False) == "xla"  # a decode step
    assert llama.resolve_attention_impl("splash", long, "cpu", splash_ok=False) == "chunked"
    assert splash.block_size(4096) == 512 and splash.block_size(384) == 128


def test_splash_on_meshes_equals_one_device():
    """8 CPU devices, meshes (8,1,1), (2,2,2), (1,4,2) and (1,2,4) (8 query / 4 KV heads): the
    shard_map over rows and heads gives the single-device hidden states and gradients."""
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, str(ROOT / "tests" / "splash_mesh_worker.py")], env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "meshes checked: (8, 1, 1) (2, 2, 2) (1, 4, 2) (1, 2, 4)" in result.stdout, result.stdout
