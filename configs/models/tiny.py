"""A tiny random Llama (2 layers, hidden 64, GQA 4 query / 2 KV heads) with the real Llama-2 tokenizer
(vocab 32000): for CPU smoke runs and tests. Saved once into the cache, keyed by these fields and
the seed."""
import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _ROOT not in sys.path:  # config_flags loads this file by path; make `configs` importable
    sys.path.insert(0, _ROOT)

from configs.base import get_model_config  # noqa: E402


def get_config():
    m = get_model_config()
    m.name = "tiny"
    m.random.enabled = True
    m.random.seed = 0
    m.random.tokenizer = os.path.join(os.path.dirname(_ROOT), "shared", "tokenizers", "llama2")
    m.random.architectures = ["LlamaForCausalLM"]
    m.random.model_type = "llama"
    m.random.vocab_size = 32000
    m.random.hidden_size = 64
    m.random.intermediate_size = 172
    m.random.num_hidden_layers = 2
    m.random.num_attention_heads = 4
    m.random.num_key_value_heads = 2
    m.random.hidden_act = "silu"
    m.random.max_position_embeddings = 4096
    m.random.rms_norm_eps = 1e-05
    m.random.rope_theta = 10000.0
    m.random.tie_word_embeddings = False
    m.random.bos_token_id = 1
    m.random.eos_token_id = 2
    return m
