"""A realistic synthetic results tree for the analysis tests, laid out as t5x_like.experiment writes it.

One model; 14 tasks in 7 clusters (multiple-choice and generative, seen and held-out). eval/base
holds base_d and gold_pipeline (adapter '', the eval seed 42); eval/<format>_seed<s> holds flan_d, or
samplegen_d and samplegen_pipeline (the base model continuing that run's SampleGen-D output: adapter
''), with the tuned model's export path as adapter (it contains the seed) and 3 seeds per format;
an extra column `mode` as the evaluator writes it. Each run directory holds its scores.csv and
predictions/<setting>/<task>.jsonl. Item outcomes are simulated from a latent per-task skill, so
tuned and base scores correlate, and one task (trec) is solved only when tuned.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd

MODEL = "llama2-7b"
SEEDS = (42, 1234, 10203)
N_ITEMS = 120
# task -> (cluster, category, seen, num_options, metric)
TASKS = {
    "qnli": ("nli", "NLU", False, 2, "accuracy"),
    "snli": ("nli", "NLU", True, 3, "accuracy"),
    "mnli_matched": ("nli", "NLU", True, 3, "accuracy"),
    "copa": ("commonsense", "NLU", True, 2, "accuracy"),
    "story_cloze": ("commonsense", "NLU", False, 2, "accuracy"),
    "yelp_polarity_reviews": ("sentiment", "NLU", False, 2, "accuracy"),
    "winogrande": ("coreference", "NLU", False, 2, "accuracy"),
    "wsc273": ("coreference", "NLU", False, 2, "accuracy"),
    "trec": ("misc", "NLU", False, 6, "accuracy"),
    "wic": ("misc", "NLU", False, 2, "accuracy"),
    "common_gen": ("struct_to_text_nlg", "NLG", True, 0, "rougeLsum"),
    "dart": ("struct_to_text_nlg", "NLG", False, 0, "rougeLsum"),
    "wmt16/de-en": ("translation_nlg", "NLG", True, 0, "bleu"),
    "wmt16/ro-en": ("translation_nlg", "NLG", False, 0, "bleu"),
}
# How much of a task's latent skill each setting realises (base_d is near chance).
STRENGTH = {"base_d": 0.08, "gold_pipeline": 0.7, "samplegen_pipeline": 0.6, "flan_d": 0.85,
            "samplegen_d": 0.8}
BASE = ("base_d", "gold_pipeline", "samplegen_pipeline")  # settings answered by the base model
SCORE_COLUMNS = ["model", "adapter", "seed", "setting", "task", "cluster", "category", "seen",
                 "metric", "value", "n", "num_options", "mode"]


def _skills(rng: np.random.Generator) -> dict[str, float]:
    """A latent skill in [0.1, 0.9] per task (what pretraining gives the base model)."""
    return {task: float(s) for task, s in zip(TASKS, np.linspace(0.1, 0.9, len(TASKS))[
        rng.permutation(len(TASKS))])}


def _simulate(rng, task: str, setting: str, skill: float, easiness: np.ndarray) -> np.ndarray:
    """Per-item correctness of one run: P(correct) rises with task skill and item easiness."""
    options = TASKS[task][3]
    chance = 1.0 / options if options else 0.0
    strength = STRENGTH[setting]
    if task == "trec":  # a capability only the tuned models have
        strength = 0.9 if setting in ("flan_d", "samplegen_d") else 0.0
    p_correct = chance + (1 - chance) * strength * skill
    threshold = np.quantile(easiness, 1 - p_correct) if p_correct < 1 else -np.inf
    noisy = easiness + rng.normal(0, 0.15, size=easiness.shape)
    return noisy > threshold


def _write_run(run_dir: str, rows: list[dict], predictions: dict[tuple[str, str], list[dict]]) -> None:
    """Writes one run directory: scores.csv and its predictions files."""
    os.makedirs(run_dir, exist_ok=True)
    pd.DataFrame(rows, columns=SCORE_COLUMNS).to_csv(os.path.join(run_dir, "scores.csv"), index=False)
    for (setting, task), items in predictions.items():
        path = os.path.join(run_dir, "predictions", setting, task + ".jsonl")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.writelines(json.dumps(item) + "\n" for item in items)


def _run_rows(rng, skills, easiness, adapter: str, seed: str, settings: tuple[str, ...]):
    """Score rows and predictions of one run (one adapter + seed, several settings)."""
    rows, predictions = [], {}
    for setting in settings:
        for task, (cluster, category, seen, options, metric) in TASKS.items():
            correct = _simulate(rng, task, setting, skills[task], easiness[task])
            if options:
                value = 100.0 * correct.mean()
                labels = [f"option {k}" for k in range(options)]
            else:  # a generative metric: monotone in the skill, with noise
                value = float(np.clip(60 * STRENGTH[setting] * skills[task] + rng.normal(0, 2), 0, 100))
                labels = None
            rows.append({"model": MODEL, "adapter": "" if setting in BASE else adapter, "seed": seed,
                         "setting": setting, "task": task, "cluster": cluster, "category": category,
                         "seen": seen, "metric": metric, "value": value, "n": N_ITEMS,
                         "num_options": options, "mode": "generate"})
            items = [{"id": f"{task}-{i}", "correct": bool(c), "prediction": "x"} for i, c in
                     enumerate(correct)]
            if labels:
                for item in items:
                    item["options"] = labels
            predictions[(setting, task)] = items
    return rows, predictions


def write_results_tree(root: str, seed: int = 0) -> list[str]:
    """Writes the synthetic results tree under ``root``; returns the run directories."""
    rng = np.random.default_rng(seed)
    skills = _skills(rng)
    easiness = {task: rng.uniform(size=N_ITEMS) for task in TASKS}
    runs = [(os.path.join(root, "eval", "base"), "", "42", ("base_d", "gold_pipeline"))]
    for s in SEEDS:
        for fmt, settings in (("flan", ("flan_d",)), ("samplegen", ("samplegen_d", "samplegen_pipeline"))):
            export = os.path.join(root, "train", f"{fmt}_seed{s}", "export", "model")
            runs.append((os.path.join(root, "eval", f"{fmt}_seed{s}"), export, str(s), settings))
    for run_dir, adapter, run_seed, settings in runs:
        rows, predictions = _run_rows(rng, skills, easiness, adapter, run_seed, settings)
        _write_run(run_dir, rows, predictions)
    return [run[0] for run in runs]
