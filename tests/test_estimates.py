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
