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
    """One accelerator: memory, dense bf16 peak (fp32 peak for CPUs), memory bandwidth (vendor sheets)
    and the `device_kind` strings JAX reports for it."""

    name: str
    memory_gib: float
    peak_tflops: float
    hbm_gbps: float
    device_kinds: tuple[str, ...] = ()

    @property
    def platform(self) -> str:
        """JAX's backend name for this hardware (what `model.attention_impl="auto"` resolves against)."""
        return "tpu" if self.name.startswith("TPU") else "gpu" if self.name.startswith("NVIDIA") else "cpu"


HARDWARE = {
    "tpu-v4": Hardware("TPU v4 chip", 32, 275, 1200, ("TPU v4",)),
    "tpu-v5e": Hardware("TPU v5e chip", 16, 197, 819, ("TPU v5 lite", "TPU v5e")),
    "tpu-v5p": Hardware("TPU v5p chip", 95, 459, 2765, ("TPU v5p",)),
    "tpu-v6e": Hardware("TPU v6e chip", 32, 918, 1640, ("TPU v6 lite",)),
    "h100": Hardware("NVIDIA H100 80GB", 80, 989, 3350, ("NVIDIA H100 80GB HBM3",)),
    "h200": Hardware("NVIDIA H200", 141, 989, 4800, ("NVIDIA H200",)),
    "a100": Hardware("NVIDIA A100 80GB", 80, 312, 2039, ("NVIDIA A100-SXM4-80GB", "NVIDIA A100-SXM4-40GB")),
    "cpu": Hardware("CPU host (24 GiB)", 24, 0.2, 20),
}


def hardware_of_device_kind(kind: str) -> str | None:
    """The HARDWARE key whose `device_kinds` include a JAX `device_kind`, or None when none does."""
    return next((name for name, hardware in HARDWARE.items() if kind in hardware.device_kinds), None)


def peak_flops_of_device_kind(kind: str) -> float | None:
    """The vendor dense bf16 peak FLOP/s of a JAX `device_kind`, or None when it is not in HARDWARE."""
    name = hardware_of_device_kind(kind)
    return None if name is None else HARDWARE[name].peak_tflops * 1e12


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


# Terms fitted to XLA:TPU's own compiles of the real programs (benchmarks/tpu_memory.py;
# benchmarks/results/tpu_memory.md checks every paper model against them). With fsdp > 1 XLA keeps,
# per layer, (fsdp - 1) shards' worth beyond the layer's own shard (GATHERS_PER_LAYER of them): at the
# train step's peak these are copies of each shard feeding XLA's async slices of the fsdp gathers
# (7B, Mistral and 13B at full depth on v5e-8); nothing with fsdp = 1 (v4-8). The executable grows a
# few MiB per unrolled layer. The decode loop is its own case (`_decode_loop_bytes`).
CODE_BYTES_PER_LAYER = {"train": 4 * 2 ** 20, "scoring": 7 * 2 ** 20, "generation": 11 * 2 ** 20}
GATHERS_PER_LAYER = {"train": 1.0, "scoring": 1.0}
# Copies XLA:TPU keeps of each layer's weight shard in the decode loop, in shards per layer, when the
# loop's weights are gathered (fsdp > 1): Llama-2-7B, Mistral-7B and Llama-2-13B at full depth on v5e-8.
DECODE_WEIGHT_COPIES = 0.9


def _layer_weight_bytes(config: ModelConfig, model_shards: int) -> float:
    """One decoder layer's weights per device (embeddings and head excluded)."""
    layer = (config.num_params() - 2 * config.vocab_size * config.hidden_size) / config.num_layers
    return layer * BYTES[config.param_dtype] / model_shards


def _gathered_layer_bytes(config: ModelConfig, fsdp: int, tensor: int, program: str) -> float:
    """Live bytes per layer of the weights gathered over fsdp (the part beyond each device's own shard)."""
    return GATHERS_PER_LAYER[program] * (fsdp - 1) * _layer_weight_bytes(config, fsdp * tensor)


def _decode_loop_bytes(config: ModelConfig, fsdp: int, tensor: int) -> float:
    """What the decode loop holds beyond the shards and one KV cache: XLA hoists each layer's fsdp
    all-gather out of the loop, so every layer's whole gathered weights (fsdp x its shard) stay live
    for all steps, next to XLA's copies of the shards."""
    if fsdp == 1:
        return 0.0
    return config.num_layers * (fsdp + DECODE_WEIGHT_COPIES) * _layer_weight_bytes(config, fsdp * tensor)


