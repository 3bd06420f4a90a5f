"""hf_io: HF safetensors directories <-> our params (round trips, shardings, dtypes, bad inputs).

The models are the transformers-written fixtures of tests/fixtures/parity (see test_model_parity.py).
"""
from __future__ import annotations

import json
import logging
import os
import pathlib
import shutil
import subprocess
import sys

import flax.linen as nn
import jax
import ml_dtypes
import numpy as np
import pytest
import safetensors.numpy
from flax import traverse_util
from safetensors import safe_open

from t5x_like import hf_io
from t5x_like.models.config import LoraConfig, ModelConfig, UnsupportedConfigError
from t5x_like.models.llama import init_params

REPO = pathlib.Path(__file__).resolve().parents[1]
PARITY = REPO / "tests" / "fixtures" / "parity"


def flat(params) -> dict[tuple[str, ...], np.ndarray]:
    return {k: np.asarray(v) for k, v in traverse_util.flatten_dict(params).items()}


def assert_same_params(a, b):
    fa, fb = flat(a), flat(b)
    assert fa.keys() == fb.keys()
    for k in fa:
        assert fa[k].dtype == fb[k].dtype and np.array_equal(fa[k], fb[k]), "/".join(k)


def copy_case(case: str, tmp_path: pathlib.Path) -> pathlib.Path:
    out = tmp_path / case
    shutil.copytree(PARITY / case, out)
    return out


def hf_tensors(file: pathlib.Path) -> dict[str, np.ndarray]:
    return safetensors.numpy.load_file(str(file))


def error_of(fn, *args, **kwargs) -> str:
    with pytest.raises(hf_io.CheckpointError) as e:
        fn(*args, **kwargs)
    message = str(e.value)
    assert "\n" not in message, "errors are one line"
    return message


# --------------------------------------------------------------------------------------------
# Layout
# --------------------------------------------------------------------------------------------
def test_loaded_params_are_the_hf_tensors_in_our_layout():
    config, params = hf_io.load_model_dir(str(PARITY / "llama_gqa"))
    hf = hf_tensors(PARITY / "llama_gqa" / "model.safetensors")
    p = flat(params)
    np.testing.assert_array_equal(p["embed_tokens", "embedding"], hf["model.embed_tokens.weight"])
    np.testing.assert_array_equal(p["layers_1", "self_attn", "k_proj", "kernel"],
                                  hf["model.layers.1.self_attn.k_proj.weight"].T)
    np.testing.assert_array_equal(p["layers_0", "mlp", "down_proj", "kernel"],
                                  hf["model.layers.0.mlp.down_proj.weight"].T)
    np.testing.assert_array_equal(p["layers_0", "post_attention_layernorm", "scale"],
                                  hf["model.layers.0.post_attention_layernorm.weight"])
    np.testing.assert_array_equal(p["lm_head", "kernel"], hf["lm_head.weight"].T)
    assert len(p) == len(hf)
    abstract = nn.meta.unbox(jax.eval_shape(lambda: init_params(config, jax.random.key(0))))
    assert jax.tree.map(lambda x: x.shape, params) == jax.tree.map(lambda x: x.shape, abstract)


def test_hf_names_map_both_ways():
    for name in ("model.embed_tokens.weight", "model.layers.12.self_attn.o_proj.weight",
                 "model.layers.3.mlp.gate_proj.weight", "model.layers.0.input_layernorm.weight",
                 "model.norm.weight", "lm_head.weight"):
        path, transpose = hf_io.hf_to_path(name)
        assert hf_io.path_to_hf(path) == (name, transpose)
    assert hf_io.hf_to_path("model.layers.0.self_attn.q_proj.bias") is None


def test_bf16_checkpoint_loads_to_any_dtype():
    hf = {}
    with safe_open(str(PARITY / "llama_bf16" / "model.safetensors"), framework="flax") as f:
        for k in f.keys():
            hf[k] = np.asarray(f.get_tensor(k))
    assert hf["model.norm.weight"].dtype == ml_dtypes.bfloat16
    config = ModelConfig.from_hf_dir(str(PARITY / "llama_bf16"))
    as_bf16 = flat(hf_io.load_params(str(PARITY / "llama_bf16"), config, dtype="bfloat16"))
    as_f32 = flat(hf_io.load_params(str(PARITY / "llama_bf16"), config))
    key = ("layers_0", "self_attn", "q_proj", "kernel")
    assert as_bf16[key].dtype == ml_dtypes.bfloat16 and as_f32[key].dtype == np.float32
    np.testing.assert_array_equal(as_bf16[key], hf["model.layers.0.self_attn.q_proj.weight"].T)
    np.testing.assert_array_equal(as_f32[key], hf["model.layers.0.self_attn.q_proj.weight"].T.astype(np.float32))


