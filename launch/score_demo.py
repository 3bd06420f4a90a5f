"""Scoring demo on the real model: SmolLM2-135M-Instruct ranks the options of a multiple-choice task.

  python -m launch.score_demo [--task=arc_easy|piqa|copa] [--limit=100] [--data_dir=DIR] [--model=DIR]

Zero-shot, lm-evaluation-harness style (`t5x_like.zero_shot`): each option is a continuation of the
task's lm-eval prompt (" " + option), the highest summed log-likelihood wins (`acc`), or the highest
per character (`acc_norm`). Prints both next to the chance rate. Examples come from the data registry
(`t5x_like.data.sources.load_examples`, local files under --data_dir / $T5X_LIKE_DATA_DIR);
the model defaults to the PyPI GGUF converted once by `t5x_like.gguf.ensure_smollm2`.
"""
from __future__ import annotations

import time

from absl import app, flags

from t5x_like.errors import one_line_errors, run_app
from launch.inference_flags import load_engine
from t5x_like import gguf
from t5x_like.data.sources import load_examples
from t5x_like.zero_shot import PROMPTS, rank_zero_shot

FLAGS = flags.FLAGS
flags.DEFINE_enum("task", "arc_easy", sorted(PROMPTS), "Multiple-choice task to rank options of.")
flags.DEFINE_integer("limit", 100, "Examples scored (the first N of the eval split; 0 = all).")
flags.DEFINE_string("data_dir", None, "Local task data (default: $T5X_LIKE_DATA_DIR).")
flags.DEFINE_string("model", None, "HF model directory (default: SmolLM2-135M-Instruct from the PyPI GGUF).")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    start = time.perf_counter()
    with one_line_errors("score_demo"):
        examples = load_examples(FLAGS.task, "eval", data_dir=FLAGS.data_dir)
        examples = examples[:FLAGS.limit] if FLAGS.limit else examples
        model_dir = FLAGS.model or str(gguf.ensure_smollm2())
        engine = load_engine(model_dir)
    ranking = rank_zero_shot(engine, FLAGS.task, examples)
    print(f"{FLAGS.task}: {ranking.n} examples, {ranking.requests} loglikelihood requests, model {model_dir}")
    print(f"  acc      {ranking.acc:5.1f}%   (chance {ranking.chance:.1f}%)")
    print(f"  acc_norm {ranking.acc_norm:5.1f}%")
    print(f"  {time.perf_counter() - start:.0f}s in all; compiled {engine.compile_counts}; "
          f"{engine.scorer.stats['truncated']} requests truncated")


if __name__ == "__main__":
    run_app(main, "score_demo")
