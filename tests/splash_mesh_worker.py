"""Run in a fresh process with 8 CPU devices: splash attention (Pallas interpreter) under the
Partitioner's meshes equals one device, for hidden states and gradients (tests/test_splash_attention.py)."""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from configs.base import get_partitioning_config
from t5x_like.models.api import DecoderModel
from t5x_like.models.config import ModelConfig
from t5x_like.partitioning import Partitioner, create_mesh, rules_from_config

CONFIG = ModelConfig(vocab_size=64, hidden_size=64, intermediate_size=96, num_layers=2, num_heads=8,
                     num_kv_heads=4, head_dim=16, sliding_window=40, max_position_embeddings=256,
                     attention_impl="splash")
MESHES = ((8, 1, 1), (2, 2, 2), (1, 4, 2), (1, 2, 4))


def batch(rows: int = 8, length: int = 128) -> dict[str, jnp.ndarray]:
    """Right-padded rows of different lengths (a training batch)."""
    rng = np.random.default_rng(0)
    lengths = rng.integers(60, length + 1, rows)
    valid = np.arange(length)[None] < lengths[:, None]
    return {"tokens": jnp.asarray(rng.integers(1, 64, (rows, length)), jnp.int32),
            "positions": jnp.broadcast_to(jnp.arange(length, dtype=jnp.int32), (rows, length)),
            "valid": jnp.asarray(valid), "weights": jnp.asarray(valid, jnp.float32)}


def run(partitioner: Partitioner, params, rows: dict, config: ModelConfig = CONFIG
        ) -> tuple[np.ndarray, list[np.ndarray]]:
    """Hidden states and loss gradients, jitted through the partitioner with the params sharded."""
    model = DecoderModel(config)
    shardings = partitioner.shardings_of(model.abstract_params())
    placed = partitioner.place(nn.meta.unbox(params), nn.meta.unbox(shardings))
    data = partitioner.place(rows, {k: partitioner.batch_sharding(v.ndim) for k, v in rows.items()})

    def both(p, b):
        hidden = model.hidden(p, b["tokens"], b["positions"], b["valid"])
        grads = jax.grad(lambda q: jnp.divide(*model.loss_sums(q, b, None)))(p)
        return hidden, grads

    hidden, grads = partitioner.jit(both, in_shardings=(nn.meta.unbox(shardings), None), out_shardings=None)(
        placed, data)
    return np.asarray(hidden), [np.asarray(g) for g in jax.tree.leaves(grads)]


def main() -> None:
    assert jax.device_count() == 8, "run with XLA_FLAGS=--xla_force_host_platform_device_count=8"
    rules = rules_from_config(get_partitioning_config().rules)
    params = DecoderModel(CONFIG).init(jax.random.PRNGKey(5))
    rows = batch()
    valid = np.asarray(rows["valid"])
    one_device = Partitioner(create_mesh((1, 1, 1), jax.devices()[:1]), rules)
    ref_hidden, ref_grads = run(one_device, params, rows)
    xla_hidden, xla_grads = run(one_device, params, rows, CONFIG.replace(attention_impl="xla"))
    np.testing.assert_allclose(ref_hidden[valid], xla_hidden[valid], atol=2e-5, err_msg="1 device vs xla")
    for ours, ref in zip(ref_grads, xla_grads):
        np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-5, err_msg="1 device vs xla")
    for shape in MESHES:
        hidden, grads = run(Partitioner(create_mesh(shape, jax.devices()), rules), params, rows)
        np.testing.assert_allclose(hidden[valid], ref_hidden[valid], atol=1e-5, err_msg=str(shape))
        for ours, ref in zip(grads, ref_grads):
            np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-6, err_msg=str(shape))
        print(f"mesh {shape}: max |Δ hidden| {np.abs(hidden[valid] - ref_hidden[valid]).max():.2e}", flush=True)
    print("meshes checked: " + " ".join(map(str, MESHES)))


if __name__ == "__main__":
    main()
