"""Llama-2-13B (hub id meta-llama/Llama-2-13b-hf). Set `path` to a local download of it;
`random` holds its config.json so shapes are known offline (dry runs, memory estimates)."""
import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _ROOT not in sys.path:  # config_flags loads this file by path; make `configs` importable
    sys.path.insert(0, _ROOT)

from configs.base import llama_config_json, named_model_config  # noqa: E402


def get_config():
    config_json = llama_config_json(
        vocab_size=32000, hidden_size=5120, intermediate_size=13824, num_hidden_layers=40,
        num_attention_heads=40, num_key_value_heads=40, max_position_embeddings=4096, torch_dtype='float16')
    m = named_model_config("llama2_13b", config_json, tokenizer="llama2")
    return m
