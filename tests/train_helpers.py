"""Shared by the trainer tests: a real-data mixture, the smoke config, and 8-device subprocess runs."""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
RTE_LABELS = ("yes", "no")  # HF glue/rte: 0 = entailment, 1 = not_entailment


def rte_prompt(row: dict) -> str:
    return (f"Premise: {row['sentence1']}\nHypothesis: {row['sentence2']}\n"
            f"Does the premise entail the hypothesis? Answer:")


def write_rte_mixture(out_dir: pathlib.Path, data_dir: pathlib.Path, n_train: int, n_val: int) -> pathlib.Path:
    """{"prompt","target"} train/validation jsonl built from the first rows of the real RTE train split."""
    rows = [json.loads(line) for line in open(data_dir / "rte" / "train.jsonl")][: n_train + n_val]
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, part in (("train", rows[:n_train]), ("validation", rows[n_train:])):
        with open(out_dir / f"{name}.jsonl", "w") as f:
            for row in part:
                f.write(json.dumps({"prompt": rte_prompt(row), "target": " " + RTE_LABELS[row["label"]],
                                    "task": "rte", "id": str(row["idx"])}) + "\n")
    return out_dir


def smoke_config(mixture_dir: pathlib.Path, cache_dir: pathlib.Path, **train_overrides):
    """configs/experiments/smoke.py on a hand-made mixture, model cached in `cache_dir`."""
    sys.path.insert(0, str(REPO))
    from configs.experiments import smoke
    config = smoke.get_config()
    config.model.cache_dir = str(cache_dir)
    config.train.mixture_dir = str(mixture_dir)
    for key, value in train_overrides.items():
        target = config
        *parents, leaf = key.split(".")
        for p in parents:
            target = target[p]
        target[leaf] = value
    return config


def run_with_devices(code: str, devices: int = 8, timeout: int = 600, env: dict | None = None) -> dict:
    """Runs `code` in a fresh Python with `devices` CPU devices; it must print one JSON line last."""
    full_env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
                    JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO), **(env or {}))
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=full_env, capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode:
        raise AssertionError(f"subprocess failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# Runs trainer.run in a fresh process (argv: json spec) and writes the final trained params to spec["dump"].
TRAIN_AND_DUMP = r'''
import json, sys, pathlib
import numpy as np
from flax import traverse_util
sys.path.insert(0, "tests")
from train_helpers import smoke_config
from t5x_like import trainer
spec = json.loads(sys.argv[1])
overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in spec["overrides"].items()}
config = smoke_config(pathlib.Path(spec["mixture"]), pathlib.Path(spec["cache"]), **overrides)
result = trainer.run(config, spec["workdir"])
from jax.experimental import multihost_utils
flat = traverse_util.flatten_dict(result.state.params)
arrays = {"/".join(k): np.asarray(multihost_utils.process_allgather(v, tiled=True)) for k, v in flat.items()}
np.savez(spec["dump"], **arrays)
rows = [json.loads(l) for l in open(pathlib.Path(spec["workdir"]) / "metrics.jsonl")]
print(json.dumps({"losses": [r["loss"] for r in rows if "loss" in r],
                  "eval": [r["eval_loss"] for r in rows if "eval_loss" in r], "step": result.step,
                  "preempted": result.preempted}))
'''


def start_training(tmp: pathlib.Path, name: str, mixture: pathlib.Path, cache: pathlib.Path, devices: int,
                   overrides: dict, workdir: pathlib.Path | None = None) -> tuple[subprocess.Popen, str]:
    """A fresh `devices`-device process running TRAIN_AND_DUMP; returns (process, dump file)."""
    spec = {"mixture": str(mixture), "cache": str(cache), "workdir": str(workdir or tmp / name),
            "dump": str(tmp / f"{name}.npz"), "overrides": overrides}
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu",
               PYTHONPATH=str(REPO), JAX_CPU_COLLECTIVES_IMPLEMENTATION="gloo")
    proc = subprocess.Popen([sys.executable, "-c", TRAIN_AND_DUMP, json.dumps(spec)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, spec["dump"]


def finish_training(proc: subprocess.Popen, dump: str, timeout: int = 600) -> tuple[dict, dict]:
    """(summary, final params as {path: array}) of a process from `start_training`."""
    import numpy as np
    out, err = proc.communicate(timeout=timeout)
    if proc.returncode:
        raise AssertionError(f"training subprocess failed ({proc.returncode}):\n{err[-4000:]}")
    return json.loads(out.strip().splitlines()[-1]), dict(np.load(dump))


def train_in_subprocess(tmp: pathlib.Path, name: str, mixture: pathlib.Path, cache: pathlib.Path, devices: int,
                        overrides: dict, workdir: pathlib.Path | None = None, timeout: int = 600) -> tuple[dict, dict]:
    """(summary, final params as {path: array}) of a training run in a fresh `devices`-device process."""
    return finish_training(*start_training(tmp, name, mixture, cache, devices, overrides, workdir), timeout=timeout)
