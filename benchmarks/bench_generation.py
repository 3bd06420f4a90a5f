"""Greedy generation, whole processes: `launch.generate` (JAX) vs transformers `generate`, same prompts.

  python -m benchmarks.bench_generation [--model=DIR] [--num_prompts=16] [--max_new_tokens=64] [--repeats=2]

16 real text prompts of different lengths (cosmos_qa passages), 64 new tokens each, greedy, the
model's EOS honoured by both sides (a row that ends early stops; the batch ends when all rows have).
The PyTorch side (`--role=torch`) left-pads the same token ids and calls `model.generate` with its
KV cache, in one batch. Each run is a whole process (imports, model loading, compilation,
generation); runs alternate and the median is reported, with the machine load. Also checks that the
two sides generated the same tokens. Writes benchmarks/results/generation.json.
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

from benchmarks.common import (default_model_dir, our_run_details, machine_state, report_phases, timed_process,
                               torch_greedy, versions, write_results)

FLAGS = flags.FLAGS
flags.DEFINE_enum("role", "driver", ["driver", "torch"], "driver: run the benchmark; torch: one PyTorch generation process.")
flags.DEFINE_string("model", None, "HF model dir (default: SmolLM2-135M-Instruct via t5x_like.gguf.ensure_smollm2).")
flags.DEFINE_string("requests", None, "torch role: request jsonl.")
flags.DEFINE_string("output", None, "torch role: output jsonl.")
flags.DEFINE_integer("num_prompts", 16, "Prompts, generated as one batch.")
flags.DEFINE_integer("max_new_tokens", 64, "New tokens per prompt.")
flags.DEFINE_integer("repeats", 2, "Whole-process runs per side.")
flags.DEFINE_list("torch_threads", ["0", "1"], "PyTorch OMP thread counts to time (0 = its default, one per core); "
                  "the fastest is the baseline (under oversubscription one thread can be far faster).")
flags.DEFINE_string("data_dir", None, "Task data (default $T5X_LIKE_DATA_DIR or ../shared/data/tasks).")


def build_prompts(num: int, max_new_tokens: int, data_dir: str | None) -> list[dict[str, Any]]:
    """Passages cut to 1..4 sentences, so prompt lengths differ across the batch."""
    from t5x_like.data.sources import load_examples

    rows = []
    for i, ex in enumerate(load_examples("cosmos_qa", "eval", data_dir=data_dir)[:num]):
        sentences = ex.field("context").split(". ")
        rows.append({"id": i, "prompt": ". ".join(sentences[:1 + i % 4]).strip(), "max_new_tokens": max_new_tokens})
    return rows


def torch_generate(model_dir: str, requests_path: str, output_path: str) -> None:
    """transformers' greedy generate with its KV cache on the left-padded prompts, one batch."""
    import torch
    import transformers

    from t5x_like.tokenization import load_tokenizer

    start = time.perf_counter()
    tokenizer = load_tokenizer(model_dir)
    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    loaded = time.perf_counter()
    rows = [json.loads(line) for line in open(requests_path)]
    prompts = [tokenizer.encode(r["prompt"]) for r in rows]
    generated_ids = torch_greedy(model, prompts, rows[0]["max_new_tokens"], tokenizer.pad_id)
    generated = time.perf_counter()
    report_phases(load_s=loaded - start, generate_s=generated - loaded)
    with open(output_path, "w") as f:
        for row, kept in zip(rows, generated_ids):
            f.write(json.dumps({**row, "tokens": kept, "num_tokens": len(kept)}) + "\n")


def compare(jax_path: str, torch_path: str, model_dir: str) -> dict[str, Any]:
    """How many rows generated identical tokens (ours carry text; the torch rows carry ids)."""
    from t5x_like.tokenization import load_tokenizer

    tokenizer = load_tokenizer(model_dir)
    ours = [json.loads(x) for x in open(jax_path)]
    ref = [json.loads(x) for x in open(torch_path)]
    same = []
    for a, b in zip(ours, ref):
        prompt = tokenizer.encode(a["prompt"])
        base = tokenizer.decode(prompt)
        same.append(tokenizer.decode(prompt + b["tokens"])[len(base):] == a["text"])
    return {"rows_identical_text": sum(same), "rows": len(same),
            "new_tokens_jax": sum(a["num_tokens"] for a in ours), "new_tokens_torch": sum(b["num_tokens"] for b in ref)}


def drive() -> dict[str, Any]:
    model_dir = FLAGS.model or default_model_dir()
    rows = build_prompts(FLAGS.num_prompts, FLAGS.max_new_tokens, FLAGS.data_dir)
    tmp = tempfile.mkdtemp(prefix="bench_generation.")
    req_path = os.path.join(tmp, "requests.jsonl")
    with open(req_path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    runs: dict[str, list[dict[str, Any]]] = {"jax": [], **{f"torch_threads_{t}": [] for t in FLAGS.torch_threads}}
    for _ in range(FLAGS.repeats):
        runs["jax"].append(our_run_details(timed_process([
            sys.executable, "-m", "launch.generate", f"--model={model_dir}", f"--requests={req_path}",
            f"--output={tmp}/jax.jsonl", f"--batch_size={FLAGS.num_prompts}"])))
        for threads in FLAGS.torch_threads:
            run = timed_process([sys.executable, "-m", "benchmarks.bench_generation", "--role=torch",
                                 f"--model={model_dir}", f"--requests={req_path}", f"--output={tmp}/torch.jsonl"],
                                threads=int(threads))
            run.pop("stderr_tail")
            runs[f"torch_threads_{threads}"].append(run)
    medians = {name: statistics.median(r["wall_s"] for r in rs) for name, rs in runs.items()}
    jax_s = medians.pop("jax")
    torch_s = min(medians.values())
    return {
        "benchmark": "greedy generation, whole processes (imports + model load + compile + generation)",
        "model": model_dir, "dtype": "float32", "prompts": len(rows), "max_new_tokens": FLAGS.max_new_tokens,
        "jax_wall_s_median": jax_s, "torch_wall_s_median": torch_s, "torch_medians_by_threads": medians,
        "speedup": round(torch_s / jax_s, 2),
        "runs": runs, "agreement": compare(f"{tmp}/jax.jsonl", f"{tmp}/torch.jsonl", model_dir),
        "machine_after": machine_state(), "versions": versions(), "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def main(argv: list[str]) -> None:
    del argv
    if FLAGS.role == "torch":
        torch_generate(FLAGS.model, FLAGS.requests, FLAGS.output)
        return
    results = drive()
    path = write_results("generation", results)
    print(json.dumps({k: results[k] for k in ("jax_wall_s_median", "torch_medians_by_threads", "speedup", "agreement")},
                     indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    app.run(main)
