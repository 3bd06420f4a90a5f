"""The paper's main study on Llama-2-13B: FLAN + SampleGen LoRA tuning (seeds 42, 1234, 10203) on the
default mixture, all five settings on the 37 test tasks + BIG-bench + GSM8K (configs/experiments/paper_common.py).

python -m launch.run_experiment --config=configs/experiments/paper_llama2_13b.py --workdir=DIR \
    --config.model.path=/path/to/hf/model [--config.data.data_dir=DIR] [--dry_run]
"""
import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _ROOT not in sys.path:  # config_flags loads this file by path; make `configs` importable
    sys.path.insert(0, _ROOT)

from configs.experiments import paper_common  # noqa: E402


def get_config():
    return paper_common.paper("llama2_13b")
