"""The error policy: user errors print one line; any other exception keeps its traceback."""
from __future__ import annotations

import pathlib
import re
import subprocess
import sys

import pytest

from t5x_like.errors import UserError, one_line_errors
from t5x_like.evaluation.config import EvalConfigError

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_user_errors_become_one_line_and_others_keep_their_traceback():
    with pytest.raises(SystemExit, match=r"^evaluate: error: --config.eval.mode='beam'"):
        with one_line_errors("evaluate"):
            raise EvalConfigError("--config.eval.mode='beam'; expected one of ('generate', 'loglik')")
    with pytest.raises(SystemExit, match="^train: error: no such file: x.json"):
        with one_line_errors("train"):
            raise FileNotFoundError("no such file: x.json")
    with pytest.raises(ValueError, match="operands could not be broadcast"):  # a bug: not swallowed
        with one_line_errors("train"):
            raise ValueError("operands could not be broadcast together with shapes (3,) (4,)")


def test_every_cli_uses_the_one_policy():
    """No entry point turns caught exceptions into a one-line exit on its own; those that run
    project code under a config do it through errors.one_line_errors, and parse flags through
    errors.run_app (config-override typos are one line too)."""
    for path in sorted((REPO / "launch").glob("*.py")):
        text = path.read_text()
        assert not re.search(r"except[^\n]*:\n\s+(sys\.exit|raise SystemExit)", text), path.name
        if "__main__" in text and path.name not in ("config_reference.py",):
            assert "one_line_errors" in text, path.name
            if path.name != "lm_eval.py":  # lm-eval's own argparse CLI, not absl flags
                assert "run_app(" in text and "app.run(" not in text, path.name


def test_a_bad_config_value_is_one_line_and_a_deep_bug_a_traceback(tmp_path):
    """launch.prepare_data end to end: a bad config value exits with one line; a ValueError raised
    inside the stage itself (here: the pipeline's own writer fails) keeps its traceback."""
    bad = subprocess.run([sys.executable, "-m", "launch.prepare_data", "--config=configs/data/offline.py",
                          f"--output_dir={tmp_path / 'a'}", "--config.tasks=no_such_task"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0
    assert bad.stderr.strip().splitlines()[-1].startswith("prepare_data: error: ")
    assert "Traceback" not in bad.stderr
    code = ("import sys; from absl import app; from launch import prepare_data; from t5x_like.data import pipeline; "
            "pipeline.prepare = lambda *a: (_ for _ in ()).throw(ValueError('a real bug')); "
            f"sys.argv = ['prepare_data', '--config=configs/data/offline.py', '--output_dir={tmp_path / 'b'}']; "
            "app.run(prepare_data.main)")
    deep = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert deep.returncode != 0
    assert "Traceback" in deep.stderr and deep.stderr.strip().splitlines()[-1] == "ValueError: a real bug"


def test_project_error_types_are_user_errors():
    from t5x_like import checkpoints, experiment, hf_io, memory, partitioning, settings, sweep, train_data, trainer
    from t5x_like.data import mixtures, pipeline
    for error in (EvalConfigError, experiment.ExperimentError, partitioning.PartitioningError, train_data.DataError,
                  settings.UnknownSettingError, sweep.SweepError, hf_io.CheckpointError, memory.MemoryBudgetError,
                  checkpoints.ForeignCheckpointError, trainer.NonFiniteError, mixtures.UnknownSetupError,
                  pipeline.DataConfigError):
        assert issubclass(error, UserError), error
