"""The paper's test: across tasks, does a tuned setting's score track a base in-context setting's?

One row per (pair, subset of tasks, score variant): Spearman rho (primary), Pearson r and Kendall
tau-b on the seed means, each with a two-sided p-value, a percentile bootstrap CI over tasks, a
Holm-adjusted p-value (family = every defined test of that coefficient on the same score variant in
the table), and the mean / std over seeds of the per-seed coefficient. The score variants
(analysis/chance.py) are the raw scores, the scores above chance, the chance-normalised scores and
the partial correlation of the raw scores controlling for the chance rate.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd
from absl import logging

from analysis import chance, stats
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


def _coefficient(tuned: np.ndarray, base: np.ndarray, method: str, covariate: np.ndarray | None) -> float:
    """One pairing's coefficient (partial when a covariate is given); NaN where undefined."""
    if covariate is None:
        return (stats.rowwise_coefficient(tuned[None], base[None], method)[0]
                if len(tuned) >= stats.MIN_N else math.nan)
    if method not in stats.PARTIAL_METHODS or len(tuned) < stats.MIN_N + 1:
        return math.nan
    return stats.rowwise_partial(tuned[None], base[None], covariate[None], method)[0]


def per_seed_coefficients(pair: Pair, mask: pd.Series, covariate: pd.Series | None = None) -> pd.DataFrame:
    """seed, n and the three coefficients of each seed's pairing on the subset's tasks (partial ones
    controlling for ``covariate``, indexed by task, when given; NaN where undefined)."""
    rows = []
    for seed, frame in pair.per_seed.items():
        frame = frame.loc[frame.index.intersection(mask.index[mask])]
        z = covariate.loc[frame.index].to_numpy() if covariate is not None else None
        row = {"seed": seed, "n": len(frame)}
        for method in stats.METHODS:
            row[method] = _coefficient(frame["tuned"].to_numpy(), frame["base"].to_numpy(), method, z)
        rows.append(row)
    return pd.DataFrame(rows, columns=["seed", "n", *stats.METHODS])


def score_variant(pair: Pair, chance_rates: pd.Series, scores: str) -> tuple[Pair, pd.Series | None]:
    """The pair on one score variant of chance.SCORES, and the partial's covariate (chance rate by
    task; None for the other variants)."""
    if scores == "partial":
        rated = chance.with_chance_rates(pair, chance_rates)
        return rated, chance_rates.reindex(rated.tasks.index)
    return chance.corrected_pair(pair, chance_rates, scores), None


def _chance_note(scores: str, n_no_chance: int) -> str:
    """What a score variant did with the tasks that have no chance rate ('' when there are none)."""
    if not n_no_chance or scores == "raw":
        return ""
    if scores == "partial":
        return f"{n_no_chance} task(s) without a chance rate left out"
    return f"{n_no_chance} task(s) without a chance rate at their raw score"


def correlate(pair: Pair, subset: str, mask: pd.Series, n_bootstrap: int, seed: int,
              chance_rates: pd.Series, scores: str) -> tuple[dict, pd.DataFrame]:
    """One row of the correlation table for one pair restricted to one subset of tasks on one score
    variant (``chance_rates``: per task, % or NaN), and the per-seed coefficients behind its seed
    mean / std columns."""
    in_subset = mask.reindex(pair.tasks.index, fill_value=False).to_numpy()
    n_no_chance = int(np.isnan(chance_rates.reindex(pair.tasks.index[in_subset]).to_numpy()).sum())
    pair, covariate = score_variant(pair, chance_rates, scores)
    tasks = pair.tasks[mask.reindex(pair.tasks.index, fill_value=False)]
    tuned, base = tasks["tuned_mean"].to_numpy(), tasks["base_mean"].to_numpy()
    z = covariate.loc[tasks.index].to_numpy() if covariate is not None else None
    key = {"model": pair.model, "adapter": pair.adapter, "tuned_setting": pair.tuned_setting,
           "base_setting": pair.base_setting, "base_adapter": pair.base_adapter, "subset": subset,
           "scores": scores}
    row = {**key, "n": len(tasks), "n_no_chance": n_no_chance, "n_seeds": len(pair.per_seed)}
    seeds = per_seed_coefficients(pair, mask, covariate)
    notes, p_method = [], ""
    indices = stats.bootstrap_indices(len(tasks), n_bootstrap, seed) if len(tasks) else None
    labels = (pair.tuned_setting, pair.base_setting)
    for method in stats.METHODS:
        result = (stats.correlation(tuned, base, method, labels=labels) if z is None else
                  stats.partial_correlation(tuned, base, z, method, labels=labels))
        row[method], row[f"{method}_p"] = result.coef, result.p
        low = high = math.nan
        if np.isfinite(result.coef):
            low, high, _ = stats.bootstrap_ci(tuned, base, method, indices, covariate=z)
        row[f"{method}_ci_low"], row[f"{method}_ci_high"] = low, high
        finite = seeds[method].to_numpy()[np.isfinite(seeds[method].to_numpy())]
        row[f"{method}_seed_mean"] = float(finite.mean()) if len(finite) else math.nan
        row[f"{method}_seed_std"] = float(finite.std(ddof=1)) if len(finite) > 1 else math.nan
        p_method = p_method or result.p_method
        if result.note and result.note not in notes:
            notes.append(result.note)
    notes.append(_chance_note(scores, n_no_chance))
    if 0 < len(tasks) < FEW_TASKS:
        notes.append(f"few tasks (n={len(tasks)})")
    row["p_method"], row["note"] = p_method, "; ".join(note for note in notes if note)
    return row, seeds.assign(**key)[[*key, "seed", "n", *stats.METHODS]]