def test_sharded_index_loads_same_as_single_file(tmp_path):
    config, sharded = hf_io.load_model_dir(str(PARITY / "llama_sharded"))
    single = tmp_path / "single"
    single.mkdir()
    tensors = {}
    for file in sorted((PARITY / "llama_sharded").glob("*.safetensors")):
        tensors.update(hf_tensors(file))
    safetensors.numpy.save_file(tensors, str(single / "model.safetensors"))
    assert_same_params(sharded, hf_io.load_params(str(single), config))


# --------------------------------------------------------------------------------------------
# save_params round trips
# --------------------------------------------------------------------------------------------
def test_save_then_load_is_identical_and_keeps_hf_names(tmp_path):
    config, params = hf_io.load_model_dir(str(PARITY / "llama_gqa"))
    out = hf_io.save_params(params, config, str(tmp_path / "export"))
    assert sorted(os.listdir(out)) == ["config.json", "generation_config.json", "model.safetensors"]
    assert ModelConfig.from_hf_dir(out) == config
    assert_same_params(hf_io.load_params(out, config), params)
    original = hf_tensors(PARITY / "llama_gqa" / "model.safetensors")
    exported = hf_tensors(tmp_path / "export" / "model.safetensors")
    assert original.keys() == exported.keys()
    assert all(np.array_equal(original[k], exported[k]) for k in original)
    assert json.loads((tmp_path / "export" / "generation_config.json").read_text()) == {
        "bos_token_id": 0, "eos_token_id": 1}


def test_save_sharded_with_index(tmp_path):
    config, params = hf_io.load_model_dir(str(PARITY / "mistral_window"))
    out = tmp_path / "export"
    hf_io.save_params(params, config, str(out), max_shard_bytes=20_000)
    index = json.loads((out / "model.safetensors.index.json").read_text())
    files = sorted(set(index["weight_map"].values()))
    assert len(files) > 2 and sorted(p.name for p in out.glob("*.safetensors")) == files
    assert all(os.path.getsize(out / f) < 20_000 + 4096 for f in files)
    assert index["metadata"]["total_size"] == sum(v.nbytes for v in flat(params).values())
    assert_same_params(hf_io.load_params(str(out), config), params)


def test_save_bf16_tied_with_tokenizer(tmp_path, tokenizers_dir):
    config, params = hf_io.load_model_dir(str(PARITY / "llama_tied"))
    out = tmp_path / "export"
    hf_io.save_params(params, config, str(out), dtype="bfloat16", tokenizer_dir=str(tokenizers_dir / "llama2"))
    assert {"tokenizer.json", "tokenizer.model", "tokenizer_config.json"} <= set(os.listdir(out))
    assert json.loads((out / "config.json").read_text())["torch_dtype"] == "bfloat16"
    with safe_open(str(out / "model.safetensors"), framework="flax") as f:
        assert "lm_head.weight" not in f.keys()
        assert f.get_slice("model.embed_tokens.weight").get_dtype() == "BF16"
    reloaded = hf_io.load_params(str(out), config)
    expected = jax.tree.map(lambda x: np.asarray(x).astype(ml_dtypes.bfloat16).astype(np.float32), params)
    assert_same_params(reloaded, expected)


def test_save_merges_lora_adapters(tmp_path):
    config = ModelConfig.from_hf_dir(str(PARITY / "llama_gqa"), lora=LoraConfig(rank=2, alpha=4.0, targets=("v_proj",)))
    params = jax.tree.map(np.asarray, nn.meta.unbox(init_params(config, jax.random.key(1))))
    v = params["layers_0"]["self_attn"]["v_proj"]
    v["lora_b"] = np.random.default_rng(0).normal(size=v["lora_b"].shape).astype(np.float32)
    hf_io.save_params(params, config, str(tmp_path / "export"))
    saved = hf_tensors(tmp_path / "export" / "model.safetensors")["model.layers.0.self_attn.v_proj.weight"]
    np.testing.assert_allclose(saved.T, v["kernel"] + 2.0 * v["lora_a"] @ v["lora_b"], rtol=1e-6, atol=1e-7)


def test_save_refuses_existing_dir_and_leaves_nothing_on_error(tmp_path):
    config, params = hf_io.load_model_dir(str(PARITY / "llama_gqa"))
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("x")
    assert "exists and is not empty" in error_of(hf_io.save_params, params, config, str(tmp_path / "taken"))
    hf_io.save_params(params, config, str(tmp_path / "taken"), overwrite=True)
    assert not (tmp_path / "taken" / "keep.txt").exists()
    bad = jax.tree.map(lambda x: x, params)
    bad["norm"]["scale"] = np.ones(7, np.float32)
    message = error_of(hf_io.save_params, bad, config, str(tmp_path / "bad"))
    assert "wrongly shaped: norm/scale [7] != [32]" in message
    assert sorted(os.listdir(tmp_path)) == ["taken"]  # no output, no temp dir


