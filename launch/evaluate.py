r"""Evaluate a base model (and tuned models) on prepared test items in several settings; resumable.

python -m launch.evaluate --config=configs/experiments/<x>.py --workdir=DIR \
    [--config.eval.settings=base_d,gold_pipeline] [--config.eval.tasks=rte,cb] [--config.eval.num_test=N] \
    [--config.eval.mode=loglik] [--config.eval.data_dir=PREPARED] [--config.eval.flan_model=DIR]
Writes DIR/predictions/<setting>/<task>.jsonl, DIR/scores.csv and DIR/scores.json (docs/evaluation.md).
Rerunning the same command resumes a killed run; a finished run does nothing.
"""
from absl import flags
from absl import logging
from ml_collections import config_flags

from t5x_like import evaluation, partitioning
from t5x_like.errors import one_line_errors, run_app

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory: predictions, scores, config, provenance.",
                               required=True)


def main(argv: list[str]) -> None:
    del argv
    with one_line_errors("evaluate"):
        result = evaluation.run(_CONFIG.value, _WORKDIR.value)
    for score in result.scores:
        r = score.row
        logging.info("%-22s %-16s %s = %.2f (n=%d)", r["setting"], r["task"], r["metric"], r["value"], r["n"])
    logging.info("computed %d items; scores in %s/scores.csv", result.computed_items, result.workdir)


def main_then_shutdown(argv: list[str]) -> None:
    try:
        main(argv)
    finally:
        partitioning.shutdown_distributed()


if __name__ == "__main__":
    flags.mark_flag_as_required("config")
    run_app(main_then_shutdown, "evaluate")
