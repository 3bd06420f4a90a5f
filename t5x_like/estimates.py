"""Analytic memory and step-time estimates per device, for dry runs on hardware that is not here.

The compiled step's own `memory_analysis()` (printed by the trainer before training) is the
authority on a real machine; these formulas let `run_experiment --dry_run` say in advance whether a
config fits a named accelerator, and let docs extrapolate the CPU benchmarks.
"""
from __future__ import annotations

import dataclasses

from t5x_like.models.config import ModelConfig

GIB = 1024 ** 3
BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclasses.dataclass(frozen=True)
class Hardware:
    """One accelerator: memory and dense bf16 peak (fp32 peak for CPUs)."""

    name: str
    memory_gib: float
    peak_tflops: float


HARDWARE = {
    "tpu-v4": Hardware("TPU v4 chip", 32, 275),
    "tpu-v5e": Hardware("TPU v5e chip", 16, 197),
    "tpu-v5p": Hardware("TPU v5p chip", 95, 459),
    "h100": Hardware("NVIDIA H100 80GB", 80, 989),
    "h200": Hardware("NVIDIA H200", 141, 989),
    "a100": Hardware("NVIDIA A100 80GB", 80, 312),
    "cpu": Hardware("CPU host (24 GiB)", 24, 0.2),
}


@dataclasses.dataclass(frozen=True)
class TrainShape:
    """What one optimizer step processes and how the model is sharded."""

    batch_size: int  # global sequences per step
    seq_len: int
    data: int  # mesh axis sizes
    fsdp: int
    tensor: int
    lora: bool
    remat: bool

    @property
    def devices(self) -> int:
        return self.data * self.fsdp * self.tensor

    @property
    def model_shards(self) -> int:
        """How many ways each weight is split (fsdp and tensor axes)."""
        return self.fsdp * self.tensor


@dataclasses.dataclass(frozen=True)
class Estimate:
    """Bytes per device by kind, total, and the step time at an assumed MFU."""

    weights_gib: float
    trainable_state_gib: float
    activations_gib: float
    total_gib: float
    step_flops: float
    step_seconds: float
    fits: bool


def lora_params(config: ModelConfig) -> int:
    """Number of adapter parameters (0 without LoRA)."""
    if config.lora is None:
        return 0
    per_layer = sum(config.lora.rank * sum(config.projection_shape(t)) for t in config.lora.targets)
    return config.num_layers * per_layer


def train_flops_per_token(config: ModelConfig, seq_len: int, mode: str) -> float:
    """Model FLOPs per trained token (PaLM convention, attention non-causal): forward = 2 x matmul
    params + 4 x layers x seq x attention width; full FT = 3 x forward; LoRA = 2 x forward (the
    backward still propagates through frozen weights but computes no weight gradients) + adapters."""
    matmul_params = config.num_params() - config.vocab_size * config.hidden_size * (not config.tie_word_embeddings)
    matmul_params -= config.num_layers * 2 * config.hidden_size + config.hidden_size  # norms: no matmul
    attention = 4 * config.num_layers * seq_len * config.num_heads * config.head_dim
    forward = 2 * matmul_params + attention
    if mode == "full":
        return 3.0 * forward
    adapters = 0
    if config.lora is not None:
        adapters = config.num_layers * sum(config.lora.rank * sum(config.projection_shape(t))
                                           for t in config.lora.targets)
    return 2.0 * forward + 6.0 * adapters


def train_flops(config: ModelConfig, tokens: int, seq_len: int, lora: bool) -> float:
    """FLOPs of one step of `tokens` tokens (`train_flops_per_token` with mode "lora" or "full")."""
    return tokens * train_flops_per_token(config, seq_len, "lora" if lora else "full")


def estimate_training(config: ModelConfig, shape: TrainShape, hardware: Hardware, mfu: float = 0.4) -> Estimate:
    """Per-device memory and step time of a training step under `shape` on `hardware`."""
    n = config.num_params()
    weights = n * BYTES[config.param_dtype] / shape.model_shards
    trainable = lora_params(config) if shape.lora else n
    # fp32 master copy (when params are not fp32) + fp32 grads + two Adam moments.
    master = 0 if config.param_dtype == "float32" or shape.lora else 4
    state = trainable * (master + 4 + 8) / (1 if shape.lora else shape.model_shards)
    local_batch = max(1, -(-shape.batch_size // (shape.data * shape.fsdp)))
    act_bytes = BYTES[config.dtype]
    tokens = local_batch * shape.seq_len
    per_layer = tokens * (10 * config.hidden_size + 3 * config.intermediate_size) * act_bytes
    scores = local_batch * config.num_heads * shape.seq_len ** 2 * 4
    saved = config.num_layers * (tokens * config.hidden_size * act_bytes if shape.remat else per_layer + scores)
    working = per_layer + scores + tokens * config.vocab_size * 4  # one layer recomputed + fp32 logits
    activations = (saved + working) / shape.tensor  # tensor parallelism splits heads and mlp
    total = weights + state + activations
    flops = train_flops(config, shape.batch_size * shape.seq_len, shape.seq_len, shape.lora)
    seconds = flops / (shape.devices * hardware.peak_tflops * 1e12 * mfu)
    return Estimate(weights / GIB, state / GIB, activations / GIB, total / GIB, flops, seconds,
                    total / GIB <= 0.9 * hardware.memory_gib)


def estimate_inference(config: ModelConfig, batch: int, length: int, model_shards: int, hardware: Hardware) -> float:
    """GiB per device of weights + KV cache for batched generation up to `length` tokens."""
    weights = config.num_params() * BYTES[config.param_dtype] / model_shards
    kv = 2 * config.num_layers * batch * length * config.num_kv_heads * config.head_dim * BYTES[config.dtype]
    return (weights + kv / model_shards) / GIB



def parse_hardware(name: str) -> tuple[Hardware, int]:
    """'tpu-v5e-8' -> (TPU v5e chip, 8); a name without a count means one device."""
    kind, _, count = name.rpartition("-")
    if not count.isdigit():
        kind, count = name, "1"
    if kind not in HARDWARE:
        raise ValueError(f"unknown hardware {name!r}; use <kind>[-<devices>] with kind in {sorted(HARDWARE)}")
    return HARDWARE[kind], int(count)

