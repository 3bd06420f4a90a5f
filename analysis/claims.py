"""The claim behind the correlation: per task, is tuned better than base beyond noise, and which
tasks does the tuned model solve while every base setting is at chance ("new capabilities")?

Paired test (needs predictions of both settings): on the item ids common to every tuned seed and the
base run, an exact McNemar test per seed; the task-level p-value is the maximum over seeds (an
intersection-union test: "different in every seed"), Holm-adjusted over the tasks of one comparison.
The effect is the seed-mean accuracy difference with a paired bootstrap CI over items.

Chance test: one-sided exact binomial test of accuracy > chance (chance = 100 / option count). The
correct count is read from predictions when present, else round(value * n / 100) for accuracy
metrics (other metrics without predictions cannot be tested: NaN). A tuned group
"solves" a task when it is above chance in every seed (max p over seeds, Holm over tasks < alpha);
a base setting is "at chance" when no seed of it is above chance (min p over seeds >= alpha,
uncorrected, which makes the "at chance" verdict harder to reach). Tasks without a chance rate
(generative tasks) are not checked.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from absl import logging

from analysis import stats
from analysis.load import Results
from analysis.pairs import Pair, base_adapter_for, base_mask, match_base_seed, setting_order, tuned_mask


def _predictions_by_seed(results: Results, model: str, adapter: str, setting: str, task: str
                         ) -> dict[str, pd.Series]:
    """seed -> per-item ``correct`` series of one run group on one task."""
    return {key[2]: p.correct for key, p in results.predictions.items()
            if key[0] == model and key[1] == adapter and key[3] == setting and key[4] == task}


def _paired_task(tuned: dict[str, pd.Series], base: dict[str, pd.Series], n_bootstrap: int,
                 seed: int) -> dict | None:
    """McNemar per seed and the bootstrap accuracy difference of one task, or None if unpairable."""
    matches = {s: match_base_seed(sorted(base), s) for s in tuned}
    matches = {s: b for s, b in matches.items() if b is not None}
    if not matches:
        return None
    ids = None
    for s, b in matches.items():
        common = tuned[s].index.intersection(base[b].index)
        ids = common if ids is None else ids.intersection(common)
    if len(ids) == 0:
        return None
    p_values, b_counts, c_counts = [], [], []
    for s, b in matches.items():
        t, r = tuned[s].loc[ids].to_numpy(), base[b].loc[ids].to_numpy()
        b_counts.append(int((t & ~r).sum()))
        c_counts.append(int((~t & r).sum()))
        p_values.append(stats.mcnemar_exact(b_counts[-1], c_counts[-1]))
    tuned_item = np.mean([tuned[s].loc[ids].to_numpy() for s in matches], axis=0)
    base_item = np.mean([base[b].loc[ids].to_numpy() for b in set(matches.values())], axis=0)
    diff, low, high = stats.paired_bootstrap_mean(100.0 * (tuned_item - base_item), n_bootstrap, seed)
    if all(b > c for b, c in zip(b_counts, c_counts)):
        direction = "tuned > base"
    elif all(b < c for b, c in zip(b_counts, c_counts)):
        direction = "base > tuned"
    else:
        direction = "mixed"
    return {"n_items": len(ids), "n_seeds": len(matches), "tuned_acc": 100.0 * tuned_item.mean(),
            "base_acc": 100.0 * base_item.mean(), "diff": diff, "diff_ci_low": low,
            "diff_ci_high": high, "tuned_only": int(np.sum(b_counts)),
            "base_only": int(np.sum(c_counts)), "direction": direction,
            "mcnemar_p_max": max(p_values)}


def paired_tests(pairs: Sequence[Pair], results: Results, n_bootstrap: int = 2000, seed: int = 0,
                 alpha: float = 0.05) -> pd.DataFrame:
    """Per-task paired comparison of each pair's tuned and base settings (where predictions exist)."""
    rows = []
    for pair in pairs:
        family = []
        for task in pair.tasks.index:
            tuned = _predictions_by_seed(results, pair.model, pair.adapter, pair.tuned_setting, task)
            base = _predictions_by_seed(results, pair.model, pair.base_adapter, pair.base_setting, task)
            outcome = _paired_task(tuned, base, n_bootstrap, seed) if tuned and base else None
            if outcome is not None:
                family.append({"model": pair.model, "adapter": pair.adapter,
                               "tuned_setting": pair.tuned_setting, "base_setting": pair.base_setting,
                               "task": task, **outcome})
        if not family:
            continue
        frame = pd.DataFrame(family)
        frame["mcnemar_p_holm"] = stats.holm(frame["mcnemar_p_max"])
        significant = (frame["mcnemar_p_holm"] < alpha) & (frame["direction"] != "mixed")
        frame["verdict"] = np.where(significant, frame["direction"], "no significant difference")
        rows.append(frame)
    if not rows:
        logging.info("no predictions pair up: paired per-task tests skipped.")
        return pd.DataFrame()
    return pd.concat(rows, ignore_index=True)


