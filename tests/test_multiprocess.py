"""Two JAX processes on localhost (jax.distributed + CPU collectives) train, and run whole experiments, like one."""
import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.conftest import REPO

from train_helpers import finish_training, start_training, train_in_subprocess, write_rte_mixture

STEPS = {"train.num_steps": 3, "train.buckets": [128], "train.log_every": 1, "train.eval_every": 3,
         "train.eval_batches": 2, "train.checkpoint_every": 3, "train.batch_size": 8,
         "train.peak_tflops_per_device": 1.0, "partitioning.mesh_shape": [2, 2, 1]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_agree_with_one(tmp_path, data_dir):
    mixture = write_rte_mixture(tmp_path / "mix", data_dir, n_train=32, n_val=8)
    cache = tmp_path / "models"
    single, single_params = train_in_subprocess(tmp_path, "single", mixture, cache, 4, STEPS)
    port = free_port()
    procs = [start_training(tmp_path, f"proc{i}", mixture, cache, 2, {
        **STEPS, "partitioning.coordinator_address": f"localhost:{port}", "partitioning.num_processes": 2,
        "partitioning.process_id": i}, workdir=tmp_path / "multi") for i in range(2)]
    results = [finish_training(*p) for p in procs]
    for summary, params in results:
        # Each process fed only its half of every batch (make_array_from_process_local_data).
        np.testing.assert_allclose(summary["eval"], single["eval"], rtol=1e-5)
        for key in single_params:
            np.testing.assert_allclose(params[key], single_params[key], rtol=1e-4, atol=1e-6, err_msg=key)
    assert results[0][0]["losses"]  # metrics come from process 0 only (same workdir)
    np.testing.assert_allclose(results[0][0]["losses"], single["losses"], rtol=1e-5)


SMOKE = "configs/experiments/smoke.py"


def _experiment(workdir, devices: int, env: dict, process: tuple[int, int] | None = None) -> subprocess.Popen:
    """launch.run_experiment on the smoke config, as one process or as rank `process[0]` of a 2-process run."""
    flags = []
    if process is not None:
        rank, port = process
        flags = [f"--config.partitioning.coordinator_address=localhost:{port}",
                 "--config.partitioning.num_processes=2", f"--config.partitioning.process_id={rank}"]
    env = {**env, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}", "JAX_PLATFORMS": "cpu"}
    # Output to a file, not a pipe: a process blocked on a full pipe would stall the others at a barrier.
    log = open(f"{workdir}.{'single' if process is None else process[0]}.log", "a+")
    proc = subprocess.Popen([sys.executable, "-m", "launch.run_experiment", f"--config={SMOKE}",
                             f"--workdir={workdir}", *flags], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    proc.log = log
    return proc


def _two_processes(workdir, env) -> list[subprocess.Popen]:
    port = free_port()
    return [_experiment(workdir, 4, env, (rank, port)) for rank in range(2)]


def _finish(procs: list[subprocess.Popen]) -> list[str]:
    outs = []
    for p in procs:
        p.wait(timeout=1500)
        p.log.seek(0)
        outs.append(p.log.read())
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out[:out.find("Extension modules:")][-4000:]
    return outs


def _scores(workdir) -> list[dict]:
    """Every scores.csv row of the experiment, without the adapter column (it names the run's own path)."""
    rows = []
    for path in sorted((workdir / "eval").glob("*/scores.csv")):
        with open(path) as f:
            rows += [{k: v for k, v in r.items() if k != "adapter"} for r in csv.DictReader(f)]
    return sorted(rows, key=lambda r: (r["setting"], r["task"], r["seed"]))


@pytest.mark.slow
def test_two_process_experiment_equals_one_process_and_resumes_after_kill(tmp_path, data_dir):
    """Every stage of the smoke experiment as 2 jax.distributed processes x 4 CPU devices on one workdir:
    the scores of 1 process x 8 devices; each process holds half of every batch; kill -9 of both
    mid-evaluation and a rerun give every item exactly once."""
    env = {**os.environ, "T5X_LIKE_DATA_DIR": str(data_dir)}
    _finish([_experiment(tmp_path / "single", 8, env)])
    outs = _finish(_two_processes(tmp_path / "multi", env))
    assert _scores(tmp_path / "multi") == _scores(tmp_path / "single") != []
    for rank, out in enumerate(outs):
        assert "fsdp=8 tensor=1 over 8 cpu device(s), 2 process(es)" in out
        assert f"process {rank} holds rows ({4 * rank}, {4 * rank + 4}) of each batch" in out
    assert "Correlations across tasks" in outs[0]

    killed = tmp_path / "killed"
    procs = _two_processes(killed, env)
    deadline = time.time() + 900
    while not list((killed / "eval").glob("*/shards/*/*/*.jsonl")) and time.time() < deadline:
        time.sleep(0.1)
    for p in procs:
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
    assert not (killed / "stages" / "evaluate_base.json").exists()  # killed mid-evaluation
    _finish(_two_processes(killed, env))
    assert _scores(killed) == _scores(tmp_path / "single")
    predictions = list((killed / "eval").rglob("predictions/*/*.jsonl"))
    assert len(predictions) == 15  # 5 settings x 3 tasks
    for path in predictions:
        ids = [json.loads(line)["id"] for line in path.read_text().splitlines()]
        assert len(ids) == len(set(ids)) == 8, path
