"""Corpus-level metrics of one (setting, task): the row it contributes to scores.csv."""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from t5x_like import metrics
from t5x_like.data import mixtures
from t5x_like.evaluation.records import TaskInfo, has_options
from t5x_like.settings import Setting


def prediction_of(record: Mapping[str, Any], options_task: bool, key: str = "matched_option") -> str | None:
    """What the task metric compares: the matched option (None = wrong) or the extracted answer."""
    return record[key] if options_task else record["answer"]


def task_metrics(task: TaskInfo, records: Sequence[Mapping[str, Any]], faithful: bool) -> dict[str, float]:
    """The task's metric over every item at once (corpus level); acc_norm variants in loglik mode."""
    options_task = [has_options(r, task.metric) for r in records]
    refs = [r["references"] if len(r["references"]) > 1 else r["references"][0] for r in records]
    preds = [prediction_of(r, o) for r, o in zip(records, options_task)]
    values = metrics.compute_metric(task.metric, preds, refs, faithful=faithful)
    if any(r["mode"] == "loglik" and o for r, o in zip(records, options_task)):
        norm = [r["acc_norm_option"] if r["mode"] == "loglik" and o else p
                for r, o, p in zip(records, options_task, preds)]
        values.update({f"acc_norm_{k}": v for k, v in
                       metrics.compute_metric(task.metric, norm, refs, faithful=faithful).items()})
    return values


@dataclasses.dataclass(frozen=True)
class ScoreRow:
    """One (setting, task) result: the scores.csv columns plus every metric value (scores.json)."""

    row: dict[str, Any]
    metrics: dict[str, float]
    num_truncated: int


def score_row(setting: Setting, task: TaskInfo, records: Sequence[Mapping[str, Any]], *, model: str,
              adapter: str, seed: int, setup: str, mode: str, faithful: bool) -> ScoreRow:
    """The scores.csv row of a (setting, task) from all its records."""
    values = task_metrics(task, records, faithful)
    options = {len(r["options"]) for r in records}
    row = {"model": model, "adapter": adapter, "seed": seed, "setting": setting.name, "role": setting.role,
           "main_setting": setting.main, "task": task.name,
           "cluster": task.cluster or "", "category": task.category, "seen": mixtures.is_seen(task.name, setup),
           "metric": task.metric, "value": metrics.primary_score(task.metric, values), "n": len(records),
           "num_options": options.pop() if len(options) == 1 else "", "mode": mode}
    return ScoreRow(row, values, sum(bool(r.get("truncated")) for r in records))

