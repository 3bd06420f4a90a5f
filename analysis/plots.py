"""Figures (matplotlib, Agg backend), each saved as PNG (150 dpi) and PDF.

* ``figure1``: the paper's Figure-1 view, one panel per tuned-vs-base pair: per-task points
  (x = base score, y = tuned seed mean with seed-std error bars), colour = cluster,
  marker = seen / held-out, the y = x diagonal and Spearman rho with its p-value; on raw scores
  (the paper's) or on a chance-corrected variant (analysis/chance.py, dotted lines at chance).
* ``task_bars``: per-task horizontal bars of every setting, with seed-std error bars and the
  chance rate.
* ``heatmap``: Spearman correlations between all settings (seed means, pairwise-complete tasks).
"""
from __future__ import annotations

import io
import math
import os
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from analysis import chance  # noqa: E402
from analysis.pairs import Pair, setting_order, short_adapter_labels  # noqa: E402
from analysis.tables import format_p  # noqa: E402
from t5x_like.io_utils import atomic_write_bytes  # noqa: E402

_MARKERS = {True: "o", False: "^"}
DPI = 150


def save(fig: plt.Figure, stem: str) -> list[str]:
    """Saves a figure as ``stem``.png and ``stem``.pdf (atomically) and closes it."""
    paths = []
    for ext in ("png", "pdf"):
        buffer = io.BytesIO()
        fig.savefig(buffer, format=ext, dpi=DPI, bbox_inches="tight")
        atomic_write_bytes(f"{stem}.{ext}", buffer.getvalue())
        paths.append(f"{stem}.{ext}")
    plt.close(fig)
    return paths


def cluster_colours(clusters: Sequence[str]) -> dict[str, tuple]:
    """A stable colour per cluster (tab10, then tab20 for more than 10 clusters)."""
    names = sorted(set(clusters))
    if len(names) <= 10:
        palette = plt.get_cmap("tab10").colors
    else:  # tab20's dark shades first, then the light ones, so that neighbours differ
        tab20 = plt.get_cmap("tab20").colors
        palette = tab20[0::2] + tab20[1::2]
    return {name: palette[i % len(palette)] for i, name in enumerate(names)}


def _pair_title(pair: Pair, adapter_label: str | None) -> str:
    """Panel title: 'tuned vs base', with the adapter's label when a tuned setting has several."""
    suffix = f" [{adapter_label}]" if adapter_label is not None else ""
    title = f"{pair.tuned_setting}{suffix} vs {pair.base_setting}"
    return title if len(title) <= 36 else f"{pair.tuned_setting}{suffix}\nvs {pair.base_setting}"


def _axis_limits(pairs: Sequence[Pair]) -> tuple[float, float]:
    """Shared axis limits: [-3, 103] for scores in [0, 100], lower when a corrected score is negative."""
    lowest = min(min(p.tasks["tuned_mean"].min(), p.tasks["base_mean"].min()) for p in pairs)
    return min(-3.0, 5.0 * math.floor(lowest / 5.0) - 3.0), 103.0


