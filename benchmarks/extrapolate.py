r"""Per-device memory and step time of the paper's models on named hardware, from t5x_like/estimates.py.

python -m benchmarks.extrapolate [--out=benchmarks/results/extrapolate.md]
Training: each paper config's LoRA step (batch 2 x 4096 tokens, bf16, full remat) on its own
hardware and on alternatives with the same mesh rules; one epoch of the paper = 10,000 steps.
Evaluation: the engine runs on ONE device, so the whole bf16 model plus the KV cache of one
generation batch (at most `scoring.DEFAULT_MAX_BATCH_TOKENS` tokens) must fit one chip. These are
analytic estimates (40% MFU assumed); the trainer prints the compiled step's own memory analysis
before training on the real machine. The table is pasted into docs/running.md.
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
from t5x_like.models import sources  # noqa: E402
from t5x_like.scoring import DEFAULT_MAX_BATCH_TOKENS  # noqa: E402

_OUT = flags.DEFINE_string("out", None, "Also write the Markdown tables here.")

MODELS = ("llama2_7b", "mistral_7b", "llama2_13b", "llama2_70b")
# (hardware, mesh) alternatives per model besides the config's own; mesh data x fsdp must divide batch 2.
ALTERNATIVES = {
    "llama2_7b": (("tpu-v5e-8", (1, 2, 4)), ("tpu-v4-4", (1, 2, 2)), ("a100-8", (1, 2, 4))),
    "mistral_7b": (("tpu-v5e-8", (1, 2, 4)), ("tpu-v4-4", (1, 2, 2)), ("a100-8", (1, 2, 4))),
    "llama2_13b": (("tpu-v5e-8", (1, 2, 4)), ("tpu-v4-4", (1, 2, 2)), ("a100-8", (1, 2, 4))),
    "llama2_70b": (("tpu-v5e-16", (1, 2, 8)), ("tpu-v4-16", (1, 2, 8)), ("h100-16", (1, 2, 8))),
}
EVAL_HARDWARE = ("tpu-v5e", "tpu-v4", "tpu-v5p", "a100", "h100", "h200")
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
        model = sources.model_config(config.model).replace(lora=lora_config(config.train))
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


def eval_table() -> str:
    """Single-device generation memory (weights + a full KV batch) per model and chip kind."""
    header = " | ".join(f"{h} ({estimates.HARDWARE[h].memory_gib:.0f} GiB)" for h in EVAL_HARDWARE)
    lines = [f"| model | weights + KV of {DEFAULT_MAX_BATCH_TOKENS} tokens | {header} |",
             "|---|---|" + "---|" * len(EVAL_HARDWARE)]
    for name in MODELS:
        config = sweep.load_config(f"configs/experiments/paper_{name}.py")
        model = sources.model_config(config.model)
        cells = []
        for kind in EVAL_HARDWARE:
            hardware = estimates.HARDWARE[kind]
            gib = estimates.estimate_inference(model, 1, DEFAULT_MAX_BATCH_TOKENS, 1, hardware)
            cells.append("fits" if gib <= 0.9 * hardware.memory_gib else "no")
        gib = estimates.estimate_inference(model, 1, DEFAULT_MAX_BATCH_TOKENS, 1, estimates.HARDWARE["h100"])
        lines.append(f"| {name} | {gib:.1f} GiB | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    del argv
    text = ("### Training (LoRA, batch 2 x 4096 tokens, bf16, remat full; 40% MFU)\n\n" + train_table(train_rows())
            + "\n\n### Evaluation (one device holds the model)\n\n" + eval_table() + "\n")
    print(text)
    if _OUT.value:
        from t5x_like import io_utils
        io_utils.atomic_write_text(_OUT.value, text)


if __name__ == "__main__":
    app.run(main)
