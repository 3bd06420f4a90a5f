"""Shared by the evaluation tests: prepared real task data, a tiny random Llama saved as an HF dir, configs."""
from __future__ import annotations

import pathlib
import sys

import jax

from conftest import shared_path

REPO = pathlib.Path(__file__).resolve().parents[1]


def llama2_tokenizer() -> pathlib.Path:
    """The real Llama-2 tokenizer dir in ../shared (the test skips when it is absent)."""
    return shared_path("tokenizers", "llama2")


TINY_FIELDS = dict(architectures=["LlamaForCausalLM"], model_type="llama", vocab_size=32000, hidden_size=64,
                   intermediate_size=172, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                   hidden_act="silu", max_position_embeddings=2048, rms_norm_eps=1e-5, rope_theta=10000.0,
                   tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)
MAX_LENGTH = 1024
BATCH_SIZE = 4


def prepare_data(out: pathlib.Path, data_dir: pathlib.Path, tasks: str, num_test: int,
                 formats: str = "flan,samplegen,gold_pipeline,base_d") -> pathlib.Path:
    """The real offline task data prepared by the data pipeline (carved example pools, no mixture)."""
    sys.path.insert(0, str(REPO))
    from configs.data import offline
    from t5x_like.data import pipeline

    config = offline.get_config()
    config.data_dir, config.tasks, config.num_test, config.formats, config.mixture = (
        str(data_dir), tasks, num_test, formats, "")
    pipeline.prepare(config, out)
    return out


def save_tiny_model(out: pathlib.Path, seed: int) -> pathlib.Path:
    """A random tiny Llama (real model code, init_params) with the real Llama-2 tokenizer, as an HF dir."""
    import flax.linen as nn

    from t5x_like import hf_io
    from t5x_like.models.config import ModelConfig
    from t5x_like.models.llama import init_params

    config = ModelConfig.from_hf_dict(TINY_FIELDS)
    params = nn.meta.unbox(jax.jit(init_params, static_argnums=0)(config, jax.random.key(seed)))
    hf_io.save_params(params, config, str(out), tokenizer_dir=str(llama2_tokenizer()))
    return out


def eval_config(data: pathlib.Path, model_dir: pathlib.Path, **overrides):
    """configs/base.py with the tiny model and small generation budgets; `overrides` are eval keys."""
    sys.path.insert(0, str(REPO))
    from configs import base

    config = base.get_config()
    config.model.name = "tiny"
    config.model.path = str(model_dir)
    e = config.eval
    e.data_dir = str(data)
    e.max_new_tokens_base, e.max_new_tokens_tuned = 12, 16
    e.batch_size, e.shard_size, e.max_length = BATCH_SIZE, 4, MAX_LENGTH
    for key, value in overrides.items():
        e[key] = value
    return config


def cli_args(data: pathlib.Path, model_dir: pathlib.Path, workdir: pathlib.Path, **overrides) -> list[str]:
    """`python -m launch.evaluate` arguments equal to `eval_config(data, model_dir, **overrides)`."""
    config = eval_config(data, model_dir, **overrides)
    flags = [f"--config={REPO / 'configs' / 'base.py'}", f"--workdir={workdir}",
             f"--config.model.name={config.model.name}", f"--config.model.path={config.model.path}"]
    flags += [f"--config.eval.{k}={v}" for k, v in config.eval.items() if v != ""]
    return [sys.executable, "-m", "launch.evaluate", *flags]
