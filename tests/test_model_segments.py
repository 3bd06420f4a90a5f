"""Packed branches (shared prefix + several continuations in one row) equal separate forwards."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.linen import meta

from t5x_like.models.config import ModelConfig
from t5x_like.models import llama
from t5x_like.models.llama import Llama, init_params

CONFIG = ModelConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_layers=2, num_heads=4,
                     num_kv_heads=2, head_dim=8, sliding_window=None)


def _forward(params, tokens, positions, segments=None):
    model = Llama(CONFIG)
    hidden, _ = model.apply({"params": params}, jnp.asarray([tokens]), jnp.asarray([positions]),
                            segments_bt=None if segments is None else jnp.asarray([segments]))
    return np.asarray(model.apply({"params": params}, hidden, method=Llama.logits))[0]


def test_packed_branches_match_separate_sequences():
    params = meta.unbox(init_params(CONFIG, jax.random.PRNGKey(0)))
    prefix, branch_a, branch_b = [5, 9, 2, 7], [11, 3], [4, 8, 60]
    n = len(prefix)
    packed = prefix + branch_a + branch_b
    positions = list(range(n)) + list(range(n, n + 2)) + list(range(n, n + 3))
    segments = [0] * n + [1, 1] + [2, 2, 2]
    logits = _forward(params, packed, positions, segments)
    alone_a = _forward(params, prefix + branch_a, list(range(n + 2)))
    alone_b = _forward(params, prefix + branch_b, list(range(n + 3)))
    np.testing.assert_allclose(logits[:n + 2], alone_a, atol=1e-5)
    np.testing.assert_allclose(logits[n + 2:], alone_b[n:], atol=1e-5)
    # without segments branch b would see branch a's tokens: the results must differ
    unsegmented = _forward(params, packed, positions)
    assert np.abs(unsegmented[n + 2:] - alone_b[n:]).max() > 1e-3


def test_packed_documents_match_separate_sequences():
    """Independent sequences in one row (documents) each equal their own forward, branches included."""
    params = meta.unbox(init_params(CONFIG, jax.random.PRNGKey(1)))
    first, second = [7, 3, 9, 1, 5], [8, 2, 6]
    prefix, branch_a, branch_b = [4, 4, 10], [12], [13, 14]
    tokens = first + second + prefix + branch_a + branch_b
    positions = [0, 1, 2, 3, 4] + [0, 1, 2] + [0, 1, 2] + [3] + [3, 4]
    segments = [0] * 11 + [1] + [2, 2]
    documents = [0] * 5 + [1] * 3 + [2] * 6
    model = Llama(CONFIG)
    hidden, _ = model.apply({"params": params}, jnp.asarray([tokens]), jnp.asarray([positions]),
                            segments_bt=jnp.asarray([segments]), documents_bt=jnp.asarray([documents]))
    logits = np.asarray(model.apply({"params": params}, hidden, method=Llama.logits))[0]
    np.testing.assert_allclose(logits[:5], _forward(params, first, list(range(5))), atol=1e-5)
    np.testing.assert_allclose(logits[5:8], _forward(params, second, list(range(3))), atol=1e-5)
    np.testing.assert_allclose(logits[8:12], _forward(params, prefix + branch_a, list(range(4))), atol=1e-5)
    np.testing.assert_allclose(logits[12:], _forward(params, prefix + branch_b, list(range(5)))[3:], atol=1e-5)


@pytest.mark.parametrize("impl", ["blocked", "chunked"])
@pytest.mark.parametrize("window", [None, 40])
def test_blocked_attention_equals_dot_product_attention(window, impl, monkeypatch):
    """The CPU query-blocked and the accelerators' chunked attention give the same hidden states as
    jax.nn.dot_product_attention on long right-padded, packed rows (several blocks or chunks, the last
    one partial, a sliding window shorter than the row)."""
    monkeypatch.setattr(llama, "ATTENTION_CHUNK", 128)  # 300 tokens: chunks of 128, 128 and 44 (+84 padding)
    config = CONFIG.replace(sliding_window=window, max_position_embeddings=512)
    params = meta.unbox(init_params(config, jax.random.PRNGKey(2)))
    rng = np.random.default_rng(0)
    tokens = jnp.asarray(rng.integers(1, 64, (2, 300)), jnp.int32)
    documents = jnp.asarray(np.repeat([[0] * 170 + [1] * 130], 2, axis=0), jnp.int32)
    positions = jnp.asarray([list(range(170)) + list(range(130))] * 2, jnp.int32)
    valid = jnp.asarray(np.arange(300)[None] < np.asarray([[300], [211]]))
    outputs = {}
    for name in ("xla", impl):
        model = Llama(config.replace(attention_impl=name))
        hidden, _ = model.apply({"params": params}, tokens, positions, valid, documents_bt=documents)
        outputs[name] = np.asarray(hidden)
    mask = np.asarray(valid)
    np.testing.assert_allclose(outputs[impl][mask], outputs["xla"][mask], atol=2e-5)


def test_chunked_attention_gradients_equal_dot_product_attention(monkeypatch):
    """Training through chunked attention (rematerialised per chunk) gives XLA attention's gradients."""
    monkeypatch.setattr(llama, "ATTENTION_CHUNK", 16)
    config = CONFIG.replace(sliding_window=20)
    params = meta.unbox(init_params(config, jax.random.PRNGKey(3)))
    tokens = jnp.asarray(np.random.default_rng(1).integers(1, 64, (2, 40)), jnp.int32)
    positions = jnp.broadcast_to(jnp.arange(40), (2, 40))
    valid = jnp.asarray(np.arange(40)[None] < np.asarray([[40], [29]]))

    def loss(p, impl):
        hidden, _ = Llama(config.replace(attention_impl=impl)).apply({"params": p}, tokens, positions, valid)
        return jnp.sum(jnp.where(valid[..., None], hidden, 0.0) ** 2)

    grads = {impl: jax.grad(loss)(params, impl) for impl in ("xla", "chunked")}
    for ours, ref in zip(jax.tree.leaves(grads["chunked"]), jax.tree.leaves(grads["xla"])):
        np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4)


