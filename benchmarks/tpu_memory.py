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
the long training rows and prefills, chunked for the branched scoring rows). Each model is compiled
at its own depth (a 32-layer generation program compiles in about 50 s on 2 cores); models deeper
than `--max_layers` (Llama-2-70B) are compiled at half and all of it and extrapolated linearly
(weights, gathers and KV cache are linear in the layer count), and the table says which.
`--layers=A,B` extrapolates every model from A and B layers instead: too few hide the growth per
layer, because the prefill's fixed temporaries set the peak (2/4-layer generation figures were off
by up to 2.2x).
Next to it: `t5x_like.estimates` (`estimate_training` / `estimate_inference`) for the same shape, and
their ratio.
"""
from __future__ import annotations

import functools
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
MODELS_OF_TABLE = ("llama2_7b", "mistral_7b", "llama2_13b", "llama2_70b")
_MODELS = flags.DEFINE_list("models", list(MODELS_OF_TABLE), "Paper models.")
_HARDWARE = flags.DEFINE_list("hardware", ["tpu-v5e-8", "tpu-v4-4"], "Topologies (keys of TOPOLOGIES).")
_ATTENTION = flags.DEFINE_string("attention_impl", "auto", "model.attention_impl to compile (auto: as on a TPU).")
_LAYERS = flags.DEFINE_list("layers", [], "Two layer counts to compile every model at and extrapolate from "
                            "(default: each model's own depth, see --max_layers).")
_RESCORE = flags.DEFINE_string("rescore", None, "A table this script wrote: keep its compiled figures, "
                                "recompute the estimate columns (no libtpu needed).")
_MAX_LAYERS = flags.DEFINE_integer("max_layers", 40, "Deeper models are compiled at half and all of this many "
                                   "layers and extrapolated to their depth.")

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


def compiled_layers(depth: int) -> list[int]:
    """The layer counts a model of `depth` layers is compiled at: its own, or two to extrapolate from."""
    if _LAYERS.value:
        return [int(n) for n in _LAYERS.value]
    if depth <= _MAX_LAYERS.value:
        return [depth]
    return [_MAX_LAYERS.value // 2, _MAX_LAYERS.value]


def at_depth(small: list[dict[str, float]], layers: list[int], depth: int) -> dict[str, float]:
    """The compiled figures at `depth`: the one compile there, or the line through two shallower ones."""
    if layers == [depth]:
        return small[0]
    return {program: small[0][program] + (small[1][program] - small[0][program]) / (layers[1] - layers[0])
            * (depth - layers[0]) for program in small[0]}


HEADER = ["| model | hardware | mesh | layers compiled | program | compiled (XLA:TPU) | estimate | "
          "estimate / compiled | fits (90%) |", "|---|---|---|---|---|---|---|---|---|"]


@functools.lru_cache(maxsize=None)
def paper_model(name: str):
    """(experiment config, model config with `--attention_impl`) of a paper model, loaded once."""
    config_dict = sweep.load_config(f"configs/experiments/paper_{name}.py")
    return config_dict, model_dirs.model_config(config_dict.model).replace(attention_impl=_ATTENTION.value)


def table_row(name: str, hardware_name: str, depth: str, program: str, gib: float) -> str:
    """One table line: the compiled figure next to `t5x_like.estimates` for the same program."""
    config_dict, model = paper_model(name)
    mesh = TOPOLOGIES[hardware_name][1]
    hardware, _ = estimates.parse_hardware(hardware_name)
    estimated = estimated_gib(model, config_dict, estimates.eval_shape(model, config_dict.eval, mesh), hardware)
    fits = "yes" if gib <= 0.9 * hardware.memory_gib else "NO"
    return (f"| {name} | {hardware_name} | {mesh} | {depth} | {program} | {gib:.2f} GiB | "
            f"{estimated[program]:.2f} GiB | {estimated[program] / gib:.2f} | {fits} |")


def rows() -> list[str]:
    """Compiles every model on every topology and tabulates it."""
    lines = list(HEADER)
    for name in _MODELS.value:
        config_dict, model = paper_model(name)
        for hardware_name in _HARDWARE.value:
            topology, mesh, options = TOPOLOGIES[hardware_name]
            devices = topologies.get_topology_desc(topology, "tpu", **options).devices
            shape = estimates.eval_shape(model, config_dict.eval, mesh)
            layers = compiled_layers(model.num_layers)
            small = [compiled_gib(model.replace(num_layers=n), config_dict, shape, devices) for n in layers]
            depth = (str(layers[0]) if len(layers) == 1
                     else f"{layers[0]}, {layers[1]} (extrapolated to {model.num_layers})")
            for program, gib in at_depth(small, layers, model.num_layers).items():
                lines.append(table_row(name, hardware_name, depth, program, gib))
                print(lines[-1], flush=True)
    return lines


def rescored(path: str) -> list[str]:
    """An earlier table (and the text above it) with the compiled figures kept and the estimates recomputed."""
    with open(path) as f:
        text = f.read().splitlines()
    preamble = text[:next((i for i, line in enumerate(text) if line.startswith("| model |")), 0)]
    lines = preamble + list(HEADER)
    for line in text:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 9 and cells[0] in MODELS_OF_TABLE and cells[5].endswith(" GiB"):
            lines.append(table_row(cells[0], cells[1], cells[3], cells[4], float(cells[5][:-4])))
    return lines


def main(argv: list[str]) -> None:
    del argv
    text = "\n".join(rescored(_RESCORE.value) if _RESCORE.value else rows()) + "\n"
    print(text)
    if _OUT.value:
        from t5x_like import io_utils
        io_utils.atomic_write_text(_OUT.value, text)


if __name__ == "__main__":
    app.run(main)
