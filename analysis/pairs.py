"""Seed means and the pairing of a tuned setting with a base in-context setting, per task.

Every score row has a *role* (scores.csv's column, else the settings registry, t5x_like/settings.py):
*tuned* (an instruction-tuned model answers: ``flan_d``, ``samplegen_d`` and their variants such as
``flan_adv`` or ``samplegen_bad_prompt_3``) or *base* (the base model in context: ``base_d``,
``gold_pipeline``, ``samplegen_pipeline`` and their variants), and a *main setting* it is, or is a
variant of. The tuned groups analysed are the tuned rows whose main setting is one of
``tuned_settings``; their partners are base rows only. A tuned group is one (model, adapter, tuned
setting); its seed mean is over its seeds. Its base partner rows (same model, base setting) are
chosen by adapter: the tuned group's own adapter if the base setting has rows with it (e.g. a
SampleGen Pipeline fed by that adapter's generations), else the empty adapter (the bare base model),
else the only adapter the base setting has; otherwise the pairing is ambiguous and skipped with a
warning. Per-seed pairing uses the base rows of the same seed, else the base rows without a seed,
else the base seed mean.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np
import pandas as pd
from absl import logging

from analysis.load import Results, ResultsError
from t5x_like.settings import MAIN_SETTINGS

TUNED_SETTINGS = tuple(name for name, s in MAIN_SETTINGS.items() if s.role == "tuned")
BASE_SETTINGS = ("gold_pipeline", "samplegen_pipeline", "base_d")  # display order of the base main settings
GROUP = ["model", "adapter", "setting"]


def tuned_mask(frame: pd.DataFrame, tuned_settings: Sequence[str] = TUNED_SETTINGS) -> pd.Series:
    """Mask of the rows of tuned settings analysed: role tuned, main setting in ``tuned_settings``."""
    return (frame["role"] == "tuned") & frame["main_setting"].isin(list(tuned_settings))


def base_mask(frame: pd.DataFrame) -> pd.Series:
    """Mask of the rows that may partner a tuned group: role base (the base model in context)."""
    return frame["role"] == "base"


def setting_order(settings: Sequence[str]) -> list[str]:
    """Sorts settings: the paper's tuned settings, then its base settings, then variants by name."""
    canonical = TUNED_SETTINGS + BASE_SETTINGS
    return sorted(set(settings), key=lambda s: (canonical.index(s) if s in canonical else
                                                len(canonical), s))


def task_info(results: Results) -> pd.DataFrame:
    """Per-task attributes (cluster, category, metric, num_options, chance in %), indexed by task.

    The chance rate is 100 / num_options from scores.csv; where that column is absent, the mean of
    100 / len(options) over the items of a predictions file of the task; NaN for generative tasks
    (num_options 0) and where neither source exists. Conflicting attributes raise.
    """
    scores = results.scores
    rows = []
    for task, group in scores.groupby("task", sort=True):
        info = {"task": task}
        for column in ("cluster", "category"):
            values = group[column].unique()
            if len(values) > 1:
                raise ResultsError(f"task {task!r} has several {column}s {sorted(values)} across rows "
                                   f"(files: {sorted(group['source'].unique())}); fix the evaluator output.")
            info[column] = values[0]
        metrics = sorted(group["metric"].unique())
        if len(metrics) > 1:
            logging.warning("task %s is scored with several metrics %s; correlating mixed metrics.",
                            task, metrics)
        info["metric"] = "/".join(metrics)
        options = group["num_options"].dropna().unique()
        if len(options) > 1:
            raise ResultsError(f"task {task!r} has several num_options {sorted(options)}.")
        info["num_options"] = float(options[0]) if len(options) else math.nan
        info["chance"] = _chance(info["num_options"], task, results)
        rows.append(info)
    return pd.DataFrame(rows).set_index("task")


def _chance(num_options: float, task: str, results: Results) -> float:
    """Chance accuracy (%) of a task from its option count, else from its predictions' options."""
    if np.isfinite(num_options):
        return 100.0 / num_options if num_options >= 1 else math.nan
    for key, predictions in sorted(results.predictions.items()):
        if key[4] == task and np.isfinite(predictions.chance):
            return predictions.chance
    return math.nan


def seed_means(scores: pd.DataFrame) -> pd.DataFrame:
    """Mean, sample std (ddof=1; NaN for one seed) and seed count per (model, adapter, setting, task)."""
    seen = scores.groupby(GROUP + ["task"])["seen"].nunique()
    if (seen > 1).any():
        key = seen[seen > 1].index[0]
        raise ResultsError(f"'seen' differs between seeds of {dict(zip(GROUP + ['task'], key))}.")
    grouped = scores.groupby(GROUP + ["task"], sort=True)
    table = grouped.agg(mean=("value", "mean"), std=("value", "std"), n_seeds=("value", "size"),
                        seen=("seen", "first"), role=("role", "first"),
                        main_setting=("main_setting", "first")).reset_index()
    return table


@dataclasses.dataclass(frozen=True)
class Pair:
    """Per-task scores of one tuned group next to one base setting of the same model."""
    model: str
    adapter: str
    tuned_setting: str
    base_setting: str
    base_adapter: str
    # index = task; columns: tuned_mean, tuned_std, n_seeds, seen, base_mean, base_std
    tasks: pd.DataFrame
    # seed -> DataFrame(index=task, columns tuned, base), the per-seed pairing
    per_seed: dict[str, pd.DataFrame]