def correlation_table(pairs: Sequence[Pair], task_info: pd.DataFrame,
                      subsets: Sequence[str] = DEFAULT_SUBSETS, min_cluster_tasks: int = 5,
                      n_bootstrap: int = 2000, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The correlation table over pairs x subsets x score variants (Holm-adjusted p-values per
    coefficient and variant) and the per-seed coefficients (one row per pair x subset x variant x seed)."""
    rows, per_seed = [], []
    for i, pair in enumerate(pairs):
        tasks = pair.tasks.join(task_info[["cluster", "category"]])
        for subset, mask in subset_masks(tasks, subsets, min_cluster_tasks).items():
            for scores in chance.SCORES:
                row, seeds = correlate(pair, subset, mask, n_bootstrap, seed, task_info["chance"], scores)
                rows.append(row)
                per_seed.append(seeds)
        logging.info("correlations %d/%d: %s %s %s vs %s", i + 1, len(pairs), pair.model,
                     pair.adapter, pair.tuned_setting, pair.base_setting)
    if not rows:
        raise ValueError(f"subsets {list(subsets)} select no tasks (a cluster needs >= "
                         f"{min_cluster_tasks} tasks for 'clusters'); add 'all' or name clusters.")
    table = pd.DataFrame(rows)
    families = table.groupby("scores", sort=False).indices.values()
    for method in stats.METHODS:
        p, adjusted = table[f"{method}_p"].to_numpy(), np.full(len(table), math.nan)
        for family in families:
            adjusted[family] = stats.holm(p[family])
        table.insert(table.columns.get_loc(f"{method}_p") + 1, f"{method}_p_holm", adjusted)
    return table, pd.concat(per_seed, ignore_index=True)


def _excludes_zero(low: pd.Series, high: pd.Series) -> pd.Series:
    """+1 / -1 where a CI lies above / below 0, 0 where it covers 0 or is undefined."""
    return pd.Series(np.where(low > 0, 1, np.where(high < 0, -1, 0)), index=low.index)


def chance_survival(table: pd.DataFrame, corrected: str = chance.HEADLINE) -> pd.DataFrame:
    """Per pair (subset 'all'): Spearman rho, CI and p on every score variant side by side, and
    ``survives``: 'yes' when the raw and the ``corrected`` 95% CIs both exclude 0 on the same side,
    'no' when only the raw one does, 'no raw correlation' when the raw CI covers 0 (or is undefined)."""
    pair_key = ["model", "adapter", "tuned_setting", "base_setting"]
    rows = table[table["subset"] == "all"]
    values = ["n", "spearman", "spearman_ci_low", "spearman_ci_high", "spearman_p"]
    wide = rows.pivot(index=pair_key, columns="scores", values=values)
    out = pd.DataFrame(index=wide.index)
    for scores in chance.SCORES:
        for value in values:
            out[f"{scores}_{value}"] = wide[(value, scores)].to_numpy()
    raw = _excludes_zero(out["raw_spearman_ci_low"], out["raw_spearman_ci_high"])
    kept = _excludes_zero(out[f"{corrected}_spearman_ci_low"], out[f"{corrected}_spearman_ci_high"])
    out["survives"] = np.where(raw == 0, "no raw correlation", np.where(kept == raw, "yes", "no"))
    order = rows.drop_duplicates(pair_key).set_index(pair_key).index
    return out.loc[order].reset_index()
