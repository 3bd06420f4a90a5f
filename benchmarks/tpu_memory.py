r"""True per-chip memory of the paper configs' largest programs on TPU, without a TPU (deviceless AOT).

  pip download --no-deps -d /tmp/libtpu "libtpu==0.0.42.*"   # the version jax 0.10.2's [tpu] extra pins
  (cd /tmp/libtpu && python -m zipfile -e libtpu-*.whl x)
  TPU_LIBRARY_PATH=/tmp/libtpu/x/libtpu/libtpu.so python -m benchmarks.tpu_memory [--out=benchmarks/results/tpu_memory.md]

`jax.experimental.topologies.get_topology_desc` gives compile-only TPU devices; the real LoRA train
step (longest bucket, the trainer's own `lower_train_steps`), the engine's scoring body (longest
bucket) and generation program (longest prompt + the paper's 1,024 new tokens) are lowered with
abstract bf16 weights (ShapeDtypeStruct, nothing allocated) through the Partitioner and
`compile().memory_analysis()` is XLA:TPU's own per-chip figure. Attention is what
`model.attention_impl` picks for the mesh's TPU devices (`llama.target_backend`; "auto": splash for
the long training rows and prefills, chunked for the branched scoring rows). To keep compiles short each
model is compiled at two layer counts (`--layers`, default 2 and 4) and extrapolated linearly to its
depth (weights and KV cache are linear in the layer count); the table says so. For generation 2
and 4 layers are too few: there the prefill's fixed temporaries set the peak and hide the growth per
layer (`--layers=8,16` for that program; docs/running.md).
Next to it: `t5x_like.estimates` (`estimate_training` / `estimate_inference`) for the same shape, and
their ratio.
"""
from __future__ import annotations

import os
import sys

from absl import app, flags

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _ROOT)

import flax.linen as nn  # noqa: E402
from jax.experimental import topologies  # noqa: E402

from configs.base import get_partitioning_config  # noqa: E402
from t5x_like import estimates, memory, sweep, trainer  # noqa: E402
from t5x_like.decoding import Generator  # noqa: E402
from t5x_like import model_dirs  # noqa: E402
from t5x_like.models.api import DecoderModel  # noqa: E402
from t5x_like.partitioning import Partitioner, create_mesh, rules_from_config  # noqa: E402
from t5x_like.scoring import Scorer  # noqa: E402

_OUT = flags.DEFINE_string("out", None, "Also write the Markdown table here.")
_MODELS = flags.DEFINE_list("models", ["llama2_7b", "mistral_7b", "llama2_13b", "llama2_70b"], "Paper models.")
_HARDWARE = flags.DEFINE_list("hardware", ["tpu-v5e-8", "tpu-v4-4"], "Topologies (keys of TOPOLOGIES).")
_ATTENTION = flags.DEFINE_string("attention_impl", "auto", "model.attention_impl to compile (auto: as on a TPU).")
_LAYERS = flags.DEFINE_list("layers", ["2", "4"], "The two layer counts compiled and extrapolated from (generation "
                            "needs 8,16: at 2 and 4 the prefill's temporaries hide the per-layer growth).")

# name -> (topology, mesh, options): tpu-v4-4 is a v4-8 slice, 4 chips; "megacore" makes each chip one
# device, as on a real v4 VM (compile-only topologies otherwise list its two cores apart).
TOPOLOGIES = {"tpu-v5e-8": ("v5e:2x4", (1, 2, 4), {}),
              "tpu-v4-4": ("v4:2x2x1", (1, 1, 4), {"chip_config_name": "megacore", "chips_per_host_bounds": (2, 2, 1),
                                                   "num_slices": 1, "wrap": (False, False, False)})}


def compiled_gib(config, config_dict, shape: estimates.InferenceShape, devices) -> dict[str, float]:
    """GiB per chip of the LoRA train step, the scoring body and the generation program on `devices`."""
    mesh = (shape.data, shape.fsdp, shape.tensor)
    partitioner = Partitioner(create_mesh(mesh, devices), rules_from_config(get_partitioning_config().rules))
    train_model = config.replace(lora=trainer.lora_config(config_dict.train))
    setup = trainer.abstract_setup(config_dict, "", train_model, partitioner, None, [], 1000)
    train_step = trainer.lower_train_steps(setup, [max(config_dict.train.buckets)])
    model = DecoderModel(config)
    abstract = nn.meta.unbox(model.abstract_params())
    scorer = Scorer(model, abstract, partitioner=partitioner, batch_size=shape.batch_size,
                    max_length=shape.max_length, max_batch_tokens=shape.score_batch_tokens)
    generator = Generator(model, abstract, partitioner=partitioner, eos_ids=(2,), pad_id=0,
                          batch_size=shape.batch_size, max_length=shape.max_length,
                          max_batch_tokens=shape.generate_batch_tokens)
    analyses = {"train step (LoRA)": next(iter(train_step.values())).memory_analysis(),
                "scoring": scorer.memory_analysis(), "generation": generator.memory_analysis(shape.max_new_tokens)}
    return {program: memory.program_bytes(analysis) / estimates.GIB for program, analysis in analyses.items()}


def estimated_gib(config, config_dict, shape: estimates.InferenceShape, hardware) -> dict[str, float]:
    """`t5x_like.estimates` for the same programs (what dry runs and docs/running.md print)."""
    t = config_dict.train
    train_shape = estimates.TrainShape(t.batch_size, max(t.buckets), shape.data, shape.fsdp, shape.tensor, True,
                                       config.remat_policy != "none")
    train = estimates.estimate_training(config.replace(lora=trainer.lora_config(t)), train_shape, hardware)
    inference = estimates.estimate_inference(config, shape, hardware)
    return {"train step (LoRA)": train.total_gib, "scoring": inference.scoring_gib,
            "generation": inference.generation_gib}


def rows() -> list[str]:
    lines = ["| model | hardware | mesh | program | compiled (XLA:TPU, extrapolated) | estimate | estimate / compiled "
             "| fits (90%) |", "|---|---|---|---|---|---|---|---|"]
    for name in _MODELS.value:
        config_dict = sweep.load_config(f"configs/experiments/paper_{name}.py")
        model = model_dirs.model_config(config_dict.model)
        model = model.replace(attention_impl=_ATTENTION.value)
        for hardware_name in _HARDWARE.value:
            topology, mesh, options = TOPOLOGIES[hardware_name]
            hardware, _ = estimates.parse_hardware(hardware_name)
            devices = topologies.get_topology_desc(topology, "tpu", **options).devices
            shape = estimates.eval_shape(model, config_dict.eval, mesh)
            layers = [int(n) for n in _LAYERS.value]
            small = [compiled_gib(model.replace(num_layers=n), config_dict, shape, devices) for n in layers]
            estimated = estimated_gib(model, config_dict, shape, hardware)
            for program in small[0]:
                slope = (small[1][program] - small[0][program]) / (layers[1] - layers[0])
                compiled = small[0][program] + slope * (model.num_layers - layers[0])
                fits = "yes" if compiled <= 0.9 * hardware.memory_gib else "NO"
                lines.append(f"| {name} | {hardware_name} | {mesh} | {program} | {compiled:.2f} GiB | "
                             f"{estimated[program]:.2f} GiB | {estimated[program] / compiled:.2f} | {fits} |")
                print(lines[-1], flush=True)
    return lines


def main(argv: list[str]) -> None:
    del argv
    text = "\n".join(rows()) + "\n"
    print(text)
    if _OUT.value:
        from t5x_like import io_utils
        io_utils.atomic_write_text(_OUT.value, text)


if __name__ == "__main__":
    app.run(main)
