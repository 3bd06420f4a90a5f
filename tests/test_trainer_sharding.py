"""The same training steps on 8 CPU devices under different meshes, and on one device, agree."""
import numpy as np
import pytest

from train_helpers import train_in_subprocess, write_rte_mixture

STEPS = {"train.num_steps": 3, "train.buckets": [128], "train.log_every": 1, "train.eval_every": 3,
         "train.eval_batches": 1, "train.checkpoint_every": 3, "train.batch_size": 16, "train.microbatches": 2,
         "train.peak_tflops_per_device": 1.0}


@pytest.mark.slow
def test_meshes_and_single_device_give_the_same_losses_and_params(tmp_path, data_dir):
    mixture = write_rte_mixture(tmp_path / "mix", data_dir, n_train=32, n_val=8)
    cache = tmp_path / "models"
    runs = {"1dev": train_in_subprocess(tmp_path, "1dev", mixture, cache, 1, {**STEPS, "partitioning.mesh_shape": [1, 1, 1]})}
    for shape in ([8, 1, 1], [1, 8, 1], [2, 2, 2]):
        name = "x".join(map(str, shape))
        runs[name] = train_in_subprocess(tmp_path, name, mixture, cache, 8, {**STEPS, "partitioning.mesh_shape": shape})
    ref_summary, ref_params = runs["1dev"]
    assert len(ref_summary["losses"]) == 3 and ref_summary["losses"][-1] < ref_summary["losses"][0]
    for name, (summary, params) in runs.items():
        # Tolerance: the meshes reduce gradients/losses in a different order (fp32 rounding, ~1e-7
        # relative); Adam divides by sqrt(v) so parameter differences stay at that relative level.
        np.testing.assert_allclose(summary["losses"], ref_summary["losses"], rtol=1e-5, err_msg=name)
        np.testing.assert_allclose(summary["eval"], ref_summary["eval"], rtol=1e-5, err_msg=name)
        assert params.keys() == ref_params.keys()
        for key in params:
            np.testing.assert_allclose(params[key], ref_params[key], rtol=1e-4, atol=1e-6, err_msg=f"{name} {key}")
        moved = max(np.abs(ref_params[k]).max() for k in ref_params if k.endswith("lora_b"))
        assert moved > 1e-4  # the adapters did train (lora_b starts at zero)


@pytest.mark.slow
def test_gradient_accumulation_matches_one_big_batch(tmp_path, data_dir):
    mixture = write_rte_mixture(tmp_path / "mix", data_dir, n_train=32, n_val=8)
    cache = tmp_path / "models"
    no_dropout = {**STEPS, "partitioning.mesh_shape": [1, 1, 1], "train.lora.dropout": 0.0}
    whole, whole_params = train_in_subprocess(tmp_path, "m1", mixture, cache, 1, {**no_dropout, "train.microbatches": 1})
    split, split_params = train_in_subprocess(tmp_path, "m4", mixture, cache, 1, {**no_dropout, "train.microbatches": 4})
    # The loss is the sum of token NLLs over all microbatches divided once by the total weight.
    np.testing.assert_allclose(split["losses"], whole["losses"], rtol=1e-5)
    for key in whole_params:
        np.testing.assert_allclose(split_params[key], whole_params[key], rtol=1e-4, atol=1e-6, err_msg=key)
