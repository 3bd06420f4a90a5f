"""The data section of the paper's experiments (configs/experiments/paper_common.py), for launch.prepare_data.

python -m launch.prepare_data --config=configs/data/paper.py[:setupN] --output_dir=OUT [--config.data_dir=DIR]
Writes what `launch.run_experiment --stages=prepare` writes into <workdir>/data for the same setup; the
data does not depend on the model. Preparing touches no JAX, so every host of a slice can run it.
"""
import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _ROOT not in sys.path:  # config_flags loads this file by path; make `configs` importable
    sys.path.insert(0, _ROOT)

from configs.experiments import paper_common  # noqa: E402


def get_config(setup: str = "default"):
    return paper_common.paper(paper_common.DEFAULT_MODEL, setup).data
