"""lm-evaluation-harness end to end: `--model t5x_like` (JAX engine) vs `--model hf` (transformers
PyTorch), the same tasks and items, as whole processes.

  python -m benchmarks.lm_eval_compare [--model=DIR] [--tasks=arc_easy_local,piqa_local,copa_local] \
      [--limit=400] [--repeats=2] [--hf_batch_sizes=16,4] [--torch_threads=0] [--out=benchmarks/results/lm_eval_compare]

Each run is one process, timed from interpreter start to exit: ours `python -m launch.lm_eval --model
t5x_like --batch_size auto`, the baseline plain `python -m lm_eval --model hf --device cpu` at each of
`--hf_batch_sizes` x `--torch_threads` (the fastest median is the baseline), fp32 both, the offline
tasks of configs/lm_eval_tasks on the local data, `--limit` items per task, hub access off. Runs
alternate (ours, hf, ours, hf, ...) so load drifts hit both. From lm-eval's own output files
(`--log_samples`): per-request |Δ log-likelihood|, per-item agreement of the chosen option (by
log-likelihood and per character), per-task acc / acc_norm of both. The `--reference_requests`
requests of largest |Δ| are scored once more by transformers in float64 (batch 1, no padding), so
the report says which backend is nearer the exact value. The floor: our run's executed scoring FLOPs
(XLA's count) at this machine's measured fp32 matmul peak, plus the import time of lm-eval + torch +
transformers (both processes pay it) and our load: the fastest whole process the engine could reach
here with the FLOPs it executes (padding included), and so the largest speedup they allow. Writes
<out>.json and <out>.md; `--rescore=JSON` redoes only the float64 reference and the floor of a run.
"""
from __future__ import annotations

import glob
import json
import os
import statistics
import sys
import tempfile
import time
from typing import Any

from absl import app, flags

from benchmarks.common import REPO, default_model_dir, machine_state, matmul_peak_flops, timed_process, versions
from t5x_like import io_utils

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "HF model dir (default: SmolLM2-135M-Instruct via t5x_like.gguf.ensure_smollm2).")
flags.DEFINE_list("tasks", ["arc_easy_local", "piqa_local", "copa_local"], "Offline lm-eval tasks (configs/lm_eval_tasks).")
flags.DEFINE_integer("limit", 400, "Items per task (lm-eval --limit); copa_local has 100.")
flags.DEFINE_integer("repeats", 2, "Whole-process runs per configuration.")
flags.DEFINE_list("hf_batch_sizes", ["16", "4"], "lm-eval hf --batch_size values to time; the fastest is the baseline.")
flags.DEFINE_list("torch_threads", ["0"], "OMP thread counts for the hf runs (0 = PyTorch's default, one per core).")
flags.DEFINE_string("data_dir", None, "Task data (default $T5X_LIKE_DATA_DIR or ../shared/data/tasks).")
flags.DEFINE_string("out", str(REPO / "benchmarks" / "results" / "lm_eval_compare"), "Output prefix (.json, .md).")
flags.DEFINE_integer("reference_requests", 8, "Requests of largest |Δ| rescored by transformers in float64.")
flags.DEFINE_string("rescore", None, "An earlier run's JSON: redo only its float64 reference and floor, rewrite the report.")

TASKS_DIR = REPO / "configs" / "lm_eval_tasks"
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def lm_eval_command(model: str, model_args: str, batch_size: str, output_dir: str) -> list[str]:
    """One lm-eval process over the offline tasks with per-sample logs into `output_dir`; ours goes
    through launch.lm_eval (which registers the backend), hf through lm-eval's own entry point."""
    entry = "launch.lm_eval" if model == "t5x_like" else "lm_eval"
    return [sys.executable, "-m", entry, "--model", model, "--model_args", model_args, "--batch_size", batch_size,
            "--tasks", ",".join(FLAGS.tasks), "--include_path", str(TASKS_DIR), "--limit", str(FLAGS.limit),
            "--log_samples", "--output_path", output_dir,
            *(["--device", "cpu"] if model == "hf" else [])]


