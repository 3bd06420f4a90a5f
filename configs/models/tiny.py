"""A tiny random Llama (2 layers, hidden 64, GQA 4 query / 2 KV heads) with the real Llama-2 tokenizer
(vocab 32000): for CPU smoke runs and tests. Saved once into the cache, keyed by these fields and
the seed."""
import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _ROOT not in sys.path:  # config_flags loads this file by path; make `configs` importable
    sys.path.insert(0, _ROOT)

from configs.base import llama_config_json, named_model_config  # noqa: E402


def get_config():
    config_json = llama_config_json(
        vocab_size=32000, hidden_size=64, intermediate_size=172, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=4096)
    m = named_model_config("tiny", config_json, tokenizer="llama2")
    m.random.enabled = True
    m.random.seed = 0
    return m
