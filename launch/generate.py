"""Greedy (or sampled) continuations of prompts in a jsonl file, with a KV cache.

  python -m launch.generate --model=DIR --requests=IN.jsonl --output=OUT.jsonl [--dtype=float32|bfloat16] [--mesh_shape=DATA,FSDP,TENSOR]

Input lines `{"id", "prompt", "max_new_tokens", "stop": [..]}` (max_new_tokens defaults to
--max_new_tokens, stop to none); output lines are the input objects plus `{"text", "num_tokens",
"finish_reason", "truncated"}` in input order, with `text` excluding the prompt and cut at the
first stop string. Errors print one line and exit non-zero; the output file only appears once complete.
"""
from __future__ import annotations

import time

from absl import app, flags, logging

from t5x_like.errors import one_line_errors, run_app
from launch.inference_flags import check_output_file, load_engine
from t5x_like.engine import generation_fields, read_generation_requests
from t5x_like.io_utils import atomic_write_jsonl

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "Hugging Face model directory (config.json, safetensors, tokenizer).", required=True)
flags.DEFINE_string("requests", None, "Input jsonl: {id, prompt, max_new_tokens, stop} per line.", required=True)
flags.DEFINE_string("output", None, "Output jsonl (written atomically).", required=True)
flags.DEFINE_integer("max_new_tokens", 64, "For request lines without max_new_tokens.")
flags.DEFINE_float("temperature", 0.0, "0 = greedy; > 0 samples from softmax(logits / temperature).")
flags.DEFINE_integer("seed", 0, "Sampling seed.")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    start = time.perf_counter()
    with one_line_errors("generate"):
        rows, requests = read_generation_requests(FLAGS.requests, FLAGS.max_new_tokens)
        check_output_file(FLAGS.output, FLAGS.requests)
        engine = load_engine(FLAGS.model, seed=FLAGS.seed)
        generations = engine.generate(requests, temperature=FLAGS.temperature)
        atomic_write_jsonl(FLAGS.output, [{**row, **generation_fields(g)} for row, g in zip(rows, generations)])
    reasons = {r: sum(g.finish_reason == r for g in generations) for r in ("stop", "eos", "length")}
    logging.info("generated %d continuations (%s) in %.1fs; compiled %s; timing %s; wrote %s", len(generations),
                 reasons, time.perf_counter() - start, engine.compile_counts, engine.timing, FLAGS.output)


if __name__ == "__main__":
    run_app(main, "generate")
