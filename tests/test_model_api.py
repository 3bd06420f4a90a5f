"""Every jitted program goes through the one model API, and the evaluation path honours the model
section's numerics (param_dtype, attention impl, remat)."""
import pathlib
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from t5x_like import hf_io
from t5x_like.evaluation import models as ev_models
from t5x_like.models.api import DecoderModel
from t5x_like.models.config import ModelConfig
from t5x_like.partitioning import Partitioner

ROOT = pathlib.Path(__file__).resolve().parents[1] / "t5x_like"
NETWORK_FILES = {ROOT / "models" / "llama.py", ROOT / "models" / "api.py"}
TINY = dict(vocab_size=211, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4, num_kv_heads=2,
            head_dim=8, max_position_embeddings=64, model_type="llama")


def test_no_module_but_the_api_runs_the_network():
    offenders = []
    for path in ROOT.rglob("*.py"):
        if path in NETWORK_FILES:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"\.apply\(\{\"params\"|\bLlama\(|method=Llama\.", line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "call t5x_like.models.api.DecoderModel instead:\n" + "\n".join(offenders)


def test_trainer_scorer_and_generator_hold_a_decoder_model():
    from t5x_like import decoding, scoring, trainer

    config = ModelConfig(**TINY)
    params = nn.meta.unbox(DecoderModel(config).init(jax.random.PRNGKey(0)))
    assert isinstance(scoring.Scorer(DecoderModel(config), params).model, DecoderModel)
    assert isinstance(decoding.Generator(DecoderModel(config), params, eos_ids=(), pad_id=0).model, DecoderModel)
    step = trainer.build_eval_step(DecoderModel(config))
    batch = {"tokens": jnp.ones((1, 8), jnp.int32), "positions": jnp.arange(8)[None], "valid": jnp.ones((1, 8), bool),
             "weights": jnp.ones((1, 8), jnp.float32)}
    nll, weight = step({}, params, batch)
    expected = DecoderModel(config).loss_sums(params, batch, None)
    np.testing.assert_allclose([nll, weight], expected, rtol=1e-6)


def test_evaluation_loads_with_the_model_sections_numerics(tmp_path, tokenizers_dir):
    config = ModelConfig(**{**TINY, "vocab_size": 32000})
    params = nn.meta.unbox(DecoderModel(config).init(jax.random.PRNGKey(0)))
    hf_io.save_params(params, config, str(tmp_path / "m"), tokenizer_dir=str(tokenizers_dir / "llama2"))
    section = ml_collections.ConfigDict({"dtype": "bfloat16", "param_dtype": "bfloat16", "remat_policy": "full",
                                         "attention_impl": "xla"})
    pool = ev_models.Engines({"base": ev_models.ModelSpec("base", str(tmp_path / "m"))}, model_section=section,
                              partitioner=Partitioner.single_device(), options={}, max_new_tokens={},
                              max_memory_fraction=None)
    engine = pool.get("base")
    assert {x.dtype for x in jax.tree.leaves(engine.params)} == {jnp.dtype(jnp.bfloat16)}
    c = engine.config
    assert (c.dtype, c.param_dtype, c.remat_policy, c.attention_impl) == ("bfloat16", "bfloat16", "full", "xla")
