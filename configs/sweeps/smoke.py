"""A CPU-sized sweep of the smoke experiment: 2 seeds, one run each (tests and CI of the sweep path).

python -m launch.sweep --sweep=configs/sweeps/smoke.py --output_dir=/tmp/sweep --list
"""
import ml_collections


def get_config():
    s = ml_collections.ConfigDict()
    s.name = "smoke"
    s.config = "configs/experiments/smoke.py"
    s.grid = ml_collections.ConfigDict()
    s.grid.models = "tiny"  # a label only: the template has no {model}
    s.grid.setups = "default"
    s.grid.seeds = "42,1234"
    s.split_seeds = True
    s.stages = "prepare,evaluate_base,train,evaluate_tuned"
    # every setting needs its format; the offline bundle's bool_q has no train split for Gold examples
    s.overrides = ("data.formats=flan,samplegen,gold_pipeline,base_d", "data.carve_example_pool=True")
    s.python = "python"
    return s
