r"""Run one experiment end to end (resumable; finished stages are skipped).

python -m launch.run_experiment --config=configs/experiments/demo_cpu.py --workdir=DIR \
    [--stages=prepare,evaluate_base,train,evaluate_tuned,analyze] [--dry_run] [--config.x.y=...]
"""
from absl import flags
from absl import logging
from ml_collections import config_flags

from t5x_like import experiment, partitioning
from t5x_like.errors import one_line_errors, run_app

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Experiment directory (created; rerun to resume).", required=True)
_STAGES = flags.DEFINE_list("stages", list(experiment.STAGES), "Stages to run, in pipeline order.")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Print what would run and per-device memory; run nothing.")


def main(argv: list[str]) -> None:
    del argv
    config = _CONFIG.value
    with one_line_errors("run_experiment"):
        if _DRY_RUN.value:
            print(experiment.dry_run(config, _WORKDIR.value, _STAGES.value))
            return
        experiment.run_experiment(config, _WORKDIR.value, _STAGES.value)
    print(open(f"{_WORKDIR.value}/summary.md").read())
    logging.info("summary: %s/summary.md", _WORKDIR.value)


def main_then_shutdown(argv: list[str]) -> None:
    try:
        main(argv)
    finally:
        partitioning.shutdown_distributed()


if __name__ == "__main__":
    flags.mark_flag_as_required("config")
    run_app(main_then_shutdown, "run_experiment")
