"""The paper's grid: 3 base models x (default mixture + setups 1-7) x 3 seeds, one run per seed.

python -m launch.sweep --sweep=configs/sweeps/paper.py --output_dir=DIR --list
  :main   only the default mixture (the main study: 9 runs instead of 72)
Every run is configs/experiments/paper_setup.py:<setup>,<model> tuned with one seed; see
t5x_like/sweep.py and docs/reproducing.md. Point the runs at the models and data with overrides,
whose {model} / {setup} are filled per run: --override=model.path=/models/{model} --override=data.data_dir=/data
"""
import ml_collections


def get_config(arg: str = ""):
    s = ml_collections.ConfigDict()
    s.name = "paper" + (f"_{arg}" if arg else "")
    s.config = "configs/experiments/paper_setup.py:{setup},{model}"  # {model} and {setup} are filled per run
    s.grid = ml_collections.ConfigDict()
    s.grid.models = "llama2_7b,llama2_13b,mistral_7b"
    s.grid.setups = "default" if arg == "main" else "default,setup1,setup2,setup3,setup4,setup5,setup6,setup7"
    s.grid.seeds = "42,1234,10203"
    s.split_seeds = True  # one run (machine) per seed; the first seed's run also evaluates the base model
    s.stages = "prepare,evaluate_base,train,evaluate_tuned"  # analysis runs over the union: launch.sweep --analyze
    s.overrides = ()  # "key=value" config overrides for every run (launch.sweep --override adds more)
    s.python = "python"  # interpreter in each run's command line (--sweep.python=python3 where that is its name)
    if arg not in ("", "main"):
        raise ValueError(f"configs/sweeps/paper.py takes no argument or ':main', got {arg!r}")
    return s
