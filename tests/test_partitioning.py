"""Mesh construction, the rules table -> shardings of params / optimizer state, and partitioning errors."""

import pytest

from t5x_like.partitioning import PartitioningError, parse_mesh_shape, resolve_mesh_shape
from train_helpers import run_with_devices


def test_resolve_mesh_shape_fills_the_rest():
    assert resolve_mesh_shape((1, -1, 1), 8) == (1, 8, 1)
    assert resolve_mesh_shape((2, -1, 2), 8) == (2, 2, 2)
    assert resolve_mesh_shape((2, 2, 2), 8) == (2, 2, 2)


@pytest.mark.parametrize("shape, devices, words", [
    ((3, -1, 1), 8, "not divisible by 3"),
    ((2, 2, 1), 8, "4 slots but there are 8"),
    ((-1, -1, 1), 8, "at most one -1"),
    ((1, 8), 8, "needs 3 sizes"),
])
def test_bad_mesh_shapes_are_refused(shape, devices, words):
    with pytest.raises(PartitioningError, match=words):
        resolve_mesh_shape(shape, devices)



def test_parse_mesh_shape_reads_three_sizes_and_names_the_argument():
    assert parse_mesh_shape("2,-1,1") == (2, -1, 1)
    for text in ("1,2", "a,b,c", "1,2,3,4"):
        with pytest.raises(PartitioningError, match=f"--mesh_shape={text!r}: give three integers"):
            parse_mesh_shape(text, "--mesh_shape")


INFERENCE_MESHES = r'''
import json
from t5x_like.partitioning import inference_partitioner
print(json.dumps({"default": dict(inference_partitioner(None, ()).mesh.shape),
                  "given": dict(inference_partitioner((2, -1, 1), ()).mesh.shape)}))
'''


def test_inference_runs_on_one_cpu_device_unless_a_mesh_shape_is_given():
    """XLA's fake CPU devices share the same cores, so inference defaults to one; a shape takes them all."""
    assert run_with_devices(INFERENCE_MESHES, devices=4) == {"default": {"data": 1, "fsdp": 1, "tensor": 1},
                                                             "given": {"data": 2, "fsdp": 2, "tensor": 1}}

GOLDEN = r'''
import json, jax, optax
import flax.linen as nn
from jax.sharding import PartitionSpec as P
from configs import base
from configs.models import tiny
from t5x_like import model_dirs
from t5x_like.models.config import LoraConfig
from t5x_like.models.llama import init_params
from t5x_like.partitioning import Partitioner
from t5x_like.train_state import init_state, split_trainable, state_logical_specs

cfg = base.get_partitioning_config()
cfg.mesh_shape = (2, 2, 2)
part = Partitioner.from_config(cfg)
model = model_dirs.model_config(tiny.get_config()).replace(lora=LoraConfig(rank=4, targets=("q_proj", "v_proj")))
boxed = jax.eval_shape(lambda: init_params(model, jax.random.PRNGKey(0)))
specs = nn.get_partition_spec(boxed)
mesh_specs = jax.tree.map(part.mesh_spec, specs, is_leaf=lambda x: isinstance(x, P))
trained, frozen = split_trainable(nn.meta.unbox(boxed), "lora")
trained_specs, _ = split_trainable(specs, "lora")
tx = optax.adamw(1e-3)
abstract = jax.eval_shape(lambda p: init_state(p, tx, jax.random.PRNGKey(0)), trained)
state_specs = state_logical_specs(abstract, trained_specs)
shardings = jax.tree.map(part.sharding, state_specs, is_leaf=lambda x: isinstance(x, P))
# a real state placed with those shardings: its arrays must carry them
state = jax.jit(lambda p: init_state(p, tx, jax.random.PRNGKey(0)), out_shardings=shardings)(
    jax.tree.map(lambda a: jax.numpy.zeros(a.shape, a.dtype), trained))
mu = state.opt_state[0].mu
out = {
  "params": {"/".join(k): str(tuple(v)) for k, v in __import__("flax").traverse_util.flatten_dict(
      mesh_specs, is_leaf=lambda k, x: isinstance(x, P)).items() if k[0] in ("embed_tokens", "norm", "lm_head") or k[0] == "layers_0"},
  "mu_lora_a": str(tuple(mu["layers_0"]["self_attn"]["q_proj"]["lora_a"].sharding.spec)),
  "mu_lora_b": str(tuple(mu["layers_0"]["self_attn"]["v_proj"]["lora_b"].sharding.spec)),
  "count": str(tuple(state.opt_state[0].count.sharding.spec)),
  "mesh": dict(part.mesh.shape),
  "axis_types": [str(t) for t in part.mesh.axis_types],
  "batch": str(tuple(part.batch_sharding(2).spec)),
}
print(json.dumps(out))
'''


def test_golden_partition_specs_of_params_and_optimizer_state():
    got = run_with_devices(GOLDEN, devices=8)
    assert got["mesh"] == {"data": 2, "fsdp": 2, "tensor": 2}
    assert set(got["axis_types"]) == {"AxisType.Auto"}
    p = got["params"]
    assert p["embed_tokens/embedding"] == "('tensor', 'fsdp')"
    assert p["lm_head/kernel"] == "('fsdp', 'tensor')"
    assert p["norm/scale"] == "(None,)"
    assert p["layers_0/self_attn/q_proj/kernel"] == "('fsdp', 'tensor')"
    assert p["layers_0/self_attn/k_proj/kernel"] == "('fsdp', 'tensor')"
    assert p["layers_0/self_attn/o_proj/kernel"] == "('tensor', 'fsdp')"
    assert p["layers_0/self_attn/q_proj/lora_a"] == "('fsdp', None)"
    assert p["layers_0/self_attn/q_proj/lora_b"] == "(None, 'tensor')"
    assert p["layers_0/mlp/gate_proj/kernel"] == "('fsdp', 'tensor')"
    assert p["layers_0/mlp/down_proj/kernel"] == "('tensor', 'fsdp')"
    assert p["layers_0/input_layernorm/scale"] == "(None,)"
    # Adam moments are sharded like their params; the step count is replicated.
    assert got["mu_lora_a"] == "('fsdp', None)"
    assert got["mu_lora_b"] == "(None, 'tensor')"
    assert got["count"] == "()"
    assert got["batch"] == "(('data', 'fsdp'), None)"


HEADS = r'''
import json
from configs import base
from t5x_like.partitioning import Partitioner, PartitioningError
cfg = base.get_partitioning_config()
cfg.mesh_shape = (1, 1, 8)
part = Partitioner.from_config(cfg)
errors = []
try:
    part.check_model(num_heads=4, num_kv_heads=2)
except PartitioningError as e:
    errors.append(str(e))
cfg.mesh_shape = (1, 8, 1)
try:
    Partitioner.from_config(cfg).check_batch(12)
except PartitioningError as e:
    errors.append(str(e))
print(json.dumps(errors))
'''


def test_heads_or_batch_not_divisible_by_the_mesh_are_refused():
    errors = run_with_devices(HEADS, devices=8)
    assert "4 heads cannot be split over mesh axes tensor of size 8" in errors[0]
    assert "train.batch_size=12 (in 1 microbatches) is not divisible by the data-parallel size 8" in errors[1]
