r"""Items/s of a whole Gold Pipeline evaluation with SmolLM2-135M on CPU: t5x_like in generation and
log-likelihood mode vs the same evaluation with transformers PyTorch (batched generate + the same
stop strings, extraction and option matching), in one process.

python -m benchmarks.bench_evaluation [--task=anli_r1] [--num_items=500] [--hf_items=500] \
    [--out=benchmarks/results/bench_evaluation]
Writes <out>.json (every figure) and <out>.md (a table). Not a test: the numbers depend on the machine.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence

from absl import app
from absl import flags
from absl import logging

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _ROOT)

from configs import base  # noqa: E402
from configs.data import offline  # noqa: E402
from t5x_like import evaluation as ev  # noqa: E402
from t5x_like.evaluation import config as ev_config  # noqa: E402
from t5x_like.evaluation import records as ev_records  # noqa: E402
from t5x_like.evaluation import task_scores as ev_scores  # noqa: E402
from t5x_like.evaluation import store as ev_store  # noqa: E402
from t5x_like import settings as registry  # noqa: E402
from t5x_like import gguf, io_utils  # noqa: E402
from t5x_like.data import pipeline  # noqa: E402
from t5x_like.decoding import Generation, GenerationRequest  # noqa: E402
from t5x_like.engine import Engine  # noqa: E402
from t5x_like.tokenization import Tokenizer, load_tokenizer  # noqa: E402

_TASK = flags.DEFINE_string("task", "anli_r1", "A 3-option task of the offline bundle (anli_r1, cb, ...).")
_NUM_ITEMS = flags.DEFINE_integer("num_items", 500, "Test items evaluated by t5x_like.")
_HF_ITEMS = flags.DEFINE_integer("hf_items", 500, "Items evaluated by transformers (the first of the same items).")
_NOSTOP_ITEMS = flags.DEFINE_integer("nostop_items", 0, "Also time t5x_like generation without stop strings (the "
                                     "paper's full 250 new tokens) on this many items; 0 = skip.")
_BATCH = flags.DEFINE_integer("batch_size", 16, "Rows per batch, both implementations.")
_TORCH_THREADS = flags.DEFINE_integer("torch_threads", 0, "torch intra-op threads; 0 = torch's default. On an "
                                      "oversubscribed CPU, 1 avoids OpenMP spin-waits (100x slower decoding).")
_DATA_DIR = flags.DEFINE_string("data_dir", os.path.join(os.path.dirname(_ROOT), "shared", "data", "tasks"),
                                "Offline task data.")
_OUT = flags.DEFINE_string("out", os.path.join(_ROOT, "benchmarks", "results", "bench_evaluation"),
                           "Output path prefix (.json and .md are written).")


class HFGenerator:
    """transformers LlamaForCausalLM behind the runner's `generate` interface (reference only)."""

    def __init__(self, model_dir: str, tokenizer: Tokenizer, batch_size: int):
        import torch
        import transformers

        self.torch, self.tokenizer, self.batch_size = torch, tokenizer, batch_size
        self.model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        """Greedy, left-padded batches sorted by length; text cut at the earliest stop string."""
        torch, tok = self.torch, self.tokenizer
        encoded = [tok.encode(r.prompt) for r in requests]
        order = sorted(range(len(requests)), key=lambda i: -len(encoded[i]))
        out: list[Generation | None] = [None] * len(requests)
        for start in range(0, len(order), self.batch_size):
            rows = order[start:start + self.batch_size]
            width = max(len(encoded[i]) for i in rows)
            ids = torch.full((len(rows), width), tok.pad_id, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for b, i in enumerate(rows):
                ids[b, width - len(encoded[i]):] = torch.tensor(encoded[i])
                mask[b, width - len(encoded[i]):] = 1
            stops = list(requests[rows[0]].stop)
            with torch.inference_mode():
                generated = self.model.generate(
                    input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=requests[rows[0]].max_new_tokens,
                    pad_token_id=tok.pad_id, eos_token_id=tok.eos_id, stop_strings=stops or None,
                    tokenizer=tok.hf if stops else None)
            for b, i in enumerate(rows):
                out[i] = self._finish(generated[b, width:].tolist(), requests[i].stop)
        return out  # type: ignore[return-value]

    def _finish(self, new_ids: list[int], stop: Sequence[str]) -> Generation:
        tok = self.tokenizer
        if tok.eos_id in new_ids:
            new_ids = new_ids[:new_ids.index(tok.eos_id)]
        text = tok.decode(new_ids)
        cuts = [c for c in (text.find(s) for s in stop if s) if c >= 0]
        if cuts:
            return Generation(text[:min(cuts)], len(new_ids), "stop")
        return Generation(text, len(new_ids), "length")


def prepare(task: str, num_items: int, out: str) -> list[dict]:
    """The task's Gold Pipeline test items, prepared by the data pipeline."""
    config = offline.get_config()
    config.data_dir, config.tasks, config.num_test, config.formats, config.mixture = (
        _DATA_DIR.value, task, num_items, "gold_pipeline", "")
    pipeline.prepare(config, out)
    return io_utils.read_jsonl(str(pipeline.split_path(out, "gold_pipeline", task, "test")))


def eval_config(data: str, model_dir: str, task: str, num_items: int, mode: str, stop_strings: bool = True):
    config = base.get_config()
    config.model.path, config.model.name = model_dir, "smollm2_135m"
    e = config.eval
    e.data_dir, e.settings, e.tasks, e.num_test, e.mode = data, "gold_pipeline", task, num_items, mode
    e.batch_size, e.shard_size, e.stop_strings = _BATCH.value, 10 ** 6, stop_strings
    return config


@dataclasses.dataclass
class Figure:
    name: str
    items: int
    seconds: float
    accuracy: float
    extra: dict

    @property
    def items_per_s(self) -> float:
        return self.items / self.seconds

    def row(self) -> dict:
        stderr = 100 * math.sqrt(max(self.accuracy / 100 * (1 - self.accuracy / 100), 1e-12) / self.items)
        return {"name": self.name, "items": self.items, "seconds": round(self.seconds, 2),
                "items_per_s": round(self.items_per_s, 3), "accuracy": round(self.accuracy, 2),
                "accuracy_stderr": round(stderr, 2), **self.extra}


def run_ours(engine: Engine, data: str, model_dir: str, task: str, n: int, mode: str, workdir: str,
             stop_strings: bool = True) -> Figure:
    """The whole t5x_like evaluation (planning, shards, extraction/ranking, metrics, store) of n items."""
    compile_before = engine.stats["generate"]["compile_s"] + engine.stats["score"]["compile_s"]
    start = time.perf_counter()
    result = ev.run(eval_config(data, model_dir, task, n, mode, stop_strings), workdir, engines={"base": engine})
    seconds = time.perf_counter() - start
    records = io_utils.read_jsonl(ev_store.predictions_path(workdir, "gold_pipeline", task))
    compile_s = engine.stats["generate"]["compile_s"] + engine.stats["score"]["compile_s"] - compile_before
    extra = {"compile_s": round(compile_s, 2),
             "new_tokens_mean": round(sum(r.get("num_new_tokens", 0) for r in records) / len(records), 2)}
    if mode == "loglik":
        extra["acc_norm"] = round(result.scores[0].metrics["acc_norm_accuracy"], 2)
    name = f"t5x_like {mode}" + ("" if stop_strings else " (no stop strings, 250 new tokens)")
    return Figure(name, n, seconds, result.scores[0].row["value"], extra)


def run_hf(generator: HFGenerator, rows: list[dict], task_info: ev_records.TaskInfo) -> tuple[Figure, list[dict]]:
    """The same generation-mode evaluation with transformers: same requests, stops, extraction, metric."""
    setting = registry.get_setting("gold_pipeline")
    opts = ev_config.EvalOptions("generate", 250, 1024, True, False)
    start = time.perf_counter()
    records = ev_records.generate_records(setting, rows, [r["prompt"] for r in rows], generator, task_info, opts)  # type: ignore[arg-type]
    score = ev_scores.score_row(setting, task_info, records, model="smollm2_135m", adapter="", seed=0, setup="default",
                         mode="generate", faithful=False)
    seconds = time.perf_counter() - start
    return Figure("transformers generate", len(rows), seconds, score.row["value"], {}), records


def main(argv: list[str]) -> None:
    del argv
    import torch

    if _TORCH_THREADS.value:
        torch.set_num_threads(_TORCH_THREADS.value)
    task, n, n_hf = _TASK.value, _NUM_ITEMS.value, min(_HF_ITEMS.value, _NUM_ITEMS.value)
    model_dir = str(gguf.ensure_smollm2())
    tmp = tempfile.mkdtemp(prefix="bench_eval_")
    data = os.path.join(tmp, "data")
    rows = prepare(task, n, data)
    manifest = json.load(open(os.path.join(data, pipeline.MANIFEST)))["tasks"][task]
    task_info = ev_records.TaskInfo(task, manifest["metric"], manifest["cluster"], manifest["category"])
    tokenizer = load_tokenizer(model_dir)
    lengths = sorted(len(tokenizer.encode(r["prompt"])) for r in rows)
    logging.info("%s: %d items, prompt tokens median %d, max %d", task, n, lengths[len(lengths) // 2], lengths[-1])

    figures = []
    load_start = time.perf_counter()
    engine = Engine.load(model_dir, batch_size=_BATCH.value, progress=False)
    load_s = time.perf_counter() - load_start
    figures.append(run_ours(engine, data, model_dir, task, n, "generate", os.path.join(tmp, "gen")))
    ours_gen = io_utils.read_jsonl(ev_store.predictions_path(os.path.join(tmp, "gen"), "gold_pipeline", task))
    figures.append(run_ours(engine, data, model_dir, task, n, "loglik", os.path.join(tmp, "loglik")))
    hf_fig, hf_records = run_hf(HFGenerator(model_dir, tokenizer, _BATCH.value), rows[:n_hf], task_info)
    figures.append(hf_fig)
    if _NOSTOP_ITEMS.value:
        figures.append(run_ours(engine, data, model_dir, task, min(_NOSTOP_ITEMS.value, n), "generate",
                                os.path.join(tmp, "nostop"), stop_strings=False))

    same = sum(a["answer"] == b["answer"] for a, b in zip(ours_gen, hf_records)) / len(hf_records)
    gen, loglik, hf, *nostop = (f.row() for f in figures)
    summary = {
        "task": task, "setting": "gold_pipeline", "model": "SmolLM2-135M-Instruct (GGUF Q4_1 dequantized, fp32)",
        "prompt_tokens_median": lengths[len(lengths) // 2], "prompt_tokens_max": lengths[-1],
        "engine_load_s": round(load_s, 2), "batch_size": _BATCH.value, "figures": [gen, loglik, hf, *nostop],
        "generate_speedup_vs_transformers": round(gen["items_per_s"] / hf["items_per_s"], 2),
        "loglik_speedup_vs_generate": round(loglik["items_per_s"] / gen["items_per_s"], 2),
        "answers_identical_to_transformers": round(same, 4),
        "loglik_speedup_vs_generate_without_stops": (round(loglik["items_per_s"] / nostop[0]["items_per_s"], 2)
                                                     if nostop else None),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "load_avg_at_end": os.getloadavg()},
        "provenance": io_utils.provenance(),
    }
    os.makedirs(os.path.dirname(_OUT.value), exist_ok=True)
    io_utils.atomic_write_json(_OUT.value + ".json", summary)
    lines = ["| run | items | s | items/s | accuracy (± s.e.) | notes |", "|---|---|---|---|---|---|"]
    for f in (gen, loglik, hf, *nostop):
        notes = ", ".join(f"{k}={v}" for k, v in f.items()
                          if k not in ("name", "items", "seconds", "items_per_s", "accuracy", "accuracy_stderr"))
        lines.append(f"| {f['name']} | {f['items']} | {f['seconds']} | {f['items_per_s']} | "
                     f"{f['accuracy']} ± {f['accuracy_stderr']} | {notes} |")
    lines += ["", f"generation speed-up vs transformers: {summary['generate_speedup_vs_transformers']}x; "
              f"loglik vs generation: {summary['loglik_speedup_vs_generate']}x (vs generation without stop strings: "
              f"{summary['loglik_speedup_vs_generate_without_stops']}x); identical extracted answers "
              f"(first {n_hf} items): {100 * same:.1f}%"]
    io_utils.atomic_write_text(_OUT.value + ".md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    app.run(main)
