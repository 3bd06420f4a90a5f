"""Shared parts of the paper's experiment configs (configs/experiments/paper_*.py).

`paper(model, setup)` is the paper's main study for one base model and one mixture setup: LoRA
FLAN and SampleGen tuning with the three seeds, the 37 test tasks + BIG-bench + GSM8K, all five
settings, the paper's hyperparameters (original_code_facts §4.3, §5) in bf16, and a mesh and
hardware it fits on. The variant and BIG-bench configs start from it. docs/reproducing.md maps
each config to the paper's settings and figures.
"""
import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _ROOT not in sys.path:  # config_flags loads the experiment files by path; make `configs` importable
    sys.path.insert(0, _ROOT)

import ml_collections  # noqa: E402

from configs import base  # noqa: E402
from configs.models import llama2_13b, llama2_70b, llama2_7b, mistral_7b  # noqa: E402
from t5x_like.data import mixtures  # noqa: E402
from t5x_like.data import tasks as registry  # noqa: E402

MODELS = {
    "llama2_7b": llama2_7b.get_config,
    "llama2_13b": llama2_13b.get_config,
    "mistral_7b": mistral_7b.get_config,
    "llama2_70b": llama2_70b.get_config,
}
DEFAULT_MODEL = "llama2_7b"

# Where each model runs. Training shards over 8 devices as fsdp 2 x tensor 4 (the paper's batch of 2
# must divide data x fsdp; tensor must divide the KV heads: 8 for Mistral and 70B). Evaluation runs
# sharded on the same mesh (t5x_like/engine.py through the Partitioner). 8xH100 by default; the
# 7B/13B/Mistral studies also fit a TPU v5e-8 (--config.hardware=tpu-v5e-8); the 70B fits 8xH100 or
# 16 v4 chips, not v5e. Per-device numbers (compiled for TPU): docs/running.md.
PLACEMENT = {  # model -> (hardware, mesh_shape (data, fsdp, tensor), multi_host)
    "llama2_7b": ("h100-8", (1, 2, 4), False),
    "llama2_13b": ("h100-8", (1, 2, 4), False),
    "mistral_7b": ("h100-8", (1, 2, 4), False),
    "llama2_70b": ("h100-8", (1, 2, 4), False),
}

# The test tasks of every paper experiment: the original's 37 test_tasks, BIG-bench (8), GSM8K (MC).
TEST_TASKS = registry.TEST_TASKS + registry.BIGBENCH_TEST_TASKS + registry.OTHER_TEST_TASKS
SEEDS = "42,1234,10203"
TRAIN_EXAMPLES = 20000  # the original's num_train: one epoch over 20k mixture rows
MAIN_SETTINGS = "base_d,gold_pipeline,flan_d,samplegen_d,samplegen_pipeline"


def check_model(model: str) -> str:
    """`model` if it is one of MODELS; otherwise a ValueError naming them."""
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r} in the config argument; choose one of {sorted(MODELS)}")
    return model


def parse_arg(arg: str, first_default: str) -> tuple[str, str]:
    """'<first>[,<model>]' (a config_flags ':arg') -> (first, model); the model defaults to Llama-2-7B."""
    first, _, model = (arg or "").partition(",")
    return first or first_default, check_model(model or DEFAULT_MODEL)


def data_tasks(setup: str) -> str:
    """The tasks to prepare: the setup's training tasks, then every test task (each once)."""
    return ",".join(dict.fromkeys(mixtures.mixture_tasks(setup) + list(TEST_TASKS)))


def set_paper_training(train: ml_collections.ConfigDict) -> None:
    """The original's SFT hyperparameters (LoRA r64 a16 dropout .1 on q/v, AdamW lr 5e-5, batch 2, 4096)."""
    train.mode = "lora"
    train.lora.rank = 64
    train.lora.alpha = 16.0
    train.lora.dropout = 0.1
    train.lora.targets = ("q_proj", "v_proj")
    train.learning_rate = 5e-5
    train.warmup_ratio = 0.03
    train.adam_b1, train.adam_b2, train.adam_eps, train.weight_decay = 0.9, 0.999, 1e-8, 0.0
    train.grad_clip = 1.0
    train.batch_size = 2
    train.microbatches = 1
    train.buckets = (256, 512, 1024, 2048, 4096)  # max length 4096
    train.num_epochs = 1.0
    train.num_steps = 0


def paper(model: str = DEFAULT_MODEL, setup: str = "default") -> ml_collections.ConfigDict:
    """The main study of `model` tuned on the mixture of `setup` (default | setup1 .. setup7)."""
    mixtures.mixture_tasks(setup)  # unknown setups fail here, naming the known ones
    config = base.get_config()
    config.experiment = f"paper_{model}" + ("" if setup == "default" else f"_{setup}")
    config.model = MODELS[model]()
    config.model.dtype = "bfloat16"
    config.model.param_dtype = "bfloat16"  # frozen base in bf16 (the original: 4-bit QLoRA); adapters train in fp32
    config.model.remat_policy = "full"  # 4096-token rows: without recompute a 7B step needs ~23 GiB per device

    d = config.data
    d.tasks = data_tasks(setup)
    d.formats = "flan,samplegen,gold_pipeline,base_d"
    d.mixture = setup
    d.num_test = 2500
    d.seed = 42
    # d.templates_file / d.bigbench_templates_file: None = own wordings; pass the authors' prompts/flan_orig.py
    # and prompts/templates.json to run the paper's own prompts (docs/reproducing.md#prompt-wording)
    # mixture rows before the 10% validation split, so that the train split holds exactly 20,000 rows
    d.mixture_size = round(TRAIN_EXAMPLES / (1 - d.validation_fraction))

    hardware, mesh, multi_host = PLACEMENT[model]
    config.hardware = hardware
    config.partitioning.mesh_shape = mesh
    config.partitioning.multi_host = multi_host

    set_paper_training(config.train)

    e = config.eval
    e.settings = MAIN_SETTINGS
    e.tasks = ",".join(TEST_TASKS)
    e.num_test = 0  # every prepared item: the same 2,500 per task in every setting
    e.mode = "generate"  # greedy decoding
    e.max_new_tokens_base = 250
    e.max_new_tokens_tuned = 1024
    # Context of every paper model's evaluation: Llama-2's own 4096; Mistral's config says 32768, whose
    # 32k-token buckets would not fit any chip (docs/running.md) while the paper's prompts fit 4096.
    e.max_length = 4096
    e.setup = setup

    config.tuning.formats = "flan,samplegen"
    config.tuning.seeds = SEEDS
    return config
