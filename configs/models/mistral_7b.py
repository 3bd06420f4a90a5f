"""Mistral-7B-v0.1 (hub id mistralai/Mistral-7B-v0.1; GQA, sliding window 4096). Set `path` to a local
download; `random` holds its config.json so shapes are known offline (dry runs, memory estimates)."""
import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _ROOT not in sys.path:  # config_flags loads this file by path; make `configs` importable
    sys.path.insert(0, _ROOT)

from configs.base import llama_config_json, named_model_config  # noqa: E402


def get_config():
    config_json = llama_config_json(
        architectures=['MistralForCausalLM'], model_type='mistral', vocab_size=32000, hidden_size=4096,
        intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
        max_position_embeddings=32768, sliding_window=4096, torch_dtype='bfloat16')
    m = named_model_config("mistral_7b", config_json, tokenizer="mistral")
    return m