ACCURACY_METRICS = frozenset({"accuracy", "acc", "acc_norm", "exact_match"})


def _above_chance_p(results: Results, rows: pd.DataFrame, chance: float) -> dict[str, float]:
    """seed -> one-sided binomial p-value of accuracy above chance for one run group on one task.

    The correct count comes from the predictions; without them, from value * n / 100 when the
    metric is an accuracy, else the p-value is NaN (not testable: e.g. MCC is not a rate).
    """
    p_values = {}
    for row in rows.itertuples():
        predictions = results.predictions.get((row.model, row.adapter, row.seed, row.setting, row.task))
        if predictions is not None:
            k, n = int(predictions.correct.sum()), len(predictions.correct)
        elif row.metric in ACCURACY_METRICS:
            k, n = int(round(row.value * row.n / 100.0)), int(row.n)
        else:
            p_values[row.seed] = float("nan")
            continue
        p_values[row.seed] = stats.binomial_above_chance(k, n, chance)
    return p_values


def chance_checks(results: Results, task_info: pd.DataFrame,
                  tuned_settings: Sequence[str], alpha: float = 0.05) -> pd.DataFrame:
    """For every tuned group and task with a chance rate: tuned above chance? every base at chance?"""
    scores = results.scores
    analysed = tuned_mask(scores, tuned_settings)
    checked_tasks = task_info.index[np.isfinite(task_info["chance"])]
    rows = []
    for (model, adapter, setting), group in scores[analysed].groupby(["model", "adapter", "setting"]):
        base_scores = scores[(scores["model"] == model) & base_mask(scores)]
        family = []
        for task, task_rows in group[group["task"].isin(checked_tasks)].groupby("task"):
            chance = float(task_info.loc[task, "chance"])
            tuned_p = _above_chance_p(results, task_rows, chance)
            row = {"model": model, "adapter": adapter, "tuned_setting": setting, "task": task,
                   "cluster": task_info.loc[task, "cluster"], "seen": bool(task_rows["seen"].iloc[0]),
                   "chance": chance, "tuned_mean": task_rows["value"].mean(),
                   "tuned_p_max": np.max(list(tuned_p.values()))}  # NaN if any seed is untestable
            base_at_chance = []
            for base_setting in setting_order(base_scores["setting"].unique()):
                setting_rows = base_scores[base_scores["setting"] == base_setting]
                base_adapter = base_adapter_for(sorted(setting_rows["adapter"].unique()), adapter)
                rows_b = setting_rows[(setting_rows["adapter"] == base_adapter) &
                                      (setting_rows["task"] == task)]
                if base_adapter is None or rows_b.empty:
                    continue
                base_p = _above_chance_p(results, rows_b, chance)
                row[f"{base_setting}_mean"] = rows_b["value"].mean()
                base_at_chance.append(bool(np.min(list(base_p.values())) >= alpha))  # untestable (NaN) is not "at chance"
            row["n_base_settings"] = len(base_at_chance)
            row["all_base_at_chance"] = bool(base_at_chance) and all(base_at_chance)
            family.append(row)
        if family:
            frame = pd.DataFrame(family)
            frame.insert(frame.columns.get_loc("tuned_p_max") + 1, "tuned_p_holm",
                         stats.holm(frame["tuned_p_max"]))
            rows.append(frame)
    if not rows:
        return pd.DataFrame()
    table = pd.concat(rows, ignore_index=True)
    table["tuned_above_chance"] = table["tuned_p_holm"] < alpha
    table["new_capability"] = table["tuned_above_chance"] & table["all_base_at_chance"]
    return table


def new_capabilities(checks: pd.DataFrame) -> pd.DataFrame:
    """The tasks a tuned group solves while every base setting is at chance (may be empty)."""
    if checks.empty:
        return checks
    return checks[checks["new_capability"]].drop(columns=["new_capability"]).reset_index(drop=True)


def describe_missing_chance(task_info: pd.DataFrame) -> str:
    """A sentence naming the tasks excluded from the chance checks (no option count)."""
    missing = sorted(task_info.index[~np.isfinite(task_info["chance"])])
    if not missing:
        return ""
    return (f"{len(missing)} task(s) have no chance rate (generative, or no option count): "
            f"{', '.join(missing)}; they are not checked for new capabilities.")

