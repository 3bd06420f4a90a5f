"""Llama-2-70B (hub id meta-llama/Llama-2-70b-hf; GQA, 8 KV heads). Set `path` to a local download;
`random` holds its config.json so shapes are known offline (dry runs, memory estimates)."""
import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _ROOT not in sys.path:  # config_flags loads this file by path; make `configs` importable
    sys.path.insert(0, _ROOT)

from configs.base import llama_config_json, named_model_config  # noqa: E402


def get_config():
    config_json = llama_config_json(
        vocab_size=32000, hidden_size=8192, intermediate_size=28672, num_hidden_layers=80,
        num_attention_heads=64, num_key_value_heads=8, max_position_embeddings=4096, torch_dtype='float16')
    m = named_model_config("llama2_70b", config_json, tokenizer="llama2")
    return m
