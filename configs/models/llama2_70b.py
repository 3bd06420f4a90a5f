"""Llama-2-70B (hub id meta-llama/Llama-2-70b-hf; GQA, 8 KV heads). Set `path` to a local download;
`random` holds its config.json so shapes are known offline (dry runs, memory estimates)."""
import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _ROOT not in sys.path:  # config_flags loads this file by path; make `configs` importable
    sys.path.insert(0, _ROOT)

from configs.base import get_model_config  # noqa: E402


def get_config():
    m = get_model_config()
    m.name = "llama2_70b"
    m.path = ""  # a local copy of the hub model (config.json + safetensors + tokenizer)
    # config.json of the real model: shapes for dry runs; also a random model of this shape with
    # --config.model.random.enabled=True (the tokenizer below must then exist).
    m.random.tokenizer = os.path.join(os.path.dirname(_ROOT), "shared", "tokenizers", "llama2")
    m.random.architectures = ['LlamaForCausalLM']
    m.random.model_type = 'llama'
    m.random.vocab_size = 32000
    m.random.hidden_size = 8192
    m.random.intermediate_size = 28672
    m.random.num_hidden_layers = 80
    m.random.num_attention_heads = 64
    m.random.num_key_value_heads = 8
    m.random.hidden_act = 'silu'
    m.random.max_position_embeddings = 4096
    m.random.rms_norm_eps = 1e-05
    m.random.rope_theta = 10000.0
    m.random.tie_word_embeddings = False
    m.random.bos_token_id = 1
    m.random.eos_token_id = 2
    m.random.torch_dtype = 'float16'
    return m
