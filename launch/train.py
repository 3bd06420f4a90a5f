r"""Instruction-tune a model (LoRA or full) on a prepared mixture; resumable, sharded, exportable.

python -m launch.train --config=configs/experiments/smoke.py [--config.train.num_steps=100] \
    --workdir=DIR [--export_dir=DIR]
Rerunning the same command on the same workdir resumes from its latest checkpoint. SIGTERM saves and
exits with status 75 (t5x_like.errors.PREEMPTED_EXIT): rerun to resume.
"""
import logging as std_logging

from absl import flags
from absl import logging
from ml_collections import config_flags

from t5x_like import trainer
from t5x_like.errors import PreemptedError, one_line_errors, run_app

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory: checkpoints, metrics, TensorBoard.", required=True)
_EXPORT_DIR = flags.DEFINE_string("export_dir", None, "Write the final model (HF dir) and LoRA adapter here.")


def _not_orbax_info(record: std_logging.LogRecord) -> bool:
    """Orbax logs every save phase at INFO; keep its warnings, drop the chatter from the console."""
    return record.levelno >= std_logging.WARNING or "/orbax/" not in record.pathname


def main(argv: list[str]) -> None:
    del argv
    logging.get_absl_handler().addFilter(_not_orbax_info)
    with one_line_errors("train"):
        result = trainer.run(_CONFIG.value, _WORKDIR.value, _EXPORT_DIR.value)
        if result.preempted:  # a distinct exit status, so `train && evaluate` stops here
            raise PreemptedError(f"preempted (SIGTERM) at step {result.step}; the state is saved in "
                                 f"{_WORKDIR.value}/checkpoints: rerun the same command to resume")
    logging.info("finished at step %d, loss %s, validation loss %s", result.step, result.final_loss,
                 result.eval_loss)


if __name__ == "__main__":
    flags.mark_flag_as_required("config")
    run_app(main, "train")
