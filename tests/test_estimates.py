"""Analytic estimates against hand-computed values."""
from t5x_like.estimates import HARDWARE, GIB, TrainShape, estimate_training, lora_params, train_flops
from t5x_like.models.config import LoraConfig, ModelConfig

LLAMA2_7B = ModelConfig(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_layers=32,
                        num_heads=32, num_kv_heads=32, head_dim=128, dtype="bfloat16",
                        param_dtype="bfloat16", lora=LoraConfig())


def test_param_counts_match_published_llama2_7b():
    assert LLAMA2_7B.num_params() == 6_738_415_616  # the size transformers reports for Llama-2-7b-hf
    # r=64 adapters on q_proj and v_proj: 32 layers x 2 x 64 x (4096 + 4096)
    assert lora_params(LLAMA2_7B) == 32 * 2 * 64 * 8192


def test_lora_step_flops_skip_weight_gradients():
    tokens, seq = 8192, 4096
    lora = train_flops(LLAMA2_7B, tokens, seq, lora=True)
    full = train_flops(LLAMA2_7B, tokens, seq, lora=False)
    adapters = lora_params(LLAMA2_7B)  # LoRA adds 6 FLOPs per adapter parameter per token
    assert full == 1.5 * (lora - 6 * adapters * tokens)


def test_weights_shard_over_fsdp_and_tensor_but_not_data():
    one = estimate_training(LLAMA2_7B, TrainShape(8, 1024, 1, 1, 1, True, True), HARDWARE["h100"])
    fsdp = estimate_training(LLAMA2_7B, TrainShape(8, 1024, 1, 4, 2, True, True), HARDWARE["h100"])
    data = estimate_training(LLAMA2_7B, TrainShape(8, 1024, 8, 1, 1, True, True), HARDWARE["h100"])
    assert fsdp.weights_gib == one.weights_gib / 8
    assert data.weights_gib == one.weights_gib
    assert one.weights_gib == LLAMA2_7B.num_params() * 2 / GIB


def test_hardware_names_and_mesh_resolution():
    from t5x_like.estimates import parse_hardware
    hw, count = parse_hardware("tpu-v5e-8")
    assert (hw.memory_gib, count) == (16, 8)
    assert parse_hardware("h100")[1] == 1
    import pytest
    with pytest.raises(ValueError, match="unknown hardware"):
        parse_hardware("gpu-8")


def test_lora_state_counts_fp32_adapters_sharded_by_their_own_axes():
    from t5x_like.estimates import lora_state_bytes
    # q_proj and v_proj, rank 64: lora_a (4096 x 64) split over fsdp=2, lora_b (64 x 4096) over tensor=4;
    # fp32 value + gradient + two Adam moments = 16 B.
    per_layer = 2 * (4096 * 64 / 2 + 64 * 4096 / 4)
    assert lora_state_bytes(LLAMA2_7B, fsdp=2, tensor=4) == 32 * per_layer * 16
    assert lora_state_bytes(LLAMA2_7B.replace(lora=None), 2, 4) == 0


def test_decode_roofline_of_one_row_is_weights_plus_cache_over_bandwidth():
    from t5x_like.estimates import InferenceShape, roofline
    shape = InferenceShape(batch_size=1, max_length=4096, max_new_tokens=1024, score_batch_tokens=4096,
                           generate_batch_tokens=8192, data=1, fsdp=1, tensor=1)
    t = roofline(LLAMA2_7B.replace(lora=None), shape, HARDWARE["h100"], decode_rows=1)
    weights = 6_738_415_616 * 2
    cache = 2 * 32 * (4096 - 512) * 32 * 128 * 2  # k and v, 32 layers, mean context 3584, bf16
    assert t.decode_bound == "memory"
    assert abs(t.decode_tokens_per_s - 3350e9 / (weights + cache)) < 1e-6
    # prefill: 989 TFLOP/s over 2 x matmul params + 4 x layers x 2048 x 4096 FLOPs per token
    flops = 2 * (6_738_415_616 - 32000 * 4096) + 4 * 32 * 2048 * 4096
    assert abs(t.prefill_tokens_per_s - 989e12 / flops) < 1e-6


