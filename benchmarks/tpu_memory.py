r"""True per-chip memory of the sharded engine's largest programs on TPU, without a TPU (deviceless AOT).

  pip download --no-deps -d /tmp/libtpu "libtpu==0.0.42.*"   # the version jax 0.10.2's [tpu] extra pins
  (cd /tmp/libtpu && python -m zipfile -e libtpu-*.whl x)
  TPU_LIBRARY_PATH=/tmp/libtpu/x/libtpu/libtpu.so python -m benchmarks.tpu_memory [--out=benchmarks/results/tpu_memory.md]

`jax.experimental.topologies.get_topology_desc` gives compile-only TPU devices; the engine's real
scoring body (longest bucket) and generation program (longest prompt + the paper's 1,024 new tokens)
are lowered with abstract bf16 weights (ShapeDtypeStruct, nothing allocated) through the Partitioner
and `compile().memory_analysis()` is XLA:TPU's own per-chip figure. To keep compiles short each
model is compiled at 2 and 4 layers and extrapolated linearly to its depth (every term is linear in
the layer count: weights, KV cache; the working set of one layer is constant); the table says so.
Next to it: `t5x_like.estimates.estimate_inference` for the same shape, and their ratio.
"""
from __future__ import annotations

import os
import sys

from absl import app, flags

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _ROOT)

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
from jax.experimental import topologies  # noqa: E402

from configs.base import get_partitioning_config  # noqa: E402
from t5x_like import estimates, memory, sweep  # noqa: E402
from t5x_like.decoding import Generator  # noqa: E402
from t5x_like.models import sources  # noqa: E402
from t5x_like.models.api import DecoderModel  # noqa: E402
from t5x_like.partitioning import Partitioner, create_mesh, rules_from_config  # noqa: E402
from t5x_like.scoring import DEFAULT_MAX_BATCH_TOKENS, Scorer  # noqa: E402

_OUT = flags.DEFINE_string("out", None, "Also write the Markdown table here.")
_MODELS = flags.DEFINE_list("models", ["llama2_7b", "mistral_7b", "llama2_13b", "llama2_70b"], "Paper models.")

TOPOLOGIES = {"tpu-v5e-8": ("v5e:2x4", (1, 2, 4)), "tpu-v4-8": ("v4:2x2x1", (1, 1, 4))}
LAYERS = (2, 4)


def compiled_gib(config, shape: estimates.InferenceShape, devices) -> tuple[float, float]:
    """(scoring, generation) GiB per chip of the engine's largest programs for `config` on `devices`."""
    partitioner = Partitioner(create_mesh((shape.data, shape.fsdp, shape.tensor), devices),
                              rules_from_config(get_partitioning_config().rules))
    model = DecoderModel(config)
    abstract = nn.meta.unbox(model.abstract_params())
    scorer = Scorer(model, abstract, partitioner=partitioner, batch_size=shape.batch_size,
                    max_length=shape.max_length, max_batch_tokens=shape.score_batch_tokens)
    generator = Generator(model, abstract, partitioner=partitioner, eos_ids=(2,), pad_id=0,
                          batch_size=shape.batch_size, max_length=shape.max_length,
                          max_batch_tokens=shape.generate_batch_tokens)
    score = memory.program_bytes(scorer.memory_analysis()) / estimates.GIB
    generate = memory.program_bytes(generator.memory_analysis(shape.max_new_tokens)) / estimates.GIB
    return score, generate


def rows() -> list[str]:
    lines = ["| model | hardware | mesh | program | compiled (XLA:TPU, extrapolated) | estimate | estimate / compiled "
             "| fits (90%) |", "|---|---|---|---|---|---|---|---|"]
    for name in _MODELS.value:
        config = sweep.load_config(f"configs/experiments/paper_{name}.py")
        model = sources.model_config(config.model)
        for hardware_name, (topology, mesh) in TOPOLOGIES.items():
            hardware, _ = estimates.parse_hardware(hardware_name)
            devices = topologies.get_topology_desc(topology, "tpu").devices
            shape = estimates.eval_shape(model, config.eval, mesh)
            shape = estimates.InferenceShape(**{**shape.__dict__, "generate_batch_tokens": DEFAULT_MAX_BATCH_TOKENS})
            small = [compiled_gib(model.replace(num_layers=n), shape, devices) for n in LAYERS]
            slope = [(b - a) / (LAYERS[1] - LAYERS[0]) for a, b in zip(*small)]
            full = [a + s * (model.num_layers - LAYERS[0]) for a, s in zip(small[0], slope)]
            est = estimates.estimate_inference(model, shape, hardware)
            for program, compiled, estimated in (("scoring", full[0], est.scoring_gib),
                                                 ("generation", full[1], est.generation_gib)):
                fits = "yes" if compiled <= 0.9 * hardware.memory_gib else "NO"
                lines.append(f"| {name} | {hardware_name} | {mesh} | {program} | {compiled:.2f} GiB | "
                             f"{estimated:.2f} GiB | {estimated / compiled:.2f} | {fits} |")
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