def figure1(pairs: Sequence[Pair], task_info: pd.DataFrame, correlations: pd.DataFrame,
            stem: str, scores: str = "raw") -> list[str]:
    """One panel per pair of one model (rows: tuned groups, columns: base settings), on the scores
    of one variant of chance.CORRECTED or raw; rho from the ``correlations`` rows of that variant."""
    if scores != "raw":
        pairs = [chance.corrected_pair(p, task_info["chance"], scores) for p in pairs]
    limits = _axis_limits(pairs)
    unit = "score" if scores == "raw" else chance.LABELS[scores]
    tuned_groups = sorted({(p.adapter, p.tuned_setting) for p in pairs},
                          key=lambda g: (setting_order([g[1]]), g))
    base_settings = setting_order([p.base_setting for p in pairs])
    adapters_per_setting = pd.Series([g[1] for g in tuned_groups]).value_counts()
    multi_adapter = bool((adapters_per_setting > 1).any())
    labels = short_adapter_labels([p.adapter for p in pairs])
    colours = cluster_colours(task_info["cluster"])
    n_rows, n_cols = len(tuned_groups), len(base_settings)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(3.6 * n_cols + 0.4, 3.5 * n_rows + 0.6),
                             squeeze=False, sharex=True, sharey=True)
    for ax in axes.flat:
        ax.set_visible(False)
    for pair in pairs:
        ax = axes[tuned_groups.index((pair.adapter, pair.tuned_setting)),
                  base_settings.index(pair.base_setting)]
        ax.set_visible(True)
        _draw_panel(ax, pair, task_info, colours, correlations[correlations["scores"] == scores], limits)
        ax.set_title(_pair_title(pair, labels[pair.adapter] if multi_adapter else None), fontsize=10)
    for ax, (adapter, tuned) in zip(axes[:, 0], tuned_groups):
        ax.set_ylabel(f"{tuned} {unit} (seed mean)")
    for ax, base in zip(axes[-1], base_settings):
        ax.set_xlabel(f"{base} {unit}")
    used = sorted(task_info.loc[sorted({t for p in pairs for t in p.tasks.index}), "cluster"].unique())
    handles = [Line2D([], [], ls="", marker="s", color=colours[c], label=c) for c in used]
    handles += [Line2D([], [], ls="", marker=_MARKERS[True], color="k", label="seen"),
                Line2D([], [], ls="", marker=_MARKERS[False], color="k", mfc="none", label="held-out"),
                Line2D([], [], ls="--", color="0.5", label="y = x")]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), fontsize=8,
               frameon=False, bbox_to_anchor=(0.5, 0.0))
    variant = "" if scores == "raw" else f" ({chance.LABELS[scores]}: 0 = chance)"
    fig.suptitle(f"{pairs[0].model}: per-task scores{variant}, tuned vs base in-context settings", fontsize=11)
    legend_rows = math.ceil(len(handles) / min(len(handles), 6))
    fig.tight_layout(rect=(0, (0.15 + 0.2 * legend_rows) / fig.get_figheight(), 1,
                           1 - 0.35 / fig.get_figheight()))
    return save(fig, stem)


def _draw_panel(ax: plt.Axes, pair: Pair, task_info: pd.DataFrame, colours: dict,
                correlations: pd.DataFrame, limits: tuple[float, float]) -> None:
    """Per-task points of one pair with the diagonal and the Spearman annotation (``correlations``:
    the rows of the score variant drawn); dotted lines at 0 when the axes go below it (chance)."""
    tasks = pair.tasks.join(task_info["cluster"])
    ax.plot([limits[0], 100], [limits[0], 100], ls="--", color="0.5", lw=1, zorder=1)
    if limits[0] < -3:
        ax.axhline(0, ls=":", color="0.6", lw=0.8, zorder=1)
        ax.axvline(0, ls=":", color="0.6", lw=0.8, zorder=1)
    for (cluster, seen), group in tasks.groupby(["cluster", "seen"]):
        yerr = group["tuned_std"].fillna(0).to_numpy()
        ax.errorbar(group["base_mean"], group["tuned_mean"], yerr=yerr, ls="", marker=_MARKERS[seen],
                    ms=6, color=colours[cluster], mfc=colours[cluster] if seen else "white",
                    mew=1.3, elinewidth=0.8, capsize=2, alpha=0.9, zorder=3)
    row = correlations[(correlations["model"] == pair.model) &
                       (correlations["adapter"] == pair.adapter) &
                       (correlations["tuned_setting"] == pair.tuned_setting) &
                       (correlations["base_setting"] == pair.base_setting) &
                       (correlations["subset"] == "all")]
    if len(row):
        rho, p, n = row["spearman"].iloc[0], row["spearman_p"].iloc[0], row["n"].iloc[0]
        text = f"ρ = {rho:.2f}, p = {format_p(p)}\nn = {n}" if math.isfinite(rho) else \
            f"ρ undefined\nn = {n}"
        # lower right: tuned below base, the emptiest corner when the paper's claim holds
        ax.text(0.96, 0.04, text, transform=ax.transAxes, va="bottom", ha="right", fontsize=9,
                bbox=dict(boxstyle="round,pad=0.3", fc="white", ec="0.7", alpha=0.9))
    ax.set_xlim(*limits)
    ax.set_ylim(*limits)
    ax.set_aspect("equal")
    ax.grid(True, color="0.92", lw=0.6)


TASKS_PER_COLUMN = 19


