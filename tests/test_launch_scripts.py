"""The TPU / GPU launch scripts are valid bash and build commands our CLIs accept.

gcloud and SLURM are not available here, so their transport is stood in for by tiny executables on
PATH: `gcloud ... ssh --command=C` runs C with bash in a home dir whose ~/t5x_like is this checkout
(as setup.sh would leave it on a worker); `scontrol show hostnames` prints localhost and `srun`
runs its command once with the SLURM variables of a one-node job. What is tested is our side:
quoting, flags and config keys reaching the real entry points.
"""
import glob
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = sorted(glob.glob(os.path.join(ROOT, "launch", "tpu", "*.sh"))
                 + glob.glob(os.path.join(ROOT, "launch", "gpu", "*.sh"))
                 + glob.glob(os.path.join(ROOT, "launch", "gpu", "*.sbatch")))


@pytest.mark.parametrize("script", SCRIPTS, ids=os.path.basename)
def test_scripts_are_valid_bash(script):
    subprocess.run(["bash", "-n", script], check=True)


def _executable(path, text):
    path.write_text(text)
    path.chmod(0o755)


def _stand_ins(tmp_path):
    """PATH with gcloud / scontrol / srun stand-ins and python3 = this interpreter; a worker home dir."""
    bin_dir, home = tmp_path / "bin", tmp_path / "home"
    bin_dir.mkdir()
    home.mkdir()
    os.symlink(ROOT, home / "t5x_like")
    _executable(bin_dir / "gcloud", '#!/usr/bin/env bash\n'
                'echo "gcloud $*" >> "$GCLOUD_LOG"\n'
                'for a in "$@"; do case "$a" in --command=*) exec bash -c "${a#--command=}";; esac; done\n')
    _executable(bin_dir / "scontrol", "#!/usr/bin/env bash\necho localhost\n")
    _executable(bin_dir / "srun", '#!/usr/bin/env bash\n'
                'while [[ "$1" == --* ]]; do shift; done\n'
                'SLURM_NTASKS=1 SLURM_PROCID=0 exec "$@"\n')
    _executable(bin_dir / "python3", f'#!/usr/bin/env bash\nexec {sys.executable} "$@"\n')
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(home),
           "GCLOUD_LOG": str(tmp_path / "gcloud.log"), "TPU_NAME": "t5x-test", "ZONE": "us-west4-a"}
    return env


def test_tpu_run_reaches_run_experiment_on_every_worker(tmp_path):
    env = _stand_ins(tmp_path)
    workdir = tmp_path / "run dir"  # a space: the remote command line must keep it one argument
    out = subprocess.run([os.path.join(ROOT, "launch", "tpu", "run.sh"), "launch.run_experiment",
                          "--config=configs/experiments/paper_setup.py:setup3,mistral_7b", f"--workdir={workdir}",
                          "--config.hardware=tpu-v5e-8", "--dry_run"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "mistral_7b" in out.stdout and "tpu-v5e-8" in out.stdout and "mixture setup3" in out.stdout
    log = (tmp_path / "gcloud.log").read_text()
    assert "compute tpus tpu-vm ssh t5x-test --zone=us-west4-a --worker=all" in log


def test_tpu_create_picks_the_runtime_of_the_accelerator(tmp_path):
    env = _stand_ins(tmp_path)
    for accelerator, version in (("v5litepod-16", "v2-alpha-tpuv5-lite"), ("v4-32", "tpu-ubuntu2204-base")):
        subprocess.run([os.path.join(ROOT, "launch", "tpu", "create.sh"), "--spot"], env={**env, "ACCELERATOR": accelerator},
                       check=True, capture_output=True)
        last = (tmp_path / "gcloud.log").read_text().splitlines()[-1]
        assert last == (f"gcloud compute tpus tpu-vm create t5x-test --zone=us-west4-a "
                        f"--accelerator-type={accelerator} --version={version} --spot")
    bad = subprocess.run([os.path.join(ROOT, "launch", "tpu", "create.sh")], env={**env, "ACCELERATOR": "v9-8"},
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "unknown accelerator type v9-8" in bad.stderr


@pytest.mark.slow
def test_slurm_train_passes_the_distributed_keys_to_launch_train(tmp_path):
    """One-node 'job': jax.distributed.initialize(localhost:port, 1, 0) for real, then the smoke training."""
    env = {**_stand_ins(tmp_path), "SLURM_JOB_NODELIST": "localhost", "SLURM_NNODES": "1",
           "SLURM_SUBMIT_DIR": ROOT, "COORDINATOR_PORT": "23456",
           "T5X_LIKE_DATA_DIR": os.environ.get("T5X_LIKE_DATA_DIR", os.path.join(os.path.dirname(ROOT), "shared", "data", "tasks"))}
    workdir = tmp_path / "train"
    out = subprocess.run(["bash", os.path.join(ROOT, "launch", "gpu", "slurm_train.sbatch"),
                          "configs/experiments/smoke.py", str(workdir), "--config.train.num_steps=2",
                          "--config.train.checkpoint_every=2"],
                         env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    config = (workdir / "config.json").read_text()
    assert '"coordinator_address": "localhost:23456"' in config and '"num_processes": 1' in config
