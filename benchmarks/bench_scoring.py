"""Loglikelihood scoring, whole processes: `launch.score` (JAX) vs transformers PyTorch, same requests.

  python -m benchmarks.bench_scoring [--model=DIR] [--num_requests=200] [--repeats=2]

~200 lm-eval requests of 50-230 tokens built from real task data (cosmos_qa, rte, bool_q), each
timed as a user runs it: interpreter start, imports, model loading, compilation and scoring. The
PyTorch side (`--role=torch`) is lm-evaluation-harness's HF recipe: requests sorted longest first,
batches right-padded to their longest row, `no_grad`, log_softmax over every position, continuation
log-probs gathered, timed at each of `--torch_batch_sizes` x `--torch_threads` (the fastest median
is the baseline). Ours packs requests into 256-token rows (`--pack_length` of launch.score) and
caps batches at its CPU default of 1024 tokens. Runs alternate (ours, torch, ours, torch, ...) so
load drifts hit both; the median is reported. Then, in this process, the scoring forward's achieved FLOP/s (XLA's count for
the executed programs) against the machine's measured matmul peak (best of a large `jnp.dot`).
Writes benchmarks/results/scoring.json.
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from typing import Any

from absl import app, flags

from benchmarks.common import (default_model_dir, our_run_details, machine_state, matmul_peak_flops,
                               report_phases, timed_process, versions, write_results)

FLAGS = flags.FLAGS
flags.DEFINE_enum("role", "driver", ["driver", "torch"], "driver: run the benchmark; torch: one PyTorch scoring process.")
flags.DEFINE_string("model", None, "HF model dir (default: SmolLM2-135M-Instruct via t5x_like.gguf.ensure_smollm2).")
flags.DEFINE_string("requests", None, "torch role: request jsonl.")
flags.DEFINE_string("output", None, "torch role: output jsonl.")
flags.DEFINE_integer("num_requests", 200, "Requests to score.")
flags.DEFINE_integer("min_tokens", 50, "Shortest request (context + continuation tokens).")
flags.DEFINE_integer("max_tokens", 230, "Longest request.")
flags.DEFINE_integer("batch_size", 16, "Most rows per batch on our side (t5x_like also caps tokens per batch).")
flags.DEFINE_list("torch_batch_sizes", ["16", "4"], "PyTorch batch sizes to time; the fastest is the baseline.")
flags.DEFINE_integer("repeats", 2, "Whole-process runs per side.")
flags.DEFINE_list("torch_threads", ["0", "1"], "PyTorch OMP thread counts to time (0 = its default, one per core); "
                  "the fastest is the baseline (under oversubscription one thread can be far faster).")
flags.DEFINE_list("cpu_devices", ["1"], "Our side on N fake host devices (XLA_FLAGS), rows over the data axis "
                  "(--mesh_shape=N,1,1): measures the CLI's CPU default of one device against N.")
flags.DEFINE_string("data_dir", None, "Task data (default $T5X_LIKE_DATA_DIR or ../shared/data/tasks).")


# ------------------------------------------------------------------------------------------------
# Requests
# ------------------------------------------------------------------------------------------------
def build_requests(model_dir: str, num: int, min_tokens: int, max_tokens: int, data_dir: str | None
                   ) -> list[dict[str, Any]]:
    """lm-eval multiple-choice requests from real task text whose token length is in [min, max]."""
    import random

    from t5x_like.data.sources import load_examples
    from t5x_like.tokenization import load_tokenizer

    tokenizer = load_tokenizer(model_dir)
    prompts = {
        "cosmos_qa": lambda ex: f"{ex.field('context')}\nQuestion: {ex.field('question')}\nAnswer:",
        "rte": lambda ex: f"{ex.field('premise')}\nQuestion: {ex.field('hypothesis')} True or False?\nAnswer:",
        "bool_q": lambda ex: "\n".join(f"{k.capitalize()}: {v}" for k, v in ex.fields) + "\nAnswer:",
    }
    candidates = []
    for task, prompt in prompts.items():
        for ex in load_examples(task, "eval", data_dir=data_dir)[:300]:
            for option in ex.options:
                candidates.append({"id": f"{task}/{ex.id}/{option[:20]}", "context": prompt(ex), "continuation": f" {option}"})
    random.Random(0).shuffle(candidates)
    chosen = []
    for request in candidates:
        ctx, cont = tokenizer.encode_pair(request["context"], request["continuation"])
        if min_tokens <= len(ctx) + len(cont) <= max_tokens:
            chosen.append({**request, "num_tokens_total": len(ctx) + len(cont)})
        if len(chosen) == num:
            return chosen
    raise RuntimeError(f"only {len(chosen)} requests of {min_tokens}-{max_tokens} tokens in the task data")


# ------------------------------------------------------------------------------------------------
# The PyTorch process (lm-evaluation-harness's HF loglikelihood recipe)
# ------------------------------------------------------------------------------------------------
def torch_score(model_dir: str, requests_path: str, output_path: str, batch_size: int) -> None:
    import torch
    import transformers

    from benchmarks.common import torch_loglikelihoods
    from t5x_like.tokenization import load_tokenizer

    start = time.perf_counter()
    tokenizer = load_tokenizer(model_dir)
    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    loaded = time.perf_counter()
    rows = [json.loads(line) for line in open(requests_path)]
    encoded = [tokenizer.encode_pair(r["context"], r["continuation"]) for r in rows]
    results = torch_loglikelihoods(model, encoded, batch_size, tokenizer.pad_id)
    scored = time.perf_counter()
    with open(output_path, "w") as f:
        for row, result in zip(rows, results):
            f.write(json.dumps({**row, **result}) + "\n")
    report_phases(load_s=loaded - start, score_s=scored - loaded)


# ------------------------------------------------------------------------------------------------
# Driver
# ------------------------------------------------------------------------------------------------
def in_process_mfu(model_dir: str, requests: list[dict[str, Any]], batch_size: int) -> dict[str, Any]:
    """Executed FLOP/s of the (already compiled) scoring programs vs the matmul peak, in this process."""
    from t5x_like.engine import Engine
    from t5x_like.scoring import ScoreRequest

    engine = Engine.load(model_dir, batch_size=batch_size, progress=False)
    score_requests = [ScoreRequest(r["context"], r["continuation"]) for r in requests]
    engine.score(score_requests)  # compute_s counts execution only (compilation happens before the clock)
    stats = engine.scorer.stats
    c = engine.config
    tokens = sum(r["num_tokens_total"] - 1 for r in requests)
    per_token = 2 * (c.num_params() - c.vocab_size * c.hidden_size * (1 if c.tie_word_embeddings else 2))
    useful = tokens * per_token  # decoder-body matmul FLOPs on real (unpadded) tokens, head excluded
    peak = max(matmul_peak_flops(2048), matmul_peak_flops(1024, repeats=15))
    executed = (stats["body_flops"] + stats["head_flops"]) / stats["compute_s"]
    return {"compute_s": round(stats["compute_s"], 2), "batches": stats["batches"],
            "batch_tokens": engine.scorer.max_batch_tokens, "pack_length": engine.scorer.pack_length,
            "executed_gflop": round((stats["body_flops"] + stats["head_flops"]) / 1e9, 1),
            "executed_gflops_per_s": round(executed / 1e9, 1),
            "useful_body_gflops_per_s": round(useful / stats["compute_s"] / 1e9, 1),
            "matmul_peak_gflops_per_s": round(peak / 1e9, 1),
            "mfu_executed": round(executed / peak, 3), "mfu_useful": round(useful / stats["compute_s"] / peak, 3),
            "compile_counts": engine.compile_counts, "machine": machine_state()}


def compare_outputs(ours_path: str, torch_path: str) -> dict[str, Any]:
    ours = [json.loads(x) for x in open(ours_path)]
    ref = [json.loads(x) for x in open(torch_path)]
    return {"max_abs_logprob_diff": max(abs(a["logprob"] - b["logprob"]) for a, b in zip(ours, ref)),
            "is_greedy_agreement": sum(a["is_greedy"] == b["is_greedy"] for a, b in zip(ours, ref)) / len(ours)}


def drive() -> dict[str, Any]:
    model_dir = FLAGS.model or default_model_dir()
    requests = build_requests(model_dir, FLAGS.num_requests, FLAGS.min_tokens, FLAGS.max_tokens, FLAGS.data_dir)
    tmp = tempfile.mkdtemp(prefix="bench_scoring.")
    req_path = os.path.join(tmp, "requests.jsonl")
    with open(req_path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in requests)
    torch_configs = [(int(t), int(b)) for t in FLAGS.torch_threads for b in FLAGS.torch_batch_sizes]
    devices = [int(n) for n in FLAGS.cpu_devices]
    if 1 not in devices:
        raise app.UsageError("--cpu_devices must include 1: the single-device run is the one compared with PyTorch")
    ours = {n: "jax" if n == 1 else f"jax_{n}_cpu_devices" for n in devices}
    runs: dict[str, list[dict[str, Any]]] = {**{name: [] for name in ours.values()},
                                             **{f"torch_threads_{t}_batch_{b}": [] for t, b in torch_configs}}
    for _ in range(FLAGS.repeats):
        for n, name in ours.items():
            runs[name].append(our_run_details(timed_process([
                sys.executable, "-m", "launch.score", f"--model={model_dir}", f"--requests={req_path}",
                f"--output={tmp}/{name}.jsonl", f"--batch_size={FLAGS.batch_size}", f"--mesh_shape={n},1,1"],
                env={"XLA_FLAGS": f"--xla_force_host_platform_device_count={n}"} if n > 1 else None)))
        for threads, batch_size in torch_configs:
            runs[f"torch_threads_{threads}_batch_{batch_size}"].append(timed_process([
                sys.executable, "-m", "benchmarks.bench_scoring", "--role=torch", f"--model={model_dir}",
                f"--requests={req_path}", f"--output={tmp}/torch.jsonl", f"--batch_size={batch_size}"],
                threads=threads))
    medians = {name: statistics.median(r["wall_s"] for r in rs) for name, rs in runs.items()}
    jax_s = medians.pop("jax")
    devices_s = {name: medians.pop(name) for name in ours.values() if name != "jax"}
    torch_s = min(medians.values())
    lengths = [r["num_tokens_total"] for r in requests]
    return {
        "benchmark": "loglikelihood scoring, whole processes (imports + model load + compile + scoring)",
        "model": model_dir, "dtype": "float32", "batch_size": FLAGS.batch_size,
        "requests": {"count": len(requests), "tokens_min": min(lengths), "tokens_max": max(lengths),
                     "tokens_mean": round(statistics.mean(lengths), 1), "tokens_total": sum(lengths),
                     "sources": "cosmos_qa, rte, bool_q eval splits (lm-eval style prompts)"},
        "jax_wall_s_median": jax_s, "jax_cpu_devices_wall_s_median": devices_s,
        "torch_wall_s_median": torch_s, "torch_medians_by_config": medians,
        "speedup": round(torch_s / jax_s, 2),
        "runs": runs, "agreement": compare_outputs(f"{tmp}/jax.jsonl", f"{tmp}/torch.jsonl"),
        "mfu": in_process_mfu(model_dir, requests, FLAGS.batch_size),
        "versions": versions(), "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def main(argv: list[str]) -> None:
    del argv
    if FLAGS.role == "torch":
        torch_score(FLAGS.model, FLAGS.requests, FLAGS.output, FLAGS.batch_size)
        return
    results = drive()
    for runs in results["runs"].values():
        for run in runs:
            run.pop("stderr_tail", None)  # torch runs; ours were parsed by our_run_details
    path = write_results("scoring", results)
    print(json.dumps({k: results[k] for k in ("jax_wall_s_median", "jax_cpu_devices_wall_s_median",
                                              "torch_medians_by_config", "speedup", "agreement", "mfu")},
                     indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    app.run(main)
