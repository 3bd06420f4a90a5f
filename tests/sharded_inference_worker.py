"""Run in a fresh process with 8 CPU devices: scores and greedy generations of two tiny models on
several meshes, written as JSON for tests/test_inference_sharding.py (which compares them)."""
from __future__ import annotations

import json
import os
import sys

import flax.linen as nn
import jax
import numpy as np

from configs.base import get_partitioning_config
from t5x_like import hf_io
from t5x_like.decoding import Generator
from t5x_like.models.api import DecoderModel
from t5x_like.models.config import ModelConfig
from t5x_like.partitioning import Partitioner, create_mesh, rules_from_config
from t5x_like.scoring import Scorer

SHAPE = dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_layers=2, num_heads=8, num_kv_heads=4,
             head_dim=8, max_position_embeddings=128)
MODELS = {  # GQA Llama with tied embeddings; untied Mistral whose window (8) is shorter than the prompts
    "llama_tied": ModelConfig(**SHAPE, model_type="llama", tie_word_embeddings=True),
    "mistral_window": ModelConfig(**SHAPE, model_type="mistral", sliding_window=8, tie_word_embeddings=False),
}
MESHES = ((1, 1, 1), (8, 1, 1), (2, 2, 2), (1, 4, 2), (1, 2, 4))
PROMPT_LENGTHS = (5, 12, 20, 1, 33, 7, 9, 15, 26, 3)
NEW_TOKENS = 12


def score_requests() -> list[tuple[list[int], list[int]]]:
    """Multiple-choice groups (one context, several options: packed as branches) and lone requests of
    mixed lengths: with pack_length=64 several documents share each row."""
    rng = np.random.default_rng(0)
    requests = []
    for n_context in (9, 17, 30):
        context = rng.integers(1, 256, n_context).tolist()
        requests += [(context, rng.integers(1, 256, k).tolist()) for k in (1, 3, 2, 4)]
    requests += [(rng.integers(1, 256, c).tolist(), rng.integers(1, 256, k).tolist())
                 for c, k in ((3, 2), (40, 5), (11, 1), (70, 6), (5, 3), (22, 2), (100, 8))]
    return requests


def partitioner(shape: tuple[int, int, int]) -> Partitioner:
    devices = jax.devices()[:1] if shape == (1, 1, 1) else jax.devices()
    return Partitioner(create_mesh(shape, devices), rules_from_config(get_partitioning_config().rules))


def main(out_dir: str) -> None:
    assert jax.device_count() == 8, "run with XLA_FLAGS=--xla_force_host_platform_device_count=8"
    rng = np.random.default_rng(1)
    prompts = [rng.integers(3, 256, n).tolist() for n in PROMPT_LENGTHS]
    results = {"requests": score_requests(), "prompts": prompts, "models": {}}
    for name, config in MODELS.items():
        params = nn.meta.unbox(DecoderModel(config).init(jax.random.PRNGKey(3)))
        hf_io.save_params(params, config, os.path.join(out_dir, name))
        per_mesh = {}
        for shape in MESHES:
            if config.num_kv_heads % shape[2]:
                continue
            p = partitioner(shape)
            scorer = Scorer(DecoderModel(config), params, partitioner=p, batch_size=4, max_length=128, pack_length=64)
            scores = scorer.score_tokens(results["requests"], progress=False)
            generator = Generator(DecoderModel(config), params, partitioner=p, eos_ids=(), pad_id=0, batch_size=4,
                                  max_length=128)
            generations = generator.generate_tokens(prompts, [NEW_TOKENS] * len(prompts), progress=False)
            shardings = {jax.tree_util.keystr(k): str(v.sharding.spec)
                         for k, v in jax.tree_util.tree_leaves_with_path(scorer.params)}
            per_mesh["x".join(map(str, shape))] = {
                "logprob": [s.logprob for s in scores], "is_greedy": [s.is_greedy for s in scores],
                "tokens": [list(g.tokens) for g in generations], "param_specs": shardings,
                "batches": scorer.stats["batches"], "rows_per_batch": scorer.rows(64)}
        results["models"][name] = per_mesh
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main(sys.argv[1])