def test_auto_attention_chunks_long_rows_on_accelerators_only():
    assert llama.resolve_attention_impl("auto", 4096, "cpu") == "blocked"
    assert llama.resolve_attention_impl("auto", llama.ATTENTION_CHUNK, "tpu") == "xla"
    assert llama.resolve_attention_impl("auto", llama.ATTENTION_CHUNK + 1, "tpu") == "chunked"
    assert llama.resolve_attention_impl("cudnn", 4096, "gpu") == "cudnn"


def test_chunked_prefill_equals_unchunked(monkeypatch):
    """A long left-padded prefill into a KV cache, chunked, gives the same logits and cache."""
    from t5x_like.models.api import DecoderModel

    monkeypatch.setattr(llama, "ATTENTION_CHUNK", 8)
    params = meta.unbox(init_params(CONFIG, jax.random.PRNGKey(4)))
    tokens = jnp.asarray(np.random.default_rng(2).integers(1, 64, (2, 21)), jnp.int32)
    valid = jnp.asarray(np.arange(21)[None] >= np.asarray([[0], [6]]))  # row 1 left-padded by 6
    positions = jnp.maximum(jnp.cumsum(valid, axis=1) - 1, 0)
    results = {}
    for impl in ("xla", "chunked"):
        model = DecoderModel(CONFIG.replace(attention_impl=impl))
        logits, cache = model.prefill(params, tokens, positions, valid, model.init_cache(2, 32))
        results[impl] = (np.asarray(logits), np.asarray(cache["k"][1]))
    np.testing.assert_allclose(results["chunked"][0], results["xla"][0], atol=1e-5)
    np.testing.assert_allclose(results["chunked"][1], results["xla"][1], atol=1e-6)