def task_bars(means: pd.DataFrame, task_info: pd.DataFrame, stem: str) -> list[str]:
    """Horizontal grouped bars: every series (setting [adapter]) per task, seed-std error bars.

    Tasks are ordered by cluster; more than TASKS_PER_COLUMN tasks are split into side-by-side
    columns so that the figure stays readable.
    """
    series = ordered_series(means)
    info = task_info.loc[sorted(means["task"].unique())]
    tasks = list(info.sort_values(["cluster", "task"]).index)
    n_cols = math.ceil(len(tasks) / TASKS_PER_COLUMN)
    per_col = math.ceil(len(tasks) / n_cols)
    row_height = min(0.6, max(0.3, 0.1 * len(series)))
    fig, axes = plt.subplots(1, n_cols, figsize=(8.5 * n_cols, row_height * per_col + 1.6),
                             squeeze=False)
    colours = plt.get_cmap("tab10")
    for ax, start in zip(axes[0], range(0, len(tasks), per_col)):
        _bar_column(ax, means, info, tasks[start:start + per_col], series, colours, per_col)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4 * n_cols), fontsize=8,
               frameon=False)
    fig.suptitle(f"{means['model'].iloc[0]}: per-task scores of every setting", fontsize=11)
    legend_rows = math.ceil(len(labels) / min(len(labels), 4 * n_cols))
    fig.tight_layout(rect=(0, (0.25 + 0.18 * legend_rows) / fig.get_figheight(), 1, 1))
    return save(fig, stem)


def _bar_column(ax: plt.Axes, means: pd.DataFrame, info: pd.DataFrame, tasks: list[str],
                series: list[str], colours, n_rows: int) -> None:
    """One column of the per-task bar chart: the given tasks, one bar per series, chance ticks."""
    height = 0.8 / len(series)
    for k, name in enumerate(series):
        rows = means[means["series"] == name].set_index("task").reindex(tasks)
        y = np.arange(len(tasks)) + (k - (len(series) - 1) / 2) * height
        ax.barh(y, rows["mean"].fillna(0), height=height * 0.92, color=colours(k % 10), label=name,
                xerr=rows["std"].fillna(0), error_kw=dict(elinewidth=0.7, capsize=1.5, ecolor="0.2"))
    chance = info.loc[tasks, "chance"].to_numpy()
    has_chance = np.isfinite(chance)
    ax.scatter(chance[has_chance], np.arange(len(tasks))[has_chance], marker="|",
               s=(220 * len(series) / 5), color="k", linewidths=1.6, zorder=5, label="chance")
    ax.set_yticks(np.arange(len(tasks)))
    ax.set_yticklabels([f"{t}  ({info.loc[t, 'cluster']})" for t in tasks], fontsize=8)
    ax.set_ylim(n_rows - 0.5, -0.5)
    ax.set_xlim(0, 100)
    ax.set_xlabel("score (seed mean ± std)")
    ax.grid(True, axis="x", color="0.9", lw=0.6)


def ordered_series(means: pd.DataFrame) -> list[str]:
    """Series labels in setting order (tuned first, then base, then variants), adapters sorted."""
    order = setting_order(means["setting"].unique())
    first = means.drop_duplicates("series")
    return list(first.assign(rank=first["setting"].map(order.index))
                .sort_values(["rank", "series"])["series"])


def heatmap(means: pd.DataFrame, stem: str) -> list[str]:
    """Spearman correlation between the per-task seed means of every pair of series."""
    series = ordered_series(means)
    wide = means.pivot(index="task", columns="series", values="mean")[series]
    matrix = wide.corr(method="spearman", min_periods=3).to_numpy()
    size = 1.0 + 0.75 * len(series)
    fig, ax = plt.subplots(figsize=(size + 1.6, size))
    image = ax.imshow(np.ma.masked_invalid(matrix), cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set_xticks(range(len(series)))
    ax.set_xticklabels(series, rotation=40, ha="right", fontsize=8)
    ax.set_yticks(range(len(series)))
    ax.set_yticklabels(series, fontsize=8)
    for i in range(len(series)):
        for j in range(len(series)):
            value = matrix[i, j]
            label = "n/a" if not np.isfinite(value) else f"{value:.2f}"
            colour = "white" if np.isfinite(value) and abs(value) > 0.6 else "black"
            ax.text(j, i, label, ha="center", va="center", fontsize=8, color=colour)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="Spearman ρ across tasks")
    ax.set_title(f"{means['model'].iloc[0]}: correlation of per-task scores", fontsize=11)
    fig.tight_layout()
    return save(fig, stem)


def figure_stem(output_dir: str, kind: str, model: str) -> str:
    """``OUT/figures/<kind>_<model>`` with the model name made file-safe."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in model)
    return os.path.join(output_dir, "figures", f"{kind}_{safe}")