# --------------------------------------------------------------------------------------------
# Shardings (a separate process with 4 CPU devices)
# --------------------------------------------------------------------------------------------
_SHARDED_SCRIPT = r"""
import sys, numpy as np, jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from flax import traverse_util
from t5x_like import hf_io
src, out = sys.argv[1], sys.argv[2]
assert jax.device_count() == 4
mesh = Mesh(np.array(jax.devices()).reshape(2, 2), ("data", "model"))
config, reference = hf_io.load_model_dir(src)
specs = {k: P("data", "model") if v.ndim == 2 else P("model") for k, v in traverse_util.flatten_dict(reference).items()}
shardings = traverse_util.unflatten_dict({k: NamedSharding(mesh, s) for k, s in specs.items()})
params = hf_io.load_params(src, config, shardings=shardings)
for k, v in traverse_util.flatten_dict(params).items():
    assert v.sharding == NamedSharding(mesh, specs[k]), k
    assert len({s.device for s in v.addressable_shards}) == 4
    assert np.array_equal(np.asarray(v), np.asarray(traverse_util.flatten_dict(reference)[k])), k
    assert v.addressable_shards[0].data.shape[0] == v.shape[0] // 2, k
hf_io.save_params(params, config, out, max_shard_bytes=30_000)
back = hf_io.load_params(out, config, shardings=NamedSharding(mesh, P()))
for k, v in traverse_util.flatten_dict(back).items():
    assert np.array_equal(np.asarray(v), np.asarray(traverse_util.flatten_dict(reference)[k])), k
print("ok")
"""


def test_load_to_shardings_and_save_from_them(tmp_path):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", _SHARDED_SCRIPT, str(PARITY / "llama_gqa"), str(tmp_path / "out")],
                            capture_output=True, text=True, env=env, cwd=REPO)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]


