r"""Expand a sweep (models x setups x seeds) into independent runs; run one of them; analyse their union.

python -m launch.sweep --sweep=configs/sweeps/paper.py --output_dir=DIR --list       # write sweep.json, print commands
python -m launch.sweep --sweep=configs/sweeps/paper.py --output_dir=DIR --run_index=3  # run number 3 (one machine)
python -m launch.sweep --sweep=configs/sweeps/paper.py --output_dir=DIR --analyze     # launch.analyze per setup
Add --override=key=value (repeatable; {model} and {setup} are filled per run) for every run's config,
--dry_run to pass --dry_run to the selected run. See t5x_like/sweep.py and docs/reproducing.md.
"""
import os
import sys

from absl import flags
from ml_collections import config_flags

from t5x_like import sweep
from t5x_like.errors import one_line_errors, run_app

_SWEEP = config_flags.DEFINE_config_file("sweep", None, "Sweep config file (configs/sweeps/*.py).", lock_config=False)
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Sweep directory: sweep.json, runs/, analysis/.", required=True)
_OVERRIDE = flags.DEFINE_multi_string("override", [], "key=value config override for every run.")
_LIST = flags.DEFINE_bool("list", False, "Print every run's command (and write sweep.json).")
_RUN_INDEX = flags.DEFINE_integer("run_index", None, "Run this one run (0-based, as --list numbers them).")
_ANALYZE = flags.DEFINE_bool("analyze", False, "Run launch.analyze over the union of each setup's results.")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "With --run_index: pass --dry_run to run_experiment.")


def main(argv: list[str]) -> None:
    del argv
    if _LIST.value + (_RUN_INDEX.value is not None) + _ANALYZE.value != 1:
        raise SystemExit("sweep: give exactly one of --list, --run_index=N, --analyze")
    sweep_cfg = _SWEEP.value
    sweep_cfg.overrides = tuple(sweep_cfg.overrides) + tuple(_OVERRIDE.value)
    output_dir = os.path.abspath(_OUTPUT_DIR.value)
    with one_line_errors("sweep"):
        runs = sweep.expand(sweep_cfg, output_dir)
        path = sweep.write_manifest(output_dir, sweep.manifest(sweep_cfg, config_flags.get_config_filename(flags.FLAGS["sweep"]),
                                                               output_dir, runs))
        if _LIST.value:
            for run in runs:
                print(f"[{run.index}] {run.name}: {run.command_line}")
            print(f"{len(runs)} runs; manifest {path}")
        elif _RUN_INDEX.value is not None:
            code = sweep.execute(sweep.select(runs, _RUN_INDEX.value), ["--dry_run"] if _DRY_RUN.value else [])
            sys.exit(code)
        else:
            sys.exit(sweep.run_analyses(sweep_cfg, runs, output_dir))


if __name__ == "__main__":
    flags.mark_flag_as_required("sweep")
    run_app(main, "sweep")
