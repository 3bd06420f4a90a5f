"""Smoke run: a tiny random Llama (configs/models/tiny.py), LoRA, a mixture of a few real tasks.

Every stage of an experiment in a few minutes on a CPU (CI runs it):
python -m launch.run_experiment --config=configs/experiments/smoke.py --workdir=/tmp/smoke_exp
Training alone:
python -m launch.train --config=configs/experiments/smoke.py --workdir=/tmp/smoke [--export_dir=/tmp/smoke_export]
The mixture is prepared into <workdir>/data from $T5X_LIKE_DATA_DIR (or --config.data.data_dir)
unless --config.train.mixture_dir points at a prepared one. Trains in seconds on a CPU.
"""
import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _ROOT not in sys.path:  # config_flags loads this file by path; make `configs` importable
    sys.path.insert(0, _ROOT)

from configs import base  # noqa: E402
from configs.data import default as data_default  # noqa: E402
from configs.models import tiny  # noqa: E402


def get_config():
    config = base.get_config()
    config.experiment = "smoke"
    config.model = tiny.get_config()
    config.data = data_default.get_config()
    config.data.tasks = "rte,copa,bool_q"
    config.data.formats = "flan,samplegen,gold_pipeline,base_d"
    config.data.carve_example_pool = True  # bool_q has no train split offline
    config.data.num_test = 20
    config.data.mixture_size = 96
    config.partitioning.mesh_shape = (1, -1, 1)
    t = config.train
    t.lora.rank = 8
    t.lora.dropout = 0.1
    t.batch_size = 8
    t.buckets = (128, 256, 512)
    t.num_steps = 12
    t.learning_rate = 1e-3
    t.warmup_ratio = 0.1
    t.log_every = 2
    t.eval_every = 6
    t.eval_batches = 2
    t.checkpoint_every = 4
    e = config.eval
    e.mode = "loglik"
    e.num_test = 8
    e.max_new_tokens_base = 16
    e.max_new_tokens_tuned = 24  # a random model never writes "Answer Solution:"; keep SampleGen-D short
    config.tuning.seeds = "42"
    config.analysis.bootstrap_samples = 200
    return config
