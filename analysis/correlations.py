"""The paper's test: across tasks, does a tuned setting's score track a base in-context setting's?

One row per (pair, subset of tasks): Spearman rho (primary), Pearson r and Kendall tau-b on the seed
means, each with a two-sided p-value, a percentile bootstrap CI over tasks, a Holm-adjusted p-value
(family = every defined test of that coefficient in the table), and the mean / std over seeds of the
per-seed coefficient.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd
from absl import logging

from analysis import stats
from analysis.pairs import Pair

DEFAULT_SUBSETS = ("all", "seen", "held_out", "nlu", "nlg", "clusters")
FEW_TASKS = 10


def check_subsets(subsets: Sequence[str]) -> None:
    """Raises a ValueError naming the valid choices if a subset name is unknown."""
    for name in subsets:
        if name not in DEFAULT_SUBSETS and not (name.startswith("cluster:") and len(name) > 8):
            raise ValueError(f"unknown subset {name!r}; use {list(DEFAULT_SUBSETS)} or "
                             "'cluster:<name>'.")


def subset_masks(tasks: pd.DataFrame, subsets: Sequence[str], min_cluster_tasks: int
                 ) -> dict[str, pd.Series]:
    """Boolean task masks for subset names: all, seen, held_out, nlu, nlg, clusters, cluster:<name>.

    ``clusters`` expands to ``cluster:<name>`` for every cluster with >= min_cluster_tasks tasks in
    this pair; a cluster named explicitly is kept whatever its size.
    """
    category = tasks["category"].str.lower()
    masks = {}
    for name in subsets:
        if name == "all":
            masks[name] = pd.Series(True, index=tasks.index)
        elif name in ("seen", "held_out"):
            masks[name] = tasks["seen"] == (name == "seen")
        elif name in ("nlu", "nlg"):
            masks[name] = category == name
        elif name == "clusters":
            counts = tasks["cluster"].value_counts()
            for cluster in sorted(counts[counts >= min_cluster_tasks].index):
                masks[f"cluster:{cluster}"] = tasks["cluster"] == cluster
        elif name.startswith("cluster:"):
            masks[name] = tasks["cluster"] == name.split(":", 1)[1]
        else:
            check_subsets([name])
    return masks


def per_seed_coefficients(pair: Pair, mask: pd.Series) -> pd.DataFrame:
    """seed, n and the three coefficients of each seed's pairing on the subset's tasks (NaN where
    undefined: fewer than MIN_N tasks or a constant vector)."""
    rows = []
    for seed, frame in pair.per_seed.items():
        frame = frame.loc[frame.index.intersection(mask.index[mask])]
        row = {"seed": seed, "n": len(frame)}
        for method in stats.METHODS:
            row[method] = (stats.rowwise_coefficient(frame["tuned"].to_numpy()[None],
                                                     frame["base"].to_numpy()[None], method)[0]
                           if len(frame) >= stats.MIN_N else math.nan)
        rows.append(row)
    return pd.DataFrame(rows, columns=["seed", "n", *stats.METHODS])


def correlate(pair: Pair, subset: str, mask: pd.Series, n_bootstrap: int, seed: int
              ) -> tuple[dict, pd.DataFrame]:
    """One row of the correlation table for one pair restricted to one subset of tasks, and the
    per-seed coefficients behind its seed mean / std columns."""
    tasks = pair.tasks[mask.reindex(pair.tasks.index, fill_value=False)]
    tuned, base = tasks["tuned_mean"].to_numpy(), tasks["base_mean"].to_numpy()
    key = {"model": pair.model, "adapter": pair.adapter, "tuned_setting": pair.tuned_setting,
           "base_setting": pair.base_setting, "base_adapter": pair.base_adapter, "subset": subset}
    row = {**key, "n": len(tasks), "n_seeds": len(pair.per_seed)}
    seeds = per_seed_coefficients(pair, mask)
    notes, p_method = [], ""
    indices = stats.bootstrap_indices(len(tasks), n_bootstrap, seed) if len(tasks) else None
    for method in stats.METHODS:
        result = stats.correlation(tuned, base, method, labels=(pair.tuned_setting, pair.base_setting))
        row[method], row[f"{method}_p"] = result.coef, result.p
        low = high = math.nan
        if np.isfinite(result.coef):
            low, high, _ = stats.bootstrap_ci(tuned, base, method, indices)
        row[f"{method}_ci_low"], row[f"{method}_ci_high"] = low, high
        finite = seeds[method].to_numpy()[np.isfinite(seeds[method].to_numpy())]
        row[f"{method}_seed_mean"] = float(finite.mean()) if len(finite) else math.nan
        row[f"{method}_seed_std"] = float(finite.std(ddof=1)) if len(finite) > 1 else math.nan
        p_method = p_method or result.p_method
        if result.note and result.note not in notes:
            notes.append(result.note)
    if 0 < len(tasks) < FEW_TASKS:
        notes.append(f"few tasks (n={len(tasks)})")
    row["p_method"], row["note"] = p_method, "; ".join(notes)
    return row, seeds.assign(**key)[[*key, "seed", "n", *stats.METHODS]]


def correlation_table(pairs: Sequence[Pair], task_info: pd.DataFrame,
                      subsets: Sequence[str] = DEFAULT_SUBSETS, min_cluster_tasks: int = 5,
                      n_bootstrap: int = 2000, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The correlation table over pairs x subsets (Holm-adjusted p-values per coefficient) and the
    per-seed coefficients (one row per pair x subset x seed)."""
    rows, per_seed = [], []
    for i, pair in enumerate(pairs):
        tasks = pair.tasks.join(task_info[["cluster", "category"]])
        for subset, mask in subset_masks(tasks, subsets, min_cluster_tasks).items():
            row, seeds = correlate(pair, subset, mask, n_bootstrap, seed)
            rows.append(row)
            per_seed.append(seeds)
        logging.info("correlations %d/%d: %s %s %s vs %s", i + 1, len(pairs), pair.model,
                     pair.adapter, pair.tuned_setting, pair.base_setting)
    if not rows:
        raise ValueError(f"subsets {list(subsets)} select no tasks (a cluster needs >= "
                         f"{min_cluster_tasks} tasks for 'clusters'); add 'all' or name clusters.")
    table = pd.DataFrame(rows)
    for method in stats.METHODS:
        table.insert(table.columns.get_loc(f"{method}_p") + 1, f"{method}_p_holm",
                     stats.holm(table[f"{method}_p"]))
    return table, pd.concat(per_seed, ignore_index=True)
