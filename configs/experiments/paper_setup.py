"""The paper's tuning-composition study: the main study with the mixture of setup 1..7 (or default).

--config=configs/experiments/paper_setup.py:setup3            Llama-2-7B tuned on setup 3 (QNLI only)
--config=configs/experiments/paper_setup.py:setup3,mistral_7b  another base model (paper_common.MODELS)
The setups' task lists: t5x_like/data/mixtures.py (SETUPS) and docs/data.md; the seen / held-out
column of every score follows the setup. Without an argument: the default mixture on Llama-2-7B.
"""
import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _ROOT not in sys.path:  # config_flags loads this file by path; make `configs` importable
    sys.path.insert(0, _ROOT)

from configs.experiments import paper_common  # noqa: E402


def get_config(arg: str = ""):
    setup, model = paper_common.parse_arg(arg, "default")
    return paper_common.paper(model, setup)