def read_run(output_dir: str) -> dict[str, Any]:
    """lm-eval's results file and per-task samples of one run (`--output_path`)."""
    results_path, = glob.glob(os.path.join(output_dir, "*", "results_*.json"))
    samples = {}
    for task in FLAGS.tasks:
        path, = glob.glob(os.path.join(output_dir, "*", f"samples_{task}_*.jsonl"))
        samples[task] = sorted(io_utils.read_jsonl(path), key=lambda s: s["doc_id"])
    return {"results": io_utils.read_json(results_path), "samples": samples}


def loglikelihoods(sample: dict[str, Any]) -> list[float]:
    """The log-likelihood of each option of one logged item (lm-eval writes them as strings)."""
    return [float(resp[0]) for resp in sample["filtered_resps"]]


def choice_lengths(sample: dict[str, Any]) -> list[int]:
    """len(choice) of each option, lm-eval's acc_norm denominator: the continuation less its " " delimiter."""
    return [len(arguments["arg_1"]) - 1 for arguments in sample["arguments"].values()]


def argmax(values: list[float]) -> int:
    """Index of the largest value (the first on ties, as numpy's argmax that lm-eval uses)."""
    return max(range(len(values)), key=values.__getitem__)


def agreement(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    """Per task and overall: requests, max / mean / p99 |Δ log-likelihood|, items whose chosen option
    (acc's and acc_norm's) is the same, and both backends' acc / acc_norm as lm-eval reports them."""
    per_task, all_deltas, largest = {}, [], []
    for task in FLAGS.tasks:
        deltas, same, same_norm = [], 0, 0
        for a, b in zip(ours["samples"][task], theirs["samples"][task], strict=True):
            if a["arguments"] != b["arguments"]:
                raise RuntimeError(f"{task} item {a['doc_id']}: the two runs built different requests")
            ll_a, ll_b, chars = loglikelihoods(a), loglikelihoods(b), choice_lengths(a)
            deltas += [abs(x - y) for x, y in zip(ll_a, ll_b)]
            pairs = list(a["arguments"].values())
            largest += [{"task": task, "doc_id": a["doc_id"], "option": i, "context": pairs[i]["arg_0"],
                         "continuation": pairs[i]["arg_1"], "t5x_like": x, "hf": y, "abs_delta": abs(x - y)}
                        for i, (x, y) in enumerate(zip(ll_a, ll_b))]
            same += argmax(ll_a) == argmax(ll_b)
            same_norm += argmax([x / n for x, n in zip(ll_a, chars)]) == argmax([x / n for x, n in zip(ll_b, chars)])
        metrics = {name: {m: run["results"]["results"][task].get(f"{m},none") for m in ("acc", "acc_norm")}
                   for name, run in (("t5x_like", ours), ("hf", theirs))}
        per_task[task] = {"items": len(ours["samples"][task]), "requests": len(deltas),
                          "max_abs_delta": max(deltas), "mean_abs_delta": statistics.mean(deltas),
                          "same_choice_acc": same, "same_choice_acc_norm": same_norm, **metrics}
        all_deltas += deltas
    all_deltas.sort()
    largest.sort(key=lambda r: -r["abs_delta"])
    return {"requests": len(all_deltas), "max_abs_delta": all_deltas[-1], "mean_abs_delta": statistics.mean(all_deltas),
            "p99_abs_delta": all_deltas[int(0.99 * (len(all_deltas) - 1))], "tasks": per_task,
            "largest": largest[:FLAGS.reference_requests]}


def encode_pair(tokenizer: Any, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """lm-eval's `TemplateLM._encode_pair`: trailing spaces of the context move to the continuation,
    the whole string is encoded and the continuation is what follows the context's tokens."""
    spaces = len(context) - len(context.rstrip())
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    whole = tokenizer(context + continuation, add_special_tokens=False).input_ids
    context_ids = tokenizer(context, add_special_tokens=False).input_ids
    return whole[:len(context_ids)], whole[len(context_ids):]


def float64_reference(model_dir: str, largest: list[dict[str, Any]]) -> None:
    """Adds each request's log-likelihood from transformers in float64 throughout (weights, log-softmax
    and the sum; batch 1, no padding) and both backends' errors against it."""
    import torch
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float64).eval()
    with torch.no_grad():
        for request in largest:
            context, continuation = encode_pair(tokenizer, request["context"], request["continuation"])
            ids = torch.tensor([context + continuation])
            logprobs = torch.log_softmax(model(ids[:, :-1]).logits[0], dim=-1)[-len(continuation):]
            exact = float(logprobs.gather(-1, torch.tensor(continuation)[:, None]).sum())
            request.update(float64=exact, t5x_like_error=request["t5x_like"] - exact, hf_error=request["hf"] - exact)


def floor(results: dict[str, Any]) -> dict[str, Any]:
    """The fastest whole process our engine could reach here: imports + load + its executed scoring FLOPs
    at the measured matmul peak (compilation left out: a persistent cache removes most of it)."""
    first = results["runs"]["t5x_like"][0]
    imports = timed_process([sys.executable, "-c", "import lm_eval.evaluator, torch, transformers"])["wall_s"]
    peak = matmul_peak_flops()
    compute = first["scoring_flops"] / peak
    total = imports + first["engine_timing"]["load_s"] + compute
    return {"import_s": imports, "matmul_peak_gflops": round(peak / 1e9, 1), "scoring_gflop": round(first["scoring_flops"] / 1e9, 1),
            "executed_gflops": round(first["scoring_flops"] / first["engine_timing"]["compute_s"] / 1e9, 1),
            "compute_floor_s": round(compute, 2), "process_floor_s": round(total, 2),
            "largest_possible_speedup": round(results["wall_s_median"][results["baseline"]] / total, 2)}


def drive(model_dir: str, data_dir: str, tmp: str) -> dict[str, Any]:
    """Every timed run (alternating ours / hf configurations), then the agreement of ours' first run with
    the fastest hf configuration's first run."""
    env = {**OFFLINE, "T5X_LIKE_DATA_DIR": data_dir}
    configs = {"t5x_like": ("t5x_like", f"path={model_dir},dtype=float32", "auto", 0)}
    for threads in FLAGS.torch_threads:
        for batch_size in FLAGS.hf_batch_sizes:
            configs[f"hf_batch_{batch_size}_threads_{threads}"] = ("hf", f"pretrained={model_dir},dtype=float32",
                                                                   batch_size, int(threads))
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in configs}
    outputs: dict[str, list[str]] = {name: [] for name in configs}
    for repeat in range(FLAGS.repeats):
        for name, (model, model_args, batch_size, threads) in configs.items():
            output_dir = os.path.join(tmp, f"{name}_{repeat}")
            run = timed_process(lm_eval_command(model, model_args, batch_size, output_dir), threads=threads, env=env)
            run.pop("stderr_tail")
            if model == "t5x_like":
                config = read_run(output_dir)["results"]["config"]
                run.update(engine_timing=config.get("engine_timing"), compile_counts=config.get("engine_compile_counts"),
                           scoring_flops=config.get("engine_scoring_flops"))
            runs[name].append(run)
            outputs[name].append(output_dir)
    medians = {name: statistics.median(r["wall_s"] for r in rs) for name, rs in runs.items()}
    ours_s = medians["t5x_like"]
    baseline = min((name for name in medians if name != "t5x_like"), key=medians.__getitem__)
    return {"benchmark": "lm-evaluation-harness whole processes: --model t5x_like vs --model hf (CPU), same tasks and items",
            "model": model_dir, "dtype": "float32", "tasks": FLAGS.tasks, "limit": FLAGS.limit,
            "commands": {name: " ".join(lm_eval_command(m, a, b, "OUT")) for name, (m, a, b, _) in configs.items()},
            "wall_s_median": medians, "baseline": baseline, "speedup": round(medians[baseline] / ours_s, 2),
            "runs": runs, "agreement": agreement(read_run(outputs["t5x_like"][0]), read_run(outputs[baseline][0])),
            "versions": versions(("jax", "jaxlib", "flax", "torch", "transformers", "lm_eval")),
            "machine_after": machine_state(), "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def markdown(results: dict[str, Any]) -> str:
    """The tables: wall seconds of every run, the speedup, the agreement and the per-task metrics."""
    a = results["agreement"]
    lines = [f"# lm-eval: `--model t5x_like` vs `--model hf` ({results['date_utc']})", "",
             f"Model {results['model']} (fp32), tasks {', '.join(results['tasks'])}, `--limit {results['limit']}`: "
             f"{a['requests']} loglikelihood requests. Whole processes; load average before / after each run.", "",
             "| configuration | run | wall s | load before | load after |", "|---|---|---|---|---|"]
    for name, runs in results["runs"].items():
        lines += [f"| {name} | {i + 1} | {r['wall_s']} | {r['load_before']} | {r['load_after']} |"
                  for i, r in enumerate(runs)]
    lines += ["", f"Median wall s: {results['wall_s_median']}; baseline {results['baseline']}; "
              f"**speedup {results['speedup']}x**.", "",
              f"Per-request |Δ log-likelihood| (t5x_like run 1 vs {results['baseline']} run 1): max {a['max_abs_delta']:.2e}, "
              f"mean {a['mean_abs_delta']:.2e}, p99 {a['p99_abs_delta']:.2e}.", "",
              "| task | items | requests | max abs Δ | same choice (acc / acc_norm) | acc t5x_like / hf | acc_norm t5x_like / hf |",
              "|---|---|---|---|---|---|---|"]
    for task, t in a["tasks"].items():
        lines.append(f"| {task} | {t['items']} | {t['requests']} | {t['max_abs_delta']:.2e} | "
                     f"{t['same_choice_acc']} / {t['same_choice_acc_norm']} | {t['t5x_like']['acc']} / {t['hf']['acc']} | "
                     f"{t['t5x_like']['acc_norm']} / {t['hf']['acc_norm']} |")
    lines += ["", "The requests of largest |Δ| against transformers in float64 (batch 1):", "",
              "| task | doc | option | float64 | t5x_like - float64 | hf - float64 |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['task']} | {r['doc_id']} | {r['option']} | {r['float64']:.5f} | {r['t5x_like_error']:+.2e} | "
              f"{r['hf_error']:+.2e} |" for r in a["largest"]]
    f = results["floor"]
    lines += ["", f"Floor of our whole process here: imports of lm-eval + torch + transformers {f['import_s']} s (both "
              f"sides pay them) + our load + {f['scoring_gflop']} GFLOP of scoring (XLA's count, executed at "
              f"{f['executed_gflops']} GFLOP/s in run 1) at the measured fp32 matmul peak of {f['matmul_peak_gflops']} "
              f"GFLOP/s = {f['compute_floor_s']} s: **{f['process_floor_s']} s, at most {f['largest_possible_speedup']}x** "
              f"the baseline's median with these FLOPs (no compilation, every matmul at peak)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    model_dir = FLAGS.model or default_model_dir()
    data_dir = FLAGS.data_dir or os.environ.get("T5X_LIKE_DATA_DIR") or str(REPO.parent / "shared" / "data" / "tasks")
    if FLAGS.rescore:
        results = io_utils.read_json(FLAGS.rescore)
    else:
        with tempfile.TemporaryDirectory(prefix="lm_eval_compare.") as tmp:
            results = drive(model_dir, data_dir, tmp)
    float64_reference(model_dir, results["agreement"]["largest"])
    results["floor"] = floor(results)
    io_utils.atomic_write_json(FLAGS.out + ".json", results)
    io_utils.atomic_write_text(FLAGS.out + ".md", markdown(results))
    print(json.dumps({k: results[k] for k in ("wall_s_median", "baseline", "speedup")}, indent=1))
    print(f"wrote {FLAGS.out}.json and {FLAGS.out}.md")


if __name__ == "__main__":
    app.run(main)