def match_base_seed(base_seeds: Sequence[str], seed: str) -> str | None:
    """The base seed to pair with a tuned seed: the same, else '' (unseeded), else the only one."""
    if seed in base_seeds:
        return seed
    if "" in base_seeds:
        return ""
    return base_seeds[0] if len(base_seeds) == 1 else None


def base_adapter_for(base_adapters: Sequence[str], adapter: str) -> str | None:
    """The adapter of the base rows paired with a tuned adapter (see module docstring)."""
    if adapter in base_adapters:
        return adapter
    if "" in base_adapters:
        return ""
    return base_adapters[0] if len(base_adapters) == 1 else None


def build_pairs(scores: pd.DataFrame, tuned_settings: Sequence[str] = TUNED_SETTINGS) -> list[Pair]:
    """Every (tuned group, base setting) pair of the same model, on the tasks both have scored."""
    means = seed_means(scores)
    pairs = []
    for (model, adapter, tuned_setting), tuned in means[tuned_mask(means, tuned_settings)].groupby(GROUP, sort=True):
        model_rows = scores[scores["model"] == model]
        model_means = means[(means["model"] == model) & base_mask(means)]
        for base_setting in setting_order(model_means["setting"].unique()):
            base_rows = model_rows[model_rows["setting"] == base_setting]
            base_adapter = base_adapter_for(sorted(base_rows["adapter"].unique()), adapter)
            if base_adapter is None:
                logging.warning("model %s: cannot tell which adapter's %s rows pair with adapter %r "
                                "(%s); skipped.", model, base_setting, adapter,
                                sorted(base_rows["adapter"].unique()))
                continue
            pair = _make_pair(tuned, scores, model_means, model, adapter, tuned_setting,
                              base_setting, base_adapter)
            if len(pair.tasks):
                pairs.append(pair)
    return pairs


def _make_pair(tuned: pd.DataFrame, scores: pd.DataFrame, model_means: pd.DataFrame, model: str,
               adapter: str, tuned_setting: str, base_setting: str, base_adapter: str) -> Pair:
    """Joins one tuned group with one base setting's rows on task, overall and per seed."""
    base = model_means[(model_means["setting"] == base_setting) &
                       (model_means["adapter"] == base_adapter)].set_index("task")
    tasks = tuned.set_index("task")[["mean", "std", "n_seeds", "seen"]].add_prefix("tuned_")
    tasks = tasks.rename(columns={"tuned_n_seeds": "n_seeds", "tuned_seen": "seen"})
    unmatched = sorted(set(tasks.index) ^ set(base.index))
    if unmatched:
        logging.warning("model %s: %s [%s] vs %s: %d task(s) scored in only one of them, left out: %s",
                        model, tuned_setting, adapter, base_setting, len(unmatched), unmatched)
    tasks = tasks.join(base[["mean", "std"]].add_prefix("base_"), how="inner")
    tuned_rows = scores[(scores["model"] == model) & (scores["adapter"] == adapter) &
                        (scores["setting"] == tuned_setting)]
    base_rows = scores[(scores["model"] == model) & (scores["adapter"] == base_adapter) &
                       (scores["setting"] == base_setting)]
    base_by_seed = base_rows.pivot(index="task", columns="seed", values="value")
    per_seed = {}
    for seed, rows in tuned_rows.groupby("seed", sort=True):
        base_seed = match_base_seed(list(base_by_seed.columns), seed)
        base_values = base_by_seed[base_seed] if base_seed is not None else tasks["base_mean"]
        joined = pd.DataFrame({"tuned": rows.set_index("task")["value"], "base": base_values})
        per_seed[seed] = joined.loc[joined.index.intersection(tasks.index)].dropna()
    return Pair(model, adapter, tuned_setting, base_setting, base_adapter, tasks.sort_index(), per_seed)


def with_series_labels(means: pd.DataFrame) -> pd.DataFrame:
    """Adds ``series``: the setting name, or ``setting [adapter]`` where a model's setting has
    rows of several adapters (the label used in per-task tables and figures)."""
    adapters = means.groupby(["model", "setting"])["adapter"].transform("nunique")
    short = means["adapter"].map(short_adapter_labels(list(means["adapter"])))
    labels = np.where(adapters > 1, means["setting"] + " [" + short + "]", means["setting"])
    return means.assign(series=labels)


def short_adapter_labels(adapters: Sequence[str]) -> dict[str, str]:
    """Display names of adapters: with several, the path components they all share at the start and
    at the end are dropped (``/w/train/flan_seed{seed}/export/model`` -> ``flan_seed{seed}``)."""
    names = sorted({a for a in adapters if a})
    labels = {a: a for a in set(adapters)}
    if len(names) < 2:
        return labels
    parts = [n.split("/") for n in names]
    start = 0
    while all(len(p) > start + 1 for p in parts) and len({p[start] for p in parts}) == 1:
        start += 1
    end = 0
    while all(len(p) > start + end + 1 for p in parts) and len({p[-1 - end] for p in parts}) == 1:
        end += 1
    labels.update({n: "/".join(p[start:len(p) - end]) for n, p in zip(names, parts)})
    return labels