_TWO_PROCESS_SCRIPT = r"""
import sys
import jax
jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.config.update("jax_num_cpu_devices", 2)
pid, port, src, out = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
jax.distributed.initialize(f"localhost:{port}", num_processes=2, process_id=pid)
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from flax import traverse_util
from t5x_like import hf_io
from t5x_like.models.config import ModelConfig
mesh = Mesh(np.array(jax.devices()).reshape(2, 2), ("data", "model"))
config = ModelConfig.from_hf_dir(src)
shardings = traverse_util.unflatten_dict({k: NamedSharding(mesh, P("data", "model") if len(s) == 2 else P("model"))
                                          for k, s in hf_io.expected_shapes(config).items()})
params = hf_io.load_params(src, config, shardings=shardings)
assert not params["layers_0"]["mlp"]["up_proj"]["kernel"].is_fully_addressable
hf_io.save_params(params, config, out, max_shard_bytes=30_000)
print("ok")
"""


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_load_to_global_shardings_and_export(tmp_path):
    """Multi-host: each process places only its shards; the export (process 0) equals the source files."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(REPO)}
    env.pop("XLA_FLAGS", None)
    args = [str(_free_port()), str(PARITY / "llama_gqa"), str(tmp_path / "out")]
    procs = [subprocess.Popen([sys.executable, "-c", _TWO_PROCESS_SCRIPT, str(i), *args], env=env, cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    outputs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0 and out.strip().endswith("ok"), err[-3000:]
    exported = {}
    for file in (tmp_path / "out").glob("*.safetensors"):
        exported.update(hf_tensors(file))
    original = hf_tensors(PARITY / "llama_gqa" / "model.safetensors")
    assert exported.keys() == original.keys()
    assert all(np.array_equal(exported[k], original[k]) for k in original)


def test_shardings_must_cover_every_param():
    config = ModelConfig.from_hf_dir(str(PARITY / "llama_gqa"))
    sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    message = error_of(hf_io.load_params, str(PARITY / "llama_gqa"), config, shardings={"norm": {"scale": sharding}})
    assert "lack" in message and "embed_tokens/embedding" in message


# --------------------------------------------------------------------------------------------
# Bad inputs: one clear error naming the file and the problem
# --------------------------------------------------------------------------------------------
def test_missing_directory(tmp_path):
    config = ModelConfig.from_hf_dir(str(PARITY / "llama_gqa"))
    assert f"{tmp_path / 'nope'}: model directory does not exist" in error_of(
        hf_io.load_params, str(tmp_path / "nope"), config)


def test_missing_config_json(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        hf_io.load_model_dir(str(tmp_path))


def test_no_weights_or_only_pytorch_bin(tmp_path):
    case = copy_case("llama_gqa", tmp_path)
    (case / "model.safetensors").unlink()
    config = ModelConfig.from_hf_dir(str(case))
    assert "no model.safetensors or model.safetensors.index.json" in error_of(hf_io.load_params, str(case), config)
    (case / "pytorch_model.bin").write_bytes(b"pickle")
    message = error_of(hf_io.load_params, str(case), config)
    assert "pytorch_model.bin" in message and "safetensors only" in message


def test_truncated_safetensors(tmp_path):
    case = copy_case("llama_gqa", tmp_path)
    file = case / "model.safetensors"
    with open(file, "r+b") as f:
        f.truncate(os.path.getsize(file) - 1000)
    message = error_of(hf_io.load_model_dir, str(case))
    assert str(file) in message and "truncated or corrupt" in message


def test_truncated_shard_of_an_index(tmp_path):
    case = copy_case("llama_sharded", tmp_path)
    file = case / "model-00002-of-00003.safetensors"
    with open(file, "r+b") as f:
        f.truncate(100)
    message = error_of(hf_io.load_model_dir, str(case))
    assert str(file) in message and "truncated or corrupt" in message


def test_index_naming_a_missing_shard_or_tensor(tmp_path):
    case = copy_case("llama_sharded", tmp_path)
    (case / "model-00003-of-00003.safetensors").unlink()
    message = error_of(hf_io.load_model_dir, str(case))
    assert "model.safetensors.index.json" in message and "model-00003-of-00003.safetensors" in message
    case = copy_case("llama_gqa", tmp_path / "b")
    names = list(hf_tensors(case / "model.safetensors"))
    weight_map = {n: "model.safetensors" for n in names} | {"model.layers.9.mlp.up_proj.weight": "model.safetensors"}
    (case / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    message = error_of(hf_io.load_model_dir, str(case))
    assert str(case / "model.safetensors") in message and "model.layers.9.mlp.up_proj.weight" in message
    (case / "model.safetensors.index.json").write_text("{not json")
    assert "not a valid safetensors index" in error_of(hf_io.load_model_dir, str(case))


def test_missing_unexpected_and_wrongly_shaped_reported_together(tmp_path):
    case = copy_case("llama_gqa", tmp_path)
    tensors = hf_tensors(case / "model.safetensors")
    del tensors["model.layers.1.mlp.up_proj.weight"], tensors["model.norm.weight"]
    tensors["model.layers.0.self_attn.q_proj.weight"] = np.zeros((3, 32), np.float32)
    tensors["model.layers.0.self_attn.q_proj.bias"] = np.zeros(32, np.float32)
    tensors["model.layers.2.input_layernorm.weight"] = np.zeros(32, np.float32)
    safetensors.numpy.save_file(tensors, str(case / "model.safetensors"))
    message = error_of(hf_io.load_model_dir, str(case))
    assert message.startswith(f"{case}: checkpoint does not match its config (llama, 2 layers)")
    assert "2 missing: model.layers.1.mlp.up_proj.weight, model.norm.weight" in message
    assert ("2 unexpected: model.layers.0.self_attn.q_proj.bias, model.layers.2.input_layernorm.weight"
            in message)
    assert "1 wrongly shaped: model.layers.0.self_attn.q_proj.weight [3, 32] != [32, 32]" in message


def test_unsupported_architecture_config(tmp_path):
    case = copy_case("llama_gqa", tmp_path)
    hf = json.loads((case / "config.json").read_text())
    (case / "config.json").write_text(json.dumps({**hf, "model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}))
    with pytest.raises(UnsupportedConfigError, match=r"config\.json: model_type='gpt2'"):
        hf_io.load_model_dir(str(case))


def test_tied_checkpoint_with_an_lm_head(tmp_path, caplog):
    """A tied model's lm_head.weight is ignored as transformers does; a differing one is warned about."""
    case = copy_case("llama_tied", tmp_path)
    tensors = hf_tensors(case / "model.safetensors")
    config = ModelConfig.from_hf_dir(str(case))
    tensors["lm_head.weight"] = tensors["model.embed_tokens.weight"].copy()
    tensors["model.layers.0.self_attn.rotary_emb.inv_freq"] = np.ones(4, np.float32)  # old checkpoints' buffer
    safetensors.numpy.save_file(tensors, str(case / "model.safetensors"))
    with caplog.at_level(logging.WARNING):
        params = hf_io.load_params(str(case), config)
    assert "lm_head" not in params and not caplog.records
    tensors["lm_head.weight"] += 1.0
    safetensors.numpy.save_file(tensors, str(case / "model.safetensors"))
    with caplog.at_level(logging.WARNING):
        hf_io.load_params(str(case), config)
    assert "lm_head.weight differs from model.embed_tokens.weight" in caplog.text
    untied = config.replace(tie_word_embeddings=False)
    assert ("lm_head", "kernel") in flat(hf_io.load_params(str(case), untied))
