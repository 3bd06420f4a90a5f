"""Helpers of the benchmarks: whole-process timing with the machine load, matmul peak, results files, and
the PyTorch baselines (transformers' loglikelihood and greedy-generation recipes) they compare against."""
from __future__ import annotations

import importlib.metadata
import json
import os
import pathlib
import re
import subprocess
import time
from typing import Any

REPO = pathlib.Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def machine_state() -> dict[str, Any]:
    """Load average and CPU count, recorded next to every timing (other engineers share this machine)."""
    return {"loadavg_1_5_15": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count()}


def timed_process(cmd: list[str], threads: int = 0, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Runs one whole process (with OMP_NUM_THREADS=threads when > 0, and `env` added), returning wall
    seconds, load before/after and the tail of its stderr."""
    env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {}), **(env or {})}
    before = machine_state()
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return {"wall_s": round(wall, 2), "load_before": before["loadavg_1_5_15"],
            "load_after": machine_state()["loadavg_1_5_15"], "stderr_tail": proc.stderr[-600:],
            **phase_timings(proc.stderr)}


def phase_timings(stderr: str) -> dict[str, Any]:
    """The `PHASES {...}` JSON line a PyTorch worker prints (load / work seconds), if any."""
    match = re.search(r"^PHASES (\{.*\})$", stderr, re.MULTILINE)
    return {"phases": json.loads(match.group(1))} if match else {}


def report_phases(**seconds: float) -> None:
    """Printed by PyTorch workers so the driver can split their wall time."""
    import sys

    print("PHASES " + json.dumps({k: round(v, 2) for k, v in seconds.items()}), file=sys.stderr, flush=True)


def compile_counts_from_log(stderr: str) -> dict[str, int] | None:
    """The `compiled {...}` dict our CLIs log at the end."""
    match = re.search(r"compiled (\{[^}]*\})", stderr)
    return json.loads(match.group(1).replace("'", '"')) if match else None


def engine_timing_from_log(stderr: str) -> dict[str, float] | None:
    """The `timing {...}` dict (load / compile / compute seconds) our CLIs log at the end."""
    match = re.search(r"timing (\{[^}]*\})", stderr)
    return json.loads(match.group(1).replace("'", '"')) if match else None


def our_run_details(run: dict[str, Any]) -> dict[str, Any]:
    """A timed run of our CLI with its compile counts and load / compile / compute split (from its log)."""
    stderr = run.pop("stderr_tail")
    return {**run, "compile_counts": compile_counts_from_log(stderr), "phases": engine_timing_from_log(stderr)}


def matmul_peak_flops(size: int = 2048, repeats: int = 7) -> float:
    """Best observed FLOP/s of a fp32 (size x size) @ (size x size) jnp.dot on this machine."""
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32)
    dot = jax.jit(jnp.dot)
    dot(a, a).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        dot(a, a).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def default_model_dir() -> str:
    from t5x_like import gguf

    return str(gguf.ensure_smollm2())


def versions(packages: tuple[str, ...] = ("jax", "jaxlib", "flax", "torch", "transformers")) -> dict[str, str | None]:
    """Installed versions of `packages` (None for one that is not installed)."""
    found = {}
    for package in packages:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = None
    return found


def write_results(name: str, results: dict[str, Any]) -> pathlib.Path:
    from t5x_like.io_utils import atomic_write_json

    path = RESULTS / f"{name}.json"
    atomic_write_json(str(path), results)
    return path


# ------------------------------------------------------------------------------------------------
# PyTorch baselines (transformers models; torch is imported by the caller)
# ------------------------------------------------------------------------------------------------
def torch_loglikelihoods(model: Any, encoded: list[tuple[list[int], list[int]]], batch_size: int, pad_id: int
                         ) -> list[dict[str, Any]]:
    """lm-evaluation-harness's HF loglikelihood recipe on (context ids, continuation ids): requests sorted
    longest first, batches right-padded to their longest row, `no_grad`, log_softmax at every position,
    the continuation's log-probs gathered. Runs on the model's device; results in input order."""
    import torch
    import torch.nn.functional as F
    from tqdm import tqdm

    max_length = model.config.max_position_embeddings
    order = sorted(range(len(encoded)), key=lambda i: -(len(encoded[i][0]) + len(encoded[i][1])))
    results: dict[int, dict[str, Any]] = {}
    with torch.no_grad():
        for first in tqdm(range(0, len(order), batch_size), desc="torch scoring", unit="batch"):
            batch = order[first:first + batch_size]
            inputs = [(encoded[i][0] + encoded[i][1])[-(max_length + 1):][:-1] for i in batch]
            width = max(map(len, inputs))
            ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            for b, seq in enumerate(inputs):
                ids[b, :len(seq)] = torch.tensor(seq)
            logprobs = F.log_softmax(model(ids.to(model.device)).logits.float(), dim=-1)
            for b, i in enumerate(batch):
                cont = torch.tensor(encoded[i][1], device=logprobs.device)
                n, c = len(inputs[b]), len(cont)
                rows_lp = logprobs[b, n - c:n]
                results[i] = {"logprob": float(rows_lp.gather(-1, cont[:, None]).sum()),
                              "is_greedy": bool((rows_lp.argmax(-1) == cont).all()), "num_tokens": c}
    return [results[i] for i in range(len(encoded))]


def torch_greedy(model: Any, prompts: list[list[int]], max_new_tokens: int, pad_id: int) -> list[list[int]]:
    """transformers' greedy `generate` with its KV cache on the left-padded prompts, one batch, on the
    model's device; per prompt the new ids before the model's first EOS (which ends a row)."""
    import torch

    width = max(map(len, prompts))
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for b, p in enumerate(prompts):
        ids[b, width - len(p):], mask[b, width - len(p):] = torch.tensor(p), 1
    eos = model.generation_config.eos_token_id
    with torch.no_grad():
        out = model.generate(input_ids=ids.to(model.device), attention_mask=mask.to(model.device),
                             max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad_id, eos_token_id=eos)
    eos_ids = set(eos if isinstance(eos, list) else [eos])
    return [next((seq[:k] for k, t in enumerate(seq) if t in eos_ids), seq) for seq in out[:, width:].tolist()]