def test_more_generation_rows_fit_where_there_is_more_memory():
    from t5x_like.estimates import InferenceShape, max_generation_rows
    shape = InferenceShape(16, 4096, 1024, 16384, 16384, 1, 2, 4)
    model = LLAMA2_7B.replace(lora=None)
    v5e, h100 = (max_generation_rows(model, shape, HARDWARE[k]) for k in ("tpu-v5e", "h100"))
    assert 0 < v5e < h100 and v5e % 2 == 0 and h100 % 2 == 0


def test_one_peak_table_for_estimates_and_the_trainers_mfu():
    from t5x_like.estimates import peak_flops_of_device_kind
    assert peak_flops_of_device_kind("TPU v5 lite") == HARDWARE["tpu-v5e"].peak_tflops * 1e12 == 197e12
    assert peak_flops_of_device_kind("NVIDIA H100 80GB HBM3") == 989e12
    assert peak_flops_of_device_kind("cpu") is None


def test_decode_loop_holds_every_gathered_layer_only_when_fsdp_splits_weights(monkeypatch):
    from t5x_like.estimates import InferenceShape, estimate_inference

    hardware = HARDWARE["tpu-v5e"]
    base = dict(batch_size=16, max_length=4096, max_new_tokens=1024, score_batch_tokens=16384,
                generate_batch_tokens=16384)
    gathered = estimate_inference(LLAMA2_7B, InferenceShape(**base, data=1, fsdp=2, tensor=4), hardware)
    # Hand-computed: 4 rows x (4096 prompt bucket + 1024 new) slots; per device 2 rows, 8 KV heads.
    kv = 2 * 32 * 2 * 5120 * 8 * 128 * 2
    assert gathered.kv_cache_gib * GIB == kv
    # One layer's bf16 weights / (fsdp x tensor): 4 attention + 3 MLP matrices, its two RMSNorm scales and
    # its share of the final norm.
    layer_shard = (4 * 4096 * 4096 + 3 * 4096 * 11008 + 2 * 4096 + 4096 / 32) * 2 / 8
    loop = (LLAMA2_7B.num_params() * 2 / 8 + kv + 4 * 32000 * 4 + 32 * 11 * 2 ** 20
            + 32 * (2 + 0.9) * layer_shard)  # weights, one cache, logits, code, gathered layers + shard copies
    assert abs(gathered.generation_gib * GIB - loop) < 1.0
    # With fsdp = 1 nothing is gathered: the prefill's hand-over (two caches) is the peak.
    alone = estimate_inference(LLAMA2_7B, InferenceShape(**base, data=1, fsdp=1, tensor=4), hardware)
    assert alone.generation_gib * GIB < (LLAMA2_7B.num_params() * 2 / 4 + 3 * alone.kv_cache_gib * GIB)
    assert alone.generation_gib > alone.weights_gib + 2 * alone.kv_cache_gib
    from t5x_like import estimates
    monkeypatch.setattr(estimates, "DECODE_WEIGHT_COPIES", 5.0)  # shard copies count only where weights are gathered
    fsdp1 = InferenceShape(**base, data=1, fsdp=1, tensor=4)
    assert estimate_inference(LLAMA2_7B, fsdp1, hardware).generation_gib == alone.generation_gib


def test_committed_tpu_compile_table_carries_the_current_estimates():
    """benchmarks/results/tpu_memory.md: its estimate columns are what estimates.py gives now (--rescore)."""
    import os
    import subprocess
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    table = os.path.join(repo, "benchmarks", "results", "tpu_memory.md")
    out = subprocess.run([sys.executable, "-m", "benchmarks.tpu_memory", f"--rescore={table}"], cwd=repo,
                         capture_output=True, text=True, check=True).stdout
    fresh = [line for line in out.splitlines() if line.startswith("| llama2") or line.startswith("| mistral")]
    with open(table) as f:
        committed = [line.strip() for line in f if line.startswith("| llama2") or line.startswith("| mistral")]
    assert len(committed) == 24 and fresh[:24] == committed