def lora_state_bytes(config: ModelConfig, fsdp: int, tensor: int) -> float:
    """fp32 adapters per device with gradient and two Adam moments (16 B/param): lora_a is split over
    fsdp (its input axis is `embed`), lora_b over tensor (its output axis is the heads)."""
    if config.lora is None:
        return 0.0
    per_layer = 0.0
    for target in config.lora.targets:
        inputs, outputs = config.projection_shape(target)
        per_layer += config.lora.rank * (inputs / fsdp + outputs / tensor)
    return config.num_layers * per_layer * 16


def _attention_temporaries(config: ModelConfig, rows: int, queries: int, keys: int, tensor: int,
                           splash_ok: bool, platform: str) -> float:
    """Live fp32 attention scores, as `platform` runs the row (`resolve_attention_impl`): none with
    splash (its blocks stay in VMEM), one query chunk with chunked attention, else the whole square;
    one such block per row and head (the scoring compiles on v5e-8 and v4-8: XLA fuses the softmax
    into the product with V). `splash_ok`: the row has no branches (training rows, prefills; not scoring)."""
    from t5x_like.models.llama import resolve_attention_impl, ATTENTION_CHUNK

    impl = resolve_attention_impl(config.attention_impl, queries, platform, splash_ok)
    if impl == "splash":
        return 0.0
    live_queries = min(queries, ATTENTION_CHUNK) if impl == "chunked" else queries
    return rows * max(1, config.num_heads // tensor) * live_queries * keys * 4


def _layer_activations(config: ModelConfig, rows: int, tokens: int, tensor: int) -> float:
    """One layer's live activations: residual stream in and out, MLP gate/up/product split over tensor."""
    return rows * tokens * (2 * config.hidden_size + 3 * config.intermediate_size // tensor) * BYTES[config.dtype]


def estimate_training(config: ModelConfig, shape: TrainShape, hardware: Hardware, mfu: float = 0.4) -> Estimate:
    """Per-device memory and step time of a training step under `shape` on `hardware`."""
    n = config.num_params()
    weights = n * BYTES[config.param_dtype] / shape.model_shards
    if shape.lora:
        state = lora_state_bytes(config, shape.fsdp, shape.tensor)
    else:  # fp32 master copy (when params are not fp32) + fp32 grads + two Adam moments
        state = n * ((0 if config.param_dtype == "float32" else 4) + 4 + 8) / shape.model_shards
    local_batch = max(1, -(-shape.batch_size // (shape.data * shape.fsdp)))
    tokens = local_batch * shape.seq_len
    act = BYTES[config.dtype]
    working = (2 * _layer_activations(config, local_batch, shape.seq_len, shape.tensor)
               + _attention_temporaries(config, local_batch, shape.seq_len, shape.seq_len, shape.tensor, True,
                                        hardware.platform))
    if shape.remat:  # each layer's input is saved (replicated over tensor: the rules do not split embed)
        saved = tokens * config.hidden_size * act
    else:
        saved = working
    per_layer = saved + _gathered_layer_bytes(config, shape.fsdp, shape.tensor, "train")
    logits = 3 * tokens * config.vocab_size * 4 / shape.tensor  # fp32 logits, softmax and its gradient
    activations = (config.num_layers * (per_layer + CODE_BYTES_PER_LAYER["train"]) + working + logits)
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
                          eval_cfg.score_batch_tokens or DEFAULT_MAX_BATCH_TOKENS,
                          eval_cfg.generate_batch_tokens or DEFAULT_MAX_BATCH_TOKENS, *mesh)


CACHE_COPIES = 2  # KV caches live as the prefill hands over to the loop: its input and its output (v4-8 compiles)


def _forward_temporaries(config: ModelConfig, rows: int, queries: int, keys: int, tensor: int,
                         splash_ok: bool, platform: str) -> float:
    """One layer's working set for `rows` local rows: activations and live attention scores."""
    return (_layer_activations(config, rows, queries, tensor)
            + _attention_temporaries(config, rows, queries, keys, tensor, splash_ok, platform))


def estimate_inference(config: ModelConfig, shape: InferenceShape, hardware: Hardware) -> InferenceEstimate:
    """Per-device memory of the sharded engine's largest scoring body and generation program."""
    from t5x_like.decoding import PROMPT_BUCKET_STEP, new_tokens_bucket
    from t5x_like.scoring import bucket_for, length_buckets

    dp, shards = shape.data * shape.fsdp, shape.fsdp * shape.tensor
    weights = config.num_params() * BYTES[config.param_dtype] / shards
    length = shape.max_length
    score_rows = shape.rows(length, shape.score_batch_tokens)
    hidden_out = score_rows // dp * length * config.hidden_size * BYTES[config.dtype]
    per_layer = _gathered_layer_bytes(config, shape.fsdp, shape.tensor, "scoring") + CODE_BYTES_PER_LAYER["scoring"]
    scoring = (weights + hidden_out + config.num_layers * per_layer
               + _forward_temporaries(config, score_rows // dp, length, length, shape.tensor, False, hardware.platform))
    gen_rows, kv, generation = 0, 0.0, 0.0
    if shape.max_new_tokens:  # the generator's own largest program: prompt bucket + new-token bucket slots
        new = new_tokens_bucket(shape.max_new_tokens)
        prompt = bucket_for(length - shape.max_new_tokens, length_buckets(length, step=PROMPT_BUCKET_STEP))
        slots = prompt + new
        gen_rows = shape.rows(slots, shape.generate_batch_tokens)
        kv_heads = max(1, config.num_kv_heads // shape.tensor)
        kv = 2 * config.num_layers * gen_rows // dp * slots * kv_heads * config.head_dim * BYTES[config.dtype]
        logits = gen_rows * config.vocab_size * 4
        code = config.num_layers * CODE_BYTES_PER_LAYER["generation"]
        prefill = (weights + CACHE_COPIES * kv + logits + code
                   + _forward_temporaries(config, gen_rows // dp, prompt, slots, shape.tensor, True, hardware.platform))
        generation = max(prefill, weights + kv + logits + code + _decode_loop_bytes(config, shape.fsdp, shape.tensor))
    fits = max(scoring, generation) / GIB <= 0.9 * hardware.memory_gib
    return InferenceEstimate(weights / GIB, score_rows, scoring / GIB, gen_rows, kv / GIB, generation / GIB, fits)


@dataclasses.dataclass(frozen=True)
class Throughput:
    """Roofline evaluation throughput per chip: what FLOPs and HBM bandwidth allow, no overheads."""

    prefill_tokens_per_s: float  # scoring / prompt tokens, compute-bound
    decode_rows: int  # global rows decoded together
    decode_tokens_per_s: float  # new tokens per chip per second at `decode_rows`
    decode_bound: str  # "memory" (weights + cache reads) or "compute"


def forward_flops_per_token(config: ModelConfig, context: int) -> float:
    """2 x matmul params + causal attention over `context` keys on average (QK^T and PV)."""
    matmul = config.num_params() - config.vocab_size * config.hidden_size * (not config.tie_word_embeddings)
    return 2.0 * matmul + 4.0 * config.num_layers * context * config.num_heads * config.head_dim


def roofline(config: ModelConfig, shape: InferenceShape, hardware: Hardware, decode_rows: int) -> Throughput:
    """Prefill at the length's average causal context; decoding `decode_rows` rows whose cache holds a
    full prompt: each step every chip reads its weight shard and its share of the KV cache once."""
    devices = shape.data * shape.fsdp * shape.tensor
    peak = hardware.peak_tflops * 1e12
    prefill = peak / forward_flops_per_token(config, shape.max_length // 2)
    context = shape.max_length - shape.max_new_tokens // 2
    flops_step = decode_rows * forward_flops_per_token(config, context) / devices
    weights = config.num_params() * BYTES[config.param_dtype] / (shape.fsdp * shape.tensor)
    kv_heads = max(1, config.num_kv_heads // shape.tensor)
    cache = (2 * config.num_layers * -(-decode_rows // (shape.data * shape.fsdp)) * context * kv_heads
             * config.head_dim * BYTES[config.dtype])
    memory_s, compute_s = (weights + cache) / (hardware.hbm_gbps * 1e9), flops_step / peak
    step = max(memory_s, compute_s)
    return Throughput(prefill, decode_rows, decode_rows / devices / step, "memory" if memory_s >= compute_s else "compute")


def max_generation_rows(config: ModelConfig, shape: InferenceShape, hardware: Hardware, fraction: float = 0.9,
                        limit: int = 4096) -> int:
    """The most generation rows (whole over data x fsdp) whose estimated program fits `fraction` of memory."""
    dp, best = shape.data * shape.fsdp, 0
    for rows in range(dp, limit + 1, dp):
        wide = dataclasses.replace(shape, batch_size=rows, generate_batch_tokens=rows * 2 * shape.max_length)
        if estimate_inference(config, wide, hardware).generation_gib > fraction * hardware.memory_gib:
            break
        best = rows
    return best


def parse_hardware(name: str) -> tuple[Hardware, int]:
    """'tpu-v5e-8' -> (TPU v5e chip, 8); a name without a count means one device."""
    kind, _, count = name.rpartition("-")
    if not count.isdigit():
        kind, count = name, "1"
    if kind not in HARDWARE:
        raise ValueError(f"unknown hardware {name!r}; use <kind>[-<devices>] with kind in {sorted(HARDWARE)}")
    return HARDWARE[kind], int(count)

