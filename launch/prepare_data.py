r"""Prepare a data directory: prompt-formatted task splits, training mixtures, manifest.

python -m launch.prepare_data --config=configs/data/default.py --output_dir=OUT \
    [--config.data_dir=DIR] [--config.seed=N] [--config.tasks=rte,copa] [--config.num_test=N]
"""
from absl import flags
from absl import logging
from ml_collections import config_flags

from t5x_like import io_utils
from t5x_like.data import pipeline
from t5x_like.errors import one_line_errors, run_app

_CONFIG = config_flags.DEFINE_config_file("config", "configs/data/default.py", "Data config file.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Directory to write the prepared data into.", required=True)


def main(argv: list[str]) -> None:
    del argv
    with one_line_errors("prepare_data"):
        io_utils.check_writable(_OUTPUT_DIR.value, what="--output_dir")
        manifest = pipeline.prepare(_CONFIG.value, _OUTPUT_DIR.value)
    logging.info("prepared %d tasks, %d files, %d mixtures into %s", len(manifest["tasks"]),
                 len(manifest["files"]), len(manifest["mixtures"]), _OUTPUT_DIR.value)


if __name__ == "__main__":
    run_app(main, "prepare_data")
