"""Resumption (kill -9, SIGTERM, another mesh), exports (HF dir + PEFT adapter), and the CLI around them."""
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from t5x_like.errors import PREEMPTED_EXIT
from train_helpers import REPO, write_rte_mixture

STEPS = 10
OVERRIDES = {"train.num_steps": STEPS, "train.buckets": "(128,)", "train.log_every": 1, "train.eval_every": 5,
             "train.eval_batches": 1, "train.checkpoint_every": 2, "train.batch_size": 8, "train.max_to_keep": 10,
             "train.peak_tflops_per_device": 1.0}


def cli(workdir, mixture, cache, devices=1, export_dir=None, **extra):
    """The documented CLI command (launch.train on configs/experiments/smoke.py) as a Popen."""
    args = [sys.executable, "-m", "launch.train", "--config=configs/experiments/smoke.py", f"--workdir={workdir}",
            f"--config.train.mixture_dir={mixture}", f"--config.model.cache_dir={cache}"]
    args += [f"--config.{k}={v}" for k, v in {**OVERRIDES, **extra}.items()]
    if export_dir:
        args.append(f"--export_dir={export_dir}")
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu",
               PYTHONPATH=str(REPO), JAX_COMPILATION_CACHE_DIR=str(pathlib.Path(cache) / "jax_cache"),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    return subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc, timeout=600, status=0) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == status, out[-4000:]
    return out


def wait_for_checkpoint(workdir: pathlib.Path, step: int, proc, timeout=600) -> None:
    """Polls until checkpoint `step` is finalized (orbax renames its tmp dir to the step number)."""
    deadline = time.time() + timeout
    while not (workdir / "checkpoints" / str(step) / "state").is_dir():
        assert proc.poll() is None, proc.stdout.read()[-4000:]
        assert time.time() < deadline
        time.sleep(0.05)


def checkpoint_params(workdir: pathlib.Path, step: int) -> dict:
    import orbax.checkpoint as ocp
    from flax import traverse_util
    import jax
    path = workdir / "checkpoints" / str(step) / "state"
    checkpointer = ocp.StandardCheckpointer()
    one_device = jax.sharding.SingleDeviceSharding(jax.devices()[0])  # whatever mesh saved it
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=one_device),
                          checkpointer.metadata(path).item_metadata.tree)
    state = checkpointer.restore(path, target)
    return {"/".join(k): np.asarray(v) for k, v in traverse_util.flatten_dict(state["params"]).items()}


def metric_losses(workdir: pathlib.Path) -> dict[int, float]:
    rows = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
    steps = [r["step"] for r in rows if "loss" in r]
    assert len(steps) == len(set(steps)), "a resumed run duplicated metrics rows"
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


@pytest.fixture(scope="module")
def setup(tmp_path_factory, data_dir):
    tmp = tmp_path_factory.mktemp("ckpt")
    mixture = write_rte_mixture(tmp / "mix", data_dir, n_train=48, n_val=8)
    return tmp, mixture, tmp / "models"


@pytest.fixture(scope="module")
def uninterrupted(setup) -> pathlib.Path:
    tmp, mixture, cache = setup
    finish(cli(tmp / "ref", mixture, cache))
    return tmp / "ref"


