"""Non-finite losses stop the run naming the step and keep the last good checkpoint; a step that
cannot fit in memory is refused after compilation, before any training."""
import pathlib

import pytest

from t5x_like import memory, trainer
from train_helpers import smoke_config, write_rte_mixture

FAST = {"train.buckets": (128,), "train.eval_every": 100, "train.eval_batches": 1, "train.log_every": 1,
        "train.peak_tflops_per_device": 1.0}


@pytest.fixture(scope="module")
def mixture(tmp_path_factory, data_dir) -> pathlib.Path:
    return write_rte_mixture(tmp_path_factory.mktemp("mix"), data_dir, n_train=32, n_val=8)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> pathlib.Path:
    return tmp_path_factory.mktemp("models")


@pytest.mark.slow
def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path, mixture, cache):
    # An absurd learning rate (Adam steps are ~lr in size) sets the adapters near the fp32 maximum: step 1 is finite,
    # step 2's loss is not. The divergence bounds are off, so that only the NaN guard acts.
    config = smoke_config(mixture, cache, **FAST, **{"train.learning_rate": 1e38, "train.warmup_ratio": 0.0,
                                                     "train.num_steps": 6, "train.checkpoint_every": 1,
                                                     "train.async_checkpointing": False,
                                                     "train.divergence_param_norm": 0.0})
    with pytest.raises(trainer.NonFiniteError, match=r"step 2: loss=.* is not finite.*last good checkpoint is step 1"):
        trainer.run(config, str(tmp_path / "wd"))
    steps = sorted(int(p.name) for p in (tmp_path / "wd" / "checkpoints").iterdir() if p.name.isdigit())
    assert steps == [1]


def test_step_that_does_not_fit_is_refused_before_training(tmp_path, mixture, cache):
    config = smoke_config(mixture, cache, **FAST, **{"train.max_memory_fraction": 1e-6})
    with pytest.raises(memory.MemoryBudgetError, match=r"needs .* GiB per device .*model.remat_policy"):
        trainer.run(config, str(tmp_path / "wd"))
    assert not list((tmp_path / "wd").glob("checkpoints/*")) and not (tmp_path / "wd" / "metrics.jsonl").exists()
