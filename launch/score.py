"""Loglikelihood of (context, continuation) requests in a jsonl file, lm-evaluation-harness semantics.

  python -m launch.score --model=DIR --requests=IN.jsonl --output=OUT.jsonl [--dtype=float32|bfloat16] [--mesh_shape=DATA,FSDP,TENSOR] [--batch_size=N]

Input lines `{"id", "context", "continuation"}`; output lines are the input objects plus
`{"logprob", "is_greedy", "num_tokens", "truncated"}`, in input order. The request file is checked
before the model loads; errors print one line and exit non-zero, and the output file only appears
once complete.
"""
from __future__ import annotations

import time

from absl import app, flags, logging

from t5x_like.errors import one_line_errors, run_app
from launch.inference_flags import check_output_file, load_engine
from t5x_like.engine import read_score_requests, score_fields
from t5x_like.scoring import DEFAULT_PACK_LENGTH
from t5x_like.io_utils import atomic_write_jsonl

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "Hugging Face model directory (config.json, safetensors, tokenizer).", required=True)
flags.DEFINE_string("requests", None, "Input jsonl: {id, context, continuation} per line.", required=True)
flags.DEFINE_string("output", None, "Output jsonl (written atomically).", required=True)
flags.DEFINE_integer("pack_length", DEFAULT_PACK_LENGTH, "Requests are packed into rows of this many tokens (0: one per row).")
flags.DEFINE_integer("batch_tokens", 0, "Tokens per batch (rows x row length); 0: 1024 on CPU, 16384 on accelerators.")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    start = time.perf_counter()
    with one_line_errors("score"):
        rows, requests = read_score_requests(FLAGS.requests)
        check_output_file(FLAGS.output, FLAGS.requests)
        engine = load_engine(FLAGS.model, pack_length=FLAGS.pack_length, score_batch_tokens=FLAGS.batch_tokens or None)
        results = engine.score(requests)
        atomic_write_jsonl(FLAGS.output, [{**row, **score_fields(r)} for row, r in zip(rows, results)])
    logging.info("scored %d requests (%d truncated) in %.1fs; compiled %s; timing %s; wrote %s", len(results),
                 sum(r.truncated for r in results), time.perf_counter() - start, engine.compile_counts, engine.timing,
                 FLAGS.output)


if __name__ == "__main__":
    run_app(main, "score")