@pytest.mark.slow
def test_kill9_then_rerun_resumes_to_bitwise_equal_params(setup, uninterrupted):
    tmp, mixture, cache = setup
    workdir = tmp / "killed"
    proc = cli(workdir, mixture, cache)
    wait_for_checkpoint(workdir, 4, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (workdir / "checkpoints" / str(STEPS)).exists()
    out = finish(cli(workdir, mixture, cache))
    assert "resumed from step" in out
    ref, got = checkpoint_params(uninterrupted, STEPS), checkpoint_params(workdir, STEPS)
    for key in ref:  # same compiled program, same data position and RNG: bitwise on CPU
        np.testing.assert_array_equal(got[key], ref[key], err_msg=key)
    assert metric_losses(workdir) == metric_losses(uninterrupted)


@pytest.mark.slow
def test_sigterm_saves_exits_preempted_and_resumes_on_another_mesh(setup, uninterrupted):
    """SIGTERM: the state is saved and the CLI exits with PREEMPTED_EXIT (75) and one line saying to
    rerun, so `train && evaluate` stops; the rerun resumes on another mesh."""
    tmp, mixture, cache = setup
    workdir = tmp / "preempted"
    proc = cli(workdir, mixture, cache, devices=8, **{"partitioning.mesh_shape": "(1,8,1)"})
    wait_for_checkpoint(workdir, 2, proc)
    proc.send_signal(signal.SIGTERM)
    out = finish(proc, status=PREEMPTED_EXIT)
    assert "SIGTERM: saved step" in out and "Traceback" not in out
    saved = int(out.split("SIGTERM: saved step ")[1].split()[0])
    assert out.strip().splitlines()[-1] == (f"train: error: preempted (SIGTERM) at step {saved}; the state is saved "
                                            f"in {workdir}/checkpoints: rerun the same command to resume")
    assert 2 <= saved < STEPS and (workdir / "checkpoints" / str(saved) / "state").is_dir()
    out = finish(cli(workdir, mixture, cache, devices=8, **{"partitioning.mesh_shape": "(2,2,2)"}))
    assert f"resumed from step {saved}" in out
    ref, got = checkpoint_params(uninterrupted, STEPS), checkpoint_params(workdir, STEPS)
    for key in ref:  # other meshes reduce in another order: fp32 rounding only (see test_trainer_sharding)
        np.testing.assert_allclose(got[key], ref[key], rtol=1e-4, atol=1e-6, err_msg=key)
    np.testing.assert_allclose(list(metric_losses(workdir).values()), list(metric_losses(uninterrupted).values()),
                               rtol=1e-5)


@pytest.mark.slow
@pytest.mark.torch
def test_rerun_of_finished_run_exports_merged_hf_model_and_peft_adapter(setup, uninterrupted):
    torch = pytest.importorskip("torch")
    import jax.numpy as jnp
    import transformers
    from safetensors.numpy import load_file
    from t5x_like import hf_io
    from t5x_like.models.llama import Llama
    tmp, mixture, cache = setup
    export = tmp / "export"
    out = finish(cli(uninterrupted, mixture, cache, export_dir=export))
    assert f"resumed from step {STEPS}" in out and f"step {STEPS}/" not in out  # nothing retrained
    trained = checkpoint_params(uninterrupted, STEPS)

    adapter = load_file(export / "adapter" / "adapter_model.safetensors")
    config = json.loads((export / "adapter" / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"], config["target_modules"]) == (8, 16.0, ["q_proj", "v_proj"])
    np.testing.assert_array_equal(adapter["base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight"],
                                  trained["layers_1/self_attn/v_proj/lora_b"].T)
    assert json.loads((export / "model" / "train_config.json").read_text())["experiment"] == "smoke"

    # The merged model: our loader and transformers give the same logits, and the merge is W + s*A@B.
    model_cfg, merged = hf_io.load_model_dir(str(export / "model"))
    base_cfg, base = hf_io.load_model_dir(str(cache_model_dir(cache)))
    kernel = np.asarray(base["layers_0"]["self_attn"]["q_proj"]["kernel"])
    expected = kernel + 16.0 / 8 * trained["layers_0/self_attn/q_proj/lora_a"] @ trained["layers_0/self_attn/q_proj/lora_b"]
    np.testing.assert_allclose(np.asarray(merged["layers_0"]["self_attn"]["q_proj"]["kernel"]), expected, atol=1e-6)
    tokens = np.array([[1, 450, 7483, 310, 3444, 338]], np.int32)
    ours = Llama(model_cfg).apply({"params": merged}, jnp.asarray(tokens), jnp.arange(6)[None], method=Llama.forward_logits)
    hf = transformers.AutoModelForCausalLM.from_pretrained(export / "model", dtype=torch.float32).eval()
    with torch.no_grad():
        theirs = hf(torch.tensor(tokens, dtype=torch.long)).logits.numpy()
    np.testing.assert_allclose(np.asarray(ours), theirs, atol=1e-4)


def cache_model_dir(cache: pathlib.Path) -> pathlib.Path:
    """The tiny random model the smoke config resolved into `cache`."""
    sys.path.insert(0, str(REPO))
    from configs.models import tiny
    from t5x_like import model_dirs
    cfg = tiny.get_config()
    cfg.cache_dir = str(cache)
    return pathlib.Path(model_dirs.resolve_model_dir(cfg))
