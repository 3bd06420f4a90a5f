"""Settings x tasks evaluation of a base model and its tuned models, resumable (docs/evaluation.md).

A run evaluates one base model, optionally a FLAN-tuned and a SampleGen-tuned model, on the paired
test items of a prepared data directory (launch.prepare_data) in a list of settings
(`t5x_like.settings`, the registry). Its rooms:

  config       the eval section's checks, EvalConfigError, the knobs that change records
  contexts     what the model reads per item: prompts, ranking contexts, stop strings
  records      per-item records: generation + answer extraction + option matching, or loglik ranking
  task_scores  corpus-level metrics of one (setting, task): its scores.csv row
  store        the results store: shards, predictions, scores, the run's identity
  models       which weights answer each role: HF dir, merged export or PEFT adapter; one Engine each
  runner       `run(config, workdir)`: plan, compute the missing shards on the whole mesh, write scores
"""
from t5x_like.evaluation.runner import EvalResult, run

__all__ = ["EvalResult", "run"]
