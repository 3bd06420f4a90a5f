"""Analytic memory and step-time estimates per device, for dry runs on hardware that is not here.

The compiled step's own `memory_analysis()` (printed by the trainer before training) is the
authority on a real machine; these formulas let `run_experiment --dry_run` say in advance whether a
config fits a named accelerator, and let docs extrapolate the CPU benchmarks.
"""
from __future__ import annotations

import dataclasses
from typing import Any

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


@dataclasses.dataclass(frozen=True)
class InferenceShape:
    """What the sharded engine's largest programs hold: eval batch knobs and the mesh."""

    batch_size: int  # eval.batch_size: rows per compiled batch before the token caps
    max_length: int  # eval.max_length (the model context)
    max_new_tokens: int  # the most new tokens a setting generates (0: scoring only)
    score_batch_tokens: int  # rows x length cap of a scoring batch
    generate_batch_tokens: int  # rows x (prompt + new) cap of a generation batch (every cache slot counts)
    data: int
    fsdp: int
    tensor: int

    def rows(self, length: int, cap: int) -> int:
        """Rows of a batch of `length`-token rows: the engine's rows_per_batch, whole over data x fsdp."""
        dp = self.data * self.fsdp
        rows = max(1, min(self.batch_size, cap // length))
        return -(-rows // dp) * dp


@dataclasses.dataclass(frozen=True)
class InferenceEstimate:
    """Per-device GiB of the largest scoring and generation programs (weights included in both)."""

    weights_gib: float
    scoring_rows: int
    scoring_gib: float
    generation_rows: int
    kv_cache_gib: float
    generation_gib: float
    fits: bool


def eval_shape(config: ModelConfig, eval_cfg: Any, mesh: tuple[int, int, int]) -> InferenceShape:
    """The InferenceShape of an experiment's eval section on a (data, fsdp, tensor) mesh (accelerator defaults)."""
    from t5x_like.scoring import DEFAULT_MAX_BATCH_TOKENS

    return InferenceShape(eval_cfg.batch_size, eval_cfg.max_length or config.max_position_embeddings,
                          max(eval_cfg.max_new_tokens_base, eval_cfg.max_new_tokens_tuned),
                          eval_cfg.score_batch_tokens or DEFAULT_MAX_BATCH_TOKENS, DEFAULT_MAX_BATCH_TOKENS, *mesh)


CACHE_COPIES = 3


def _pow2_at_least(n: int, floor: int = 16) -> int:
    size = floor
    while size < n:
        size *= 2
    return size


def _forward_temporaries(config: ModelConfig, rows: int, queries: int, keys: int, tensor: int) -> float:
    """Bytes of one layer's working set for `rows` local rows: activations, fp32 attention scores and
    probabilities of the XLA attention (the largest term at long contexts), one gathered layer of weights."""
    act = BYTES[config.dtype]
    heads = max(1, config.num_heads // tensor)
    activations = rows * queries * (6 * config.hidden_size + 3 * config.intermediate_size // tensor) * act
    scores = 2 * rows * heads * queries * keys * 4
    layer = (config.num_params() - 2 * config.vocab_size * config.hidden_size) / config.num_layers
    return activations + scores + 2 * layer * BYTES[config.param_dtype] / tensor


def estimate_inference(config: ModelConfig, shape: InferenceShape, hardware: Hardware) -> InferenceEstimate:
    """Per-device memory of the sharded engine's largest scoring body and generation program."""
    dp = shape.data * shape.fsdp
    weights = config.num_params() * BYTES[config.param_dtype] / (shape.fsdp * shape.tensor)
    length = shape.max_length
    score_rows = shape.rows(length, shape.score_batch_tokens)
    hidden_out = score_rows // dp * length * config.hidden_size * BYTES[config.dtype]
    scoring = weights + hidden_out + _forward_temporaries(config, score_rows // dp, length, length, shape.tensor)
    gen_rows, kv, generation = 0, 0.0, 0.0
    if shape.max_new_tokens:
        new = _pow2_at_least(shape.max_new_tokens)
        prompt = length - shape.max_new_tokens
        slots = prompt + new
        gen_rows = shape.rows(slots, shape.generate_batch_tokens)
        kv_heads = max(1, config.num_kv_heads // shape.tensor)
        kv = 2 * config.num_layers * gen_rows // dp * slots * kv_heads * config.head_dim * BYTES[config.dtype]
        logits = gen_rows * config.vocab_size * 4
        # XLA:TPU keeps three caches live at the peak (the zero-initialised one, the prefill's output and
        # the decode loop's carry): benchmarks/tpu_memory.py measured 6.76 GiB for Llama-2-7B on v5e-8.
        generation = (weights + CACHE_COPIES * kv + logits
                      + _forward_temporaries(config, gen_rows // dp, prompt, slots, shape.tensor))
    fits = max(scoring, generation) / GIB <= 0.9 * hardware.memory_gib
    return InferenceEstimate(weights / GIB, score_rows, scoring / GIB, gen_rows, kv / GIB, generation / GIB, fits)


def parse_hardware(name: str) -> tuple[Hardware, int]:
    """'tpu-v5e-8' -> (TPU v5e chip, 8); a name without a count means one device."""
    kind, _, count = name.rpartition("-")
    if not count.isdigit():
        kind, count = name, "1"
    if kind not in HARDWARE:
        raise ValueError(f"unknown hardware {name!r}; use <kind>[-<devices>] with kind in {sorted(HARDWARE)}")
    return HARDWARE[kind], int(count)

