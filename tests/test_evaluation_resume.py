"""kill -9 during `python -m launch.evaluate`, then rerun: every item exactly once, scores equal to an
uninterrupted run, and a finished run rerun does nothing."""
from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from t5x_like import evaluation as ev
from t5x_like.evaluation import store as ev_store
from t5x_like import io_utils
from t5x_like.data import pipeline

from eval_helpers import REPO, cli_args, eval_config, prepare_data, save_tiny_model

SETTINGS = ("gold_pipeline", "flan_d")
TASKS = ("rte", "cb")


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu")


def _wait_for_first_shard(proc: subprocess.Popen, shards: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.isdir(shards) and any(f.endswith(".jsonl") for _, _, files in os.walk(shards) for f in files):
            return
        if proc.poll() is not None:
            raise AssertionError(f"evaluation ended (rc={proc.returncode}) before the first shard was written")
        time.sleep(0.05)
    raise AssertionError("no shard written in time")


@pytest.mark.slow
def test_kill9_then_resume_equals_uninterrupted(tmp_path, data_dir):
    data = prepare_data(tmp_path / "data", data_dir, ",".join(TASKS), num_test=6, formats="flan,gold_pipeline")
    model = save_tiny_model(tmp_path / "model", seed=0)
    flan = save_tiny_model(tmp_path / "flan", seed=1)
    overrides = dict(settings=",".join(SETTINGS), flan_model=str(flan), shard_size=2)
    killed = tmp_path / "killed"
    args = cli_args(data, model, killed, **overrides)
    proc = subprocess.Popen(args, cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_first_shard(proc, str(killed / "shards"))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "scores.csv").exists()
    done_before = sum(len(files) for _, _, files in os.walk(killed / "shards"))
    assert 1 <= done_before < len(SETTINGS) * len(TASKS) * 3

    resumed = subprocess.run(args, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    reference = ev.run(eval_config(data, model, **overrides), str(tmp_path / "uninterrupted"))
    assert reference.computed_items == len(SETTINGS) * len(TASKS) * 6

    for setting in SETTINGS:
        for task in TASKS:
            ids = [r["id"] for r in io_utils.read_jsonl(str(pipeline.split_path(data, "flan", task, "test")))]
            got = io_utils.read_jsonl(ev_store.predictions_path(str(killed), setting, task))
            assert [r["id"] for r in got] == ids  # every item exactly once, in data order
            assert got == io_utils.read_jsonl(ev_store.predictions_path(str(tmp_path / "uninterrupted"), setting, task))
    assert (killed / "scores.csv").read_text() == (tmp_path / "uninterrupted" / "scores.csv").read_text()

    again = subprocess.run(args, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "nothing to do" in again.stderr
