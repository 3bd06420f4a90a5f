"""Two JAX processes on localhost (jax.distributed + CPU collectives) train like one process."""
import socket

import numpy as np
import pytest

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
