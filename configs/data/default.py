"""The paper's default data config: every task, the four main formats, the default mixture.

python -m launch.prepare_data --config=configs/data/default.py --output_dir=OUT \
    [--config.data_dir=DIR] [--config.seed=N] [--config.tasks=rte,copa] [--config.num_test=N]
Every key is documented in docs/data.md.
"""
import ml_collections
from ml_collections import config_dict


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.data_dir = config_dict.placeholder(str)  # local <task>/<split>.jsonl dir; None -> $T5X_LIKE_DATA_DIR, then the hub
    c.cache_dir = config_dict.placeholder(str)  # Hugging Face datasets cache (hub sources only)
    c.tasks = "all"  # comma-separated task names, or "all" (every registry task whose data is found)
    c.formats = "flan,samplegen,gold_pipeline,base_d"  # comma-separated format directory names
    c.num_test = 2500  # test items sampled per task (the same items in every format)
    c.seed = 42  # every random choice derives from it
    c.faithful = False  # True: reproduce the original's prompt quirks (literal <s>/</s>, newline before [/INST], ...)
    # the authors' prompts/flan_orig.py (UKPLab/arxiv2025-inherent-limits-plms) or a JSON template set; None = own wordings
    c.templates_file = config_dict.placeholder(str)
    # the authors' prompts/templates.json: its BIG-bench styles (closed, bad-prompt-1..6, adv); None = own wordings
    c.bigbench_templates_file = config_dict.placeholder(str)
    c.carve_example_pool = False  # tasks without a train split: carve in-context examples out of the eval split
    c.carved_pool_size = 100  # at most this many (and at most half the eval split) when carving
    c.mixture = "default"  # mixture setup: default | setup1 .. setup7; "" = no mixture
    c.mixture_size = config_dict.placeholder(int)  # rows before the validation split; None = sum_i min(n_i, rate_cap)
    c.rate_cap = 3000  # examples-proportional mixing cap per task
    c.train_size_limit = 30000  # training rows per task (per-task train files and mixtures)
    c.validation_fraction = 0.1  # seeded validation share of each mixture
    c.ablation_setup = "default"  # gold_pipeline_ablation: the mixture whose examples are shown
    c.num_samples_ablation = 2  # gold_pipeline_ablation: examples per prompt
    return c
