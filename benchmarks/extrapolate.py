r"""Per-device memory and step time of the paper's models on named hardware, from t5x_like/estimates.py.

python -m benchmarks.extrapolate [--out=benchmarks/results/extrapolate.md]
Training: each paper config's LoRA step (batch 2 x 4096 tokens, bf16, full remat) on its own
hardware and on alternatives with the same mesh rules; one epoch of the paper = 10,000 steps.
Evaluation: the sharded engine's largest scoring body (4096-token rows) and generation program
(prompt + 1,024 new tokens, every cache slot counted) per device, weights split over fsdp x tensor,
rows over data x fsdp. These are analytic estimates (`benchmarks.tpu_memory` compiles the real
programs for TPU and compares); the trainer and the engine print the compiled programs' own memory
analysis on the real machine. The table is pasted into docs/running.md.
"""
from __future__ import annotations

import dataclasses
import os
import sys

from absl import app
from absl import flags

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _ROOT)

from t5x_like import estimates, partitioning, sweep  # noqa: E402
from t5x_like.trainer import lora_config  # noqa: E402
from t5x_like import model_dirs  # noqa: E402

_OUT = flags.DEFINE_string("out", None, "Also write the Markdown tables here.")

MODELS = ("llama2_7b", "mistral_7b", "llama2_13b", "llama2_70b")
# (hardware, mesh) alternatives per model besides the config's own; mesh data x fsdp must divide batch 2.
ALTERNATIVES = {
    "llama2_7b": (("tpu-v5e-8", (1, 2, 4)), ("tpu-v4-4", (1, 2, 2)), ("a100-8", (1, 2, 4))),
    "mistral_7b": (("tpu-v5e-8", (1, 2, 4)), ("tpu-v4-4", (1, 2, 2)), ("a100-8", (1, 2, 4))),
    "llama2_13b": (("tpu-v5e-8", (1, 2, 4)), ("tpu-v4-4", (1, 2, 2)), ("a100-8", (1, 2, 4))),
    "llama2_70b": (("tpu-v5e-16", (1, 2, 8)), ("tpu-v4-16", (1, 2, 8)), ("h100-16", (1, 2, 8))),
}
EVAL_NODES = (("tpu-v5e-8", (1, 2, 4)), ("tpu-v4-4", (1, 1, 4)), ("h100-8", (1, 2, 4)), ("a100-8", (1, 2, 4)))
PAPER_STEPS = 10000  # 20,000 mixture rows / batch 2, one epoch


@dataclasses.dataclass(frozen=True)
class TrainRow:
    model: str
    hardware: str
    mesh: tuple[int, int, int]
    estimate: estimates.Estimate
    memory_gib: float


def train_rows() -> list[TrainRow]:
    """Every paper model on its config's hardware and on the alternatives."""
    rows = []
    for name in MODELS:
        config = sweep.load_config(f"configs/experiments/paper_{name}.py")
        model = model_dirs.model_config(config.model).replace(lora=lora_config(config.train))
        options = ((config.hardware, tuple(config.partitioning.mesh_shape)),) + ALTERNATIVES[name]
        for hardware_name, mesh in options:
            hardware, devices = estimates.parse_hardware(hardware_name)
            data, fsdp, tensor = partitioning.resolve_mesh_shape(mesh, devices)
            shape = estimates.TrainShape(config.train.batch_size, max(config.train.buckets), data, fsdp, tensor,
                                         True, config.model.remat_policy != "none")
            rows.append(TrainRow(name, hardware_name, (data, fsdp, tensor),
                                 estimates.estimate_training(model, shape, hardware), hardware.memory_gib))
    return rows


def train_table(rows: list[TrainRow]) -> str:
    lines = ["| model | hardware | mesh (data, fsdp, tensor) | weights | LoRA state | activations | total / device "
             "| fits (90%) | step | 10k steps (1 epoch) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        e = r.estimate
        lines.append(f"| {r.model} | {r.hardware} | {r.mesh} | {e.weights_gib:.1f} GiB | {e.trainable_state_gib:.2f} GiB "
                     f"| {e.activations_gib:.1f} GiB | {e.total_gib:.1f} / {r.memory_gib:.0f} GiB "
                     f"| {'yes' if e.fits else 'NO'} | {e.step_seconds:.2f} s "
                     f"| {e.step_seconds * PAPER_STEPS / 3600:.1f} h |")
    return "\n".join(lines)


def eval_cases():
    """(model name, ModelConfig, hardware name, mesh, Hardware, InferenceShape) of every evaluation row."""
    for name in MODELS:
        config = sweep.load_config(f"configs/experiments/paper_{name}.py")
        model = model_dirs.model_config(config.model)
        for hardware_name, mesh in EVAL_NODES:
            yield (name, model, hardware_name, mesh, estimates.parse_hardware(hardware_name)[0],
                   estimates.eval_shape(model, config.eval, mesh))


def eval_table() -> str:
    """The sharded engine's largest scoring and generation programs per model and node, per device."""
    lines = ["| model | hardware | mesh (data, fsdp, tensor) | weights | scoring rows x 4096 | scoring | generation rows "
             "| KV cache | generation | fits (90%) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, model, hardware_name, mesh, hardware, shape in eval_cases():
        e = estimates.estimate_inference(model, shape, hardware)
        lines.append(f"| {name} | {hardware_name} | {mesh} | {e.weights_gib:.1f} GiB | {e.scoring_rows} "
                     f"| {e.scoring_gib:.1f} GiB | {e.generation_rows} | {e.kv_cache_gib:.2f} GiB "
                     f"| {e.generation_gib:.1f} GiB | {'yes' if e.fits else 'NO'} |")
    return "\n".join(lines)


def throughput_table() -> str:
    """Roofline evaluation throughput per chip at the paper's shapes: the engine's generation rows and
    the most rows whose generation program fits 90% of memory (estimates.max_generation_rows)."""
    lines = ["| model | hardware | mesh | prefill tok/s/chip | engine rows | decode tok/s/chip | rows that fit "
             "| decode tok/s/chip | bound |", "|---|---|---|---|---|---|---|---|---|"]
    for name, model, hardware_name, mesh, hardware, shape in eval_cases():
        engine = estimates.roofline(model, shape, hardware, estimates.estimate_inference(
            model, shape, hardware).generation_rows)
        most = estimates.max_generation_rows(model, shape, hardware)
        widest = estimates.roofline(model, shape, hardware, most) if most else None
        lines.append(f"| {name} | {hardware_name} | {mesh} | {engine.prefill_tokens_per_s:,.0f} "
                     f"| {engine.decode_rows} | {engine.decode_tokens_per_s:,.0f} | {most} "
                     f"| {f'{widest.decode_tokens_per_s:,.0f}' if widest else '-'} "
                     f"| {widest.decode_bound if widest else engine.decode_bound} |")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    del argv
    text = ("### Training (LoRA, batch 2 x 4096 tokens, bf16, remat full; 40% MFU)\n\n" + train_table(train_rows())
            + "\n\n### Evaluation (the sharded engine on the same mesh as training)\n\n" + eval_table()
            + "\n\n### Evaluation throughput (roofline per chip; prompt 3072 -> bucket 4096, 1,024 new tokens)\n\n"
            + throughput_table() + "\n")
    print(text)
    if _OUT.value:
        from t5x_like import io_utils
        io_utils.atomic_write_text(_OUT.value, text)


if __name__ == "__main__":
    app.run(main)
