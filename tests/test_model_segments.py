"""Packed branches (shared prefix + several continuations in one row) equal separate forwards."""
import jax
import jax.numpy as jnp
import numpy as np
from flax.linen import meta

from t5x_like.models.config import ModelConfig
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
