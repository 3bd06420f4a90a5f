"""Shared by the trainer tests: a real-data mixture, the smoke config, and 8-device subprocess runs."""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
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
