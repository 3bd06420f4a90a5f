"""The analysis pipeline and its report: results dirs -> tables, figures, report.md, report.html.

``run_analysis`` is the single entry point (launch/analyze.py and the orchestration call it). The
report is built once as a list of blocks and rendered twice: Markdown (figures linked from
``figures/``) and a self-contained HTML page (figures embedded as base64 PNG).
"""
from __future__ import annotations

import base64
import dataclasses
import html
import os
from typing import Sequence

import numpy as np
import pandas as pd
from absl import logging

from analysis import chance, claims, correlations, plots, stats
from analysis.load import Results, ResultsError, load_results
from analysis.pairs import (TUNED_SETTINGS, Pair, build_pairs, seed_means, short_adapter_labels, task_info,
                            tuned_mask, with_series_labels)
from analysis.tables import (format_cell, format_mean_std, format_number, format_p,
                             to_markdown, write_table)
from t5x_like.io_utils import atomic_directory, atomic_write_text, workdir_lock


REPORT_FILE = "report.md"  # written last: its presence marks a complete analysis directory


@dataclasses.dataclass(frozen=True)
class Block:
    """One report element: kind is 'h2', 'h3', 'p', 'table' (a DataFrame) or 'figure' (a PNG path)."""
    kind: str
    content: object
    caption: str = ""


# ----------------------------------------------------------------------------- display tables

def _add_adapter_column(out: pd.DataFrame, table: pd.DataFrame) -> None:
    """Adds the short adapter label as a column of a display table when there are several."""
    if table["adapter"].nunique() > 1:
        out["adapter"] = table["adapter"].map(short_adapter_labels(list(table["adapter"]))).to_numpy()


def correlation_display(table: pd.DataFrame) -> pd.DataFrame:
    """The correlation table for reading: coefficients with CI, p and Holm p, per-seed mean ± sd."""
    out = pd.DataFrame({"model": table["model"]})
    _add_adapter_column(out, table)
    out["tuned"], out["base"], out["subset"], out["scores"], out["n"] = (
        table["tuned_setting"], table["base_setting"], table["subset"], table["scores"], table["n"])
    symbols = {"spearman": "ρ", "pearson": "r", "kendall": "τ"}
    for method, symbol in symbols.items():
        out[f"{symbol} [95% CI]"] = [
            f"{format_number(c)} [{format_number(lo)}, {format_number(hi)}]" if np.isfinite(c)
            else "undefined" for c, lo, hi in
            zip(table[method], table[f"{method}_ci_low"], table[f"{method}_ci_high"])]
        out[f"p({symbol})"] = table[f"{method}_p"].map(format_p)
        out[f"Holm p({symbol})"] = table[f"{method}_p_holm"].map(format_p)
        if method == "spearman":
            out["ρ per seed"] = [format_mean_std(m, s, 2) for m, s in
                                 zip(table["spearman_seed_mean"], table["spearman_seed_std"])]
    out["note"] = table["note"]
    return out.reset_index(drop=True)


def headline_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of the headline table: subset 'all' on the headline score variant (chance.HEADLINE)."""
    return table[(table["subset"] == "all") & (table["scores"] == chance.HEADLINE)]


def _ci_cell(coef: float, low: float, high: float, p: float) -> str:
    """'coef [low, high], p = p', or 'undefined'."""
    if not np.isfinite(coef):
        return "undefined"
    return f"{format_number(coef)} [{format_number(low)}, {format_number(high)}], p = {format_p(p)}"


def _pair_names(survival: pd.DataFrame) -> pd.Series:
    """'tuned vs base' per row, with the adapter's label where a tuned setting has several adapters."""
    labels = short_adapter_labels(list(survival["adapter"]))
    several = survival.groupby(["model", "tuned_setting"])["adapter"].transform("nunique") > 1
    return pd.Series([f"{t} [{labels[a]}] vs {b}" if many else f"{t} vs {b}" for t, a, b, many in
                      zip(survival["tuned_setting"], survival["adapter"], survival["base_setting"], several)],
                     index=survival.index)


def chance_display(survival: pd.DataFrame) -> pd.DataFrame:
    """Spearman ρ on every score variant side by side (subset 'all') and whether it survives."""
    out = pd.DataFrame({"model": survival["model"]})
    _add_adapter_column(out, survival)
    out["tuned"], out["base"] = survival["tuned_setting"], survival["base_setting"]
    out["n"] = survival["raw_n"].astype(int)
    for scores in chance.SCORES:
        out[f"ρ {chance.LABELS[scores]} [95% CI]"] = [
            _ci_cell(*values) for values in zip(*(survival[f"{scores}_spearman{suffix}"] for suffix in
                                                  ("", "_ci_low", "_ci_high", "_p")))]
    out["n (partial)"] = survival["partial_n"].astype(int)
    out[f"survives ({chance.LABELS[chance.HEADLINE]})"] = survival["survives"]
    return out.reset_index(drop=True)


def _names(names: pd.Series) -> str:
    """A list of pair names for a sentence ('none' when empty)."""
    return ", ".join(names) if len(names) else "none"


def survival_sentences(survival: pd.DataFrame) -> list[str]:
    """One sentence per model: does its correlation survive the chance correction, by the CIs?"""
    sentences = []
    names = _pair_names(survival)
    for model, rows in survival.groupby("model", sort=True):
        label = names.loc[rows.index]
        raw = rows["survives"] != "no raw correlation"
        partial = (rows["partial_spearman_ci_low"] > 0) | (rows["partial_spearman_ci_high"] < 0)
        if not raw.any():
            sentences.append(f"**{model}**: no raw ρ over all tasks has a 95% CI excluding 0 "
                             f"({len(rows)} pairs), so there is no correlation for chance rates to explain.")
            continue
        kept, lost = label[raw & (rows["survives"] == "yes")], label[raw & (rows["survives"] == "no")]
        sentences.append(
            f"**{model}**: of the {int(raw.sum())} pair(s) whose raw ρ over all tasks has a 95% CI "
            f"excluding 0, the correlation survives the chance correction (the CI of ρ on "
            f"{chance.LABELS[chance.HEADLINE]} scores still excludes 0, same sign) for {_names(kept)}"
            + (f", and does not for {_names(lost)}" if len(lost) else "")
            + f"; the partial ρ controlling for the chance rate excludes 0 for {_names(label[raw & partial])}.")
    return sentences


def main_table_text(table: pd.DataFrame) -> str:
    """The headline table (subset 'all', headline score variant) and the score variants side by side,
    as Markdown (what the CLI prints and correlations_all.md holds)."""
    if table.empty:
        return "(no correlations)\n"
    return (to_markdown(correlation_display(headline_rows(table))) + "\n"
            + to_markdown(chance_display(correlations.chance_survival(table))))


def per_task_table(means: pd.DataFrame, info: pd.DataFrame, tuned_settings: Sequence[str]
                   ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per (model, task): every series' seed mean and std, and the mean above chance and
    chance-normalised (CSV); 'mean ± sd' and the normalised mean (display)."""
    wide = means.pivot_table(index=["model", "task"], columns="series", values=["mean", "std"],
                             aggfunc="first", dropna=False)
    series = plots.ordered_series(means)
    tuned = means[tuned_mask(means, tuned_settings)]
    seen = tuned.groupby(["model", "task"])["seen"].agg(lambda v: "yes" if v.all() else
                                                        "no" if not v.any() else "mixed")
    base = pd.DataFrame(index=wide.index).reset_index()
    base = base.join(info[["cluster", "category", "metric", "chance"]], on="task")
    base["seen"] = [seen.get((m, t), "–") for m, t in zip(base["model"], base["task"])]
    full, display = base.copy(), base[["model", "task", "cluster", "category", "seen",
                                       "metric"]].copy()
    full["has_chance"] = np.isfinite(base["chance"].to_numpy())
    display["chance"] = base["chance"].map(lambda c: format_number(c, 1))
    for name in series:
        mean, std = wide[("mean", name)].to_numpy(), wide[("std", name)].to_numpy()
        full[f"{name}_mean"], full[f"{name}_std"] = mean, std
        for scores in chance.CORRECTED:
            full[f"{name}_{scores}"] = chance.relative_to_chance(mean, base["chance"].to_numpy(), scores)
        display[name] = [format_mean_std(m, s) for m, s in zip(mean, std)]
        display[f"{name} (norm.)"] = [format_number(v, 1) for v in full[f"{name}_normalised"]]
    order = base.sort_values(["model", "cluster", "task"]).index
    return full.loc[order].reset_index(drop=True), display.loc[order].reset_index(drop=True)


def paired_display(paired: pd.DataFrame) -> pd.DataFrame:
    """Per-task paired comparisons for reading (differences in accuracy points)."""
    out = pd.DataFrame({"model": paired["model"]})
    _add_adapter_column(out, paired)
    return out.assign(**{
        "tuned": paired["tuned_setting"], "base": paired["base_setting"],
        "task": paired["task"], "items": paired["n_items"], "seeds": paired["n_seeds"],
        "tuned acc": paired["tuned_acc"].map(lambda v: format_number(v, 1)),
        "base acc": paired["base_acc"].map(lambda v: format_number(v, 1)),
        "diff [95% CI]": [f"{d:+.1f} [{lo:+.1f}, {hi:+.1f}]" for d, lo, hi in
                          zip(paired["diff"], paired["diff_ci_low"], paired["diff_ci_high"])],
        "McNemar p (max over seeds)": paired["mcnemar_p_max"].map(format_p),
        "Holm p": paired["mcnemar_p_holm"].map(format_p), "verdict": paired["verdict"]})


def verdict_counts(paired: pd.DataFrame) -> pd.DataFrame:
    """How many tasks each comparison finds tuned better / base better / not different."""
    counts = paired.groupby(["model", "adapter", "tuned_setting", "base_setting", "verdict"]).size()
    table = counts.unstack("verdict", fill_value=0).reset_index()
    table.columns.name = None
    table["adapter"] = table["adapter"].map(short_adapter_labels(list(table["adapter"])))
    return table


def capabilities_display(caps: pd.DataFrame) -> pd.DataFrame:
    """New-capability tasks for reading: chance rate, tuned score and every base score."""
    base_columns = [c for c in caps.columns if c.endswith("_mean") and c != "tuned_mean"]
    out = caps[["model", "adapter", "tuned_setting", "task", "cluster", "seen"]].copy()
    out["adapter"] = out["adapter"].map(short_adapter_labels(list(out["adapter"])))
    out["chance"] = caps["chance"].map(lambda v: format_number(v, 1))
    out["tuned"] = caps["tuned_mean"].map(lambda v: format_number(v, 1))
    out["Holm p (tuned > chance)"] = caps["tuned_p_holm"].map(format_p)
    for column in base_columns:
        out[column[: -len("_mean")]] = caps[column].map(lambda v: format_number(v, 1))
    return out


# ----------------------------------------------------------------------------- the report

def _hypotheses(n_bootstrap: int, seed: int, alpha: float, n_tests: int) -> list[Block]:
    """The text that says which hypothesis each number tests and how."""
    return [
        Block("h2", "What is tested"),
        Block("p", "**H1, the paper's test.** For each base model, tuned setting T (an "
              "instruction-tuned adapter: FLAN-D, SampleGen-D) and base in-context setting B (Gold "
              "Pipeline, SampleGen Pipeline, Base-D): across the tasks of a subset, are the per-task "
              "scores of T (mean over seeds) associated with those of B? Null hypothesis: no "
              "association (ρ = 0), two-sided. Spearman ρ is primary; Pearson r and Kendall τ-b are "
              "robustness checks. p-values: exact permutation test (all n! pairings) when n ≤ "
              f"{stats.EXACT_MAX_N} tasks, otherwise scipy's (t distribution for ρ and r, exact or "
              f"normal for τ). 95% CI: percentile bootstrap over tasks ({n_bootstrap} resamples, "
              f"seed {seed}). Holm-adjusted p-values correct over the family of every defined test "
              f"of the same coefficient on the same score variant in the correlation table ({n_tests} "
              "tests each). 'ρ per seed' is the mean ± sd of the coefficient computed separately for "
              "each seed."),
        Block("p", "**Chance.** Tasks differ in chance rate (100 / number of options: 50% for two "
              "options, 16.7% for six), and a setting at chance scores its chance rate on every task, so "
              "two settings at chance already correlate across tasks. Every correlation is therefore "
              "also computed on scores relative to chance: *above chance* (score − chance), "
              "*normalised* (100 · (score − chance) / (100 − chance): 0 at chance, 100 perfect) and "
              "the *partial* correlation of the raw scores controlling for the chance rate "
              "(residuals of both on [1, chance]; p from the t distribution with n − 3 df; Spearman "
              "and Pearson only). Tasks without a chance rate (generative) keep their raw score in "
              "the first two and are left out of the partial. The headline table uses the "
              f"{chance.LABELS[chance.HEADLINE]} scores; raw scores are the paper's statistic and "
              "stand beside them. A correlation *survives* the correction when the 95% CIs of ρ on "
              "raw and on normalised scores both exclude 0 on the same side."),
        Block("p", "**H2, per task: is the tuned setting better than the base setting beyond "
              "noise?** On the same test items (ids common to every seed and the base run), an "
              "exact McNemar test per seed; a task counts as different only if it is different in "
              "every seed (the maximum p over seeds, an intersection-union test) with the same "
              "direction, after Holm correction over the tasks of one comparison at "
              f"α = {alpha}. The difference is in accuracy points (seed mean), with a paired "
              "bootstrap CI over items."),
        Block("p", "**H3, new capabilities.** A task is a new capability of a tuned setting if the "
              "tuned model is above chance in every seed (one-sided exact binomial test vs the "
              "chance rate 100 / number of options; max p over seeds, Holm over tasks, "
              f"α = {alpha}) while no seed of any base setting is above chance (uncorrected "
              f"binomial p ≥ {alpha}). Generative tasks have no chance rate and are not checked."),
    ]


def _caveats(table: pd.DataFrame, info: pd.DataFrame, means: pd.DataFrame) -> list[str]:
    """Caveats a reader must keep in mind, derived from the data."""
    caveats = []
    few = table[(table["n"] < correlations.FEW_TASKS) & (table["n"] > 0)]
    if len(few):
        caveats.append(f"{len(few)} of {len(table)} correlations rest on fewer than "
                       f"{correlations.FEW_TASKS} tasks (n = {sorted(int(n) for n in few['n'].unique())}): wide "
                       "confidence intervals, and with n ≤ 5 even ρ = ±1 may not reach p < 0.05.")
    undefined = table[~np.isfinite(table["spearman"])]
    if len(undefined):
        caveats.append(f"{len(undefined)} correlations are undefined (constant scores or fewer than "
                       f"{stats.MIN_N} tasks); they are reported as undefined, not 0, and left out "
                       "of the Holm family.")
    tied = table[table["note"].str.contains("tied")]
    if len(tied):
        caveats.append(f"{len(tied)} correlations involve tied scores; Spearman uses mid-ranks and "
                       "Kendall's τ-b corrects for ties, but many ties (e.g. tasks at 0) make the "
                       "rank statistics coarse.")
    metrics = sorted(info["metric"].unique())
    if len(metrics) > 1:
        caveats.append(f"Task scores use different metrics ({', '.join(metrics)}); a correlation "
                       "over all tasks mixes scales (Spearman and Kendall depend only on ranks, "
                       "Pearson does not).")
    seeds = means[means["n_seeds"] > 0].groupby(["model", "adapter", "setting"])["n_seeds"].max()
    tuned_seeds = sorted(seeds[seeds > 1].unique())
    caveats.append(f"Seeds per tuned setting: {tuned_seeds or [1]}. Standard deviations over so "
                   "few seeds are rough.")
    caveats.append("A correlation across tasks says that the settings rank tasks alike; it does not "
                   "say that they are equally good (see H2) or that they fail on the same items.")
    return caveats


def _sources_text(results: Results, pairs: Sequence[Pair], info: pd.DataFrame) -> str:
    """A sentence describing the inputs."""
    scores = results.scores
    return (f"Inputs: {len(results.sources)} results location(s) ({', '.join(results.sources)}); "
            f"{len(scores)} score rows; models: {', '.join(sorted(scores['model'].unique()))}; "
            f"settings: {', '.join(sorted(scores['setting'].unique()))}; {len(info)} tasks in "
            f"{info['cluster'].nunique()} clusters; {len(results.predictions)} predictions files; "
            f"{len(pairs)} tuned-vs-base pairs.")


def render_markdown(blocks: Sequence[Block], output_dir: str) -> str:
    """The report as Markdown; figures are linked relative to the output dir."""
    parts = []
    for block in blocks:
        if block.kind == "h1":
            parts.append(f"# {block.content}\n")
        elif block.kind == "h2":
            parts.append(f"## {block.content}\n")
        elif block.kind == "h3":
            parts.append(f"### {block.content}\n")
        elif block.kind == "p":
            parts.append(f"{block.content}\n")
        elif block.kind == "list":
            parts.append("".join(f"- {item}\n" for item in block.content))
        elif block.kind == "table":
            caption = f"*{block.caption}*\n\n" if block.caption else ""
            parts.append(caption + to_markdown(block.content))
        elif block.kind == "figure":
            rel = os.path.relpath(block.content, output_dir)
            parts.append(f"![{block.caption}]({rel})\n\n*{block.caption}*\n")
    return "\n".join(parts)


_CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1200px;
margin:2em auto;padding:0 1em;color:#222;line-height:1.45}table{border-collapse:collapse;margin:.5em 0 1.5em;
font-size:.85em}th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left}th{background:#f2f2f2}
tr:nth-child(even) td{background:#fafafa}figure{margin:1em 0 2em}img{max-width:100%}
figcaption,.caption{font-style:italic;color:#555;font-size:.9em}.scroll{overflow-x:auto}"""


def _inline_markdown(text: str) -> str:
    """Escapes text for HTML and renders **bold** spans (the only inline markup the report uses)."""
    pieces = html.escape(text).split("**")
    return "".join(f"<strong>{p}</strong>" if i % 2 else p for i, p in enumerate(pieces))


def _html_table(frame: pd.DataFrame) -> str:
    """A plain HTML table of display strings (the same cells as the Markdown table)."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(format_cell(v))}</td>" for v in values) + "</tr>"
                   for values in frame.itertuples(index=False))
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>'


def render_html(blocks: Sequence[Block], title: str) -> str:
    """The report as one self-contained HTML page (figures embedded as base64 PNG)."""
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{_CSS}</style></head><body>"]
    for block in blocks:
        if block.kind in ("h1", "h2", "h3"):
            parts.append(f"<{block.kind}>{html.escape(str(block.content))}</{block.kind}>")
        elif block.kind == "p":
            parts.append(f"<p>{_inline_markdown(block.content)}</p>")
        elif block.kind == "list":
            parts.append("<ul>" + "".join(f"<li>{_inline_markdown(i)}</li>" for i in block.content)
                         + "</ul>")
        elif block.kind == "table":
            if block.caption:
                parts.append(f"<p class='caption'>{html.escape(block.caption)}</p>")
            parts.append(_html_table(block.content))
        elif block.kind == "figure":
            with open(block.content, "rb") as f:
                data = base64.b64encode(f.read()).decode("ascii")
            parts.append(f"<figure><img alt='{html.escape(block.caption)}' "
                         f"src='data:image/png;base64,{data}'><figcaption>"
                         f"{html.escape(block.caption)}</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts)


# ----------------------------------------------------------------------------- the pipeline

def run_analysis(results_dirs: Sequence[str], output_dir: str,
                 subsets: Sequence[str] | None = None, *,
                 tuned_settings: Sequence[str] = TUNED_SETTINGS, min_cluster_tasks: int = 5,
                 n_bootstrap: int = 2000, seed: int = 0, alpha: float = 0.05) -> pd.DataFrame:
    """Runs the whole analysis; writes tables, figures and the report; returns the correlations.

    ``subsets``: names from correlations.DEFAULT_SUBSETS or ``cluster:<name>`` (None = defaults).
    The output directory appears whole or not at all (built beside it, then swapped in), under a
    lock against a second analysis into it; it must be new, empty or an earlier analysis output.
    """
    subsets = tuple(subsets or correlations.DEFAULT_SUBSETS)
    correlations.check_subsets(subsets)
    results = load_results(results_dirs)
    info = task_info(results)
    pairs = build_pairs(results.scores, tuned_settings)
    if not pairs:
        settings = sorted(results.scores["setting"].unique())
        raise ResultsError(f"no tuned-vs-base pair to correlate: settings found {settings}; need, "
                           f"for one model, a tuned setting ({', '.join(tuned_settings)} or a "
                           "variant '<name>_...') and a base setting on common tasks.")
    check_output_dir(output_dir)
    with workdir_lock(output_dir, "launch.analyze"), atomic_directory(output_dir) as tmp:
        table = _write_analysis(results, info, pairs, subsets, tmp, tuned_settings=tuned_settings,
                                min_cluster_tasks=min_cluster_tasks, n_bootstrap=n_bootstrap, seed=seed, alpha=alpha)
    logging.info("wrote %s (report.md, report.html, tables, figures/)", output_dir)
    return table


def check_output_dir(output_dir: str) -> None:
    """Refuses an output directory that holds something other than an earlier analysis (it is replaced
    as a whole, so a results directory or a home directory given by mistake must not be)."""
    if os.path.isdir(output_dir) and os.listdir(output_dir) and not os.path.isfile(
            os.path.join(output_dir, REPORT_FILE)):
        raise ResultsError(f"--output_dir={output_dir} is not empty and holds no earlier {REPORT_FILE}; the "
                           "analysis replaces its output directory as a whole, so give a new or empty one")


def _write_analysis(results: Results, info: pd.DataFrame, pairs: Sequence[Pair], subsets: Sequence[str],
                    output_dir: str, *, tuned_settings: Sequence[str], min_cluster_tasks: int, n_bootstrap: int,
                    seed: int, alpha: float) -> pd.DataFrame:
    """Every table, figure and the report into `output_dir` (the report last); returns the correlations."""
    os.makedirs(os.path.join(output_dir, "figures"), exist_ok=True)
    table, per_seed = correlations.correlation_table(pairs, info, subsets, min_cluster_tasks,
                                                     n_bootstrap, seed)
    atomic_write_text(os.path.join(output_dir, "correlations_per_seed.csv"), per_seed.to_csv(index=False))
    paired = claims.paired_tests(pairs, results, n_bootstrap, seed, alpha)
    checks = claims.chance_checks(results, info, tuned_settings, alpha)
    caps = claims.new_capabilities(checks)
    means = with_series_labels(seed_means(results.scores))
    blocks = [Block("h1", "Tuned vs in-context performance across tasks"),
              Block("p", _sources_text(results, pairs, info))]
    headline = table[table["scores"] == chance.HEADLINE]
    blocks += _hypotheses(n_bootstrap, seed, alpha, int(np.isfinite(headline["spearman_p"]).sum()))
    blocks += _write_correlations(table, output_dir)
    blocks += _write_figures(pairs, info, table, means, output_dir)
    blocks += _write_per_task(means, info, tuned_settings, output_dir)
    blocks += _write_claims(paired, checks, caps, info, output_dir)
    blocks += [Block("h2", "Caveats"), Block("list", _caveats(headline, info, means))]
    atomic_write_text(os.path.join(output_dir, "report.html"), render_html(blocks, "analysis report"))
    atomic_write_text(os.path.join(output_dir, REPORT_FILE), render_markdown(blocks, output_dir))
    return table


def _write_correlations(table: pd.DataFrame, output_dir: str) -> list[Block]:
    """correlations.{csv,md,tex}; report blocks for the main table and the subsets."""
    display = correlation_display(table)
    write_table(table, output_dir, "correlations",
                "Correlation across tasks between tuned and base in-context settings", display)
    headline = (table["scores"] == chance.HEADLINE).to_numpy()
    main = display[headline & (table["subset"].to_numpy() == "all")]
    rest = display[headline & (table["subset"].to_numpy() != "all")]
    survival = correlations.chance_survival(table)
    atomic_write_text(os.path.join(output_dir, "correlations_all.md"), main_table_text(table))
    label = chance.LABELS[chance.HEADLINE]
    blocks = [Block("h2", f"H1: correlation across tasks (all tasks, {label} scores)"),
              Block("table", main, f"Seed means on {label} scores (0 = chance, 100 = perfect); subset "
                    "'all'. Every score variant, full precision, in correlations.csv."),
              Block("h3", "Raw and chance-corrected correlations side by side"),
              Block("table", chance_display(survival), "Spearman ρ over all tasks on each score "
                    "variant, 95% bootstrap CI and p (partial: t test, n − 3 df, tasks with a chance "
                    "rate only)."),
              Block("list", survival_sentences(survival))]
    if len(rest):
        blocks += [Block("h2", f"H1 by subset (seen / held-out, NLU / NLG, clusters; {label} scores)"),
                   Block("table", rest, "Subsets of tasks; Holm over every test on the same score "
                         "variant. The other variants are in correlations.csv / .md.")]
    return blocks


def _write_figures(pairs: Sequence[Pair], info: pd.DataFrame, table: pd.DataFrame,
                   means: pd.DataFrame, output_dir: str) -> list[Block]:
    """Figure 1, per-task bars and heat-map for every model, as report blocks."""
    blocks = [Block("h2", "Figures")]
    for model in sorted({p.model for p in pairs}):
        model_pairs = [p for p in pairs if p.model == model]
        model_means = means[means["model"] == model]
        fig1 = plots.figure1(model_pairs, info, table, plots.figure_stem(output_dir, "figure1", model))
        fig1_corrected = plots.figure1(model_pairs, info, table, plots.figure_stem(
            output_dir, f"figure1_{chance.HEADLINE}", model), scores=chance.HEADLINE)
        bars = plots.task_bars(model_means, info, plots.figure_stem(output_dir, "task_bars", model))
        heat = plots.heatmap(model_means, plots.figure_stem(output_dir, "heatmap", model))
        blocks += [Block("h3", model),
                   Block("figure", fig1[0], f"{model}: per-task tuned (seed mean ± sd) vs base "
                         "scores; colour = cluster, filled = seen in tuning, open triangle = "
                         "held-out; ρ and p over all tasks."),
                   Block("figure", fig1_corrected[0], f"{model}: the same on "
                         f"{chance.LABELS[chance.HEADLINE]} scores (100 · (score − chance) / (100 − "
                         "chance); dotted lines = chance; tasks without a chance rate at their raw "
                         "score); ρ and p on these scores."),
                   Block("figure", bars[0], f"{model}: per-task scores of every setting (seed "
                         "mean ± sd); black tick = chance rate."),
                   Block("figure", heat[0], f"{model}: Spearman ρ between the per-task scores of "
                         "every pair of settings.")]
        logging.info("figures for %s written", model)
    return blocks


def _write_per_task(means: pd.DataFrame, info: pd.DataFrame, tuned_settings: Sequence[str],
                    output_dir: str) -> list[Block]:
    """per_task.{csv,md,tex} and its report block."""
    full, display = per_task_table(means, info, tuned_settings)
    write_table(full, output_dir, "per_task", "Per-task scores (seed mean ± sd)", display)
    return [Block("h2", "Per-task scores"),
            Block("table", display, "Seed mean ± sd; chance = 100 / number of options; (norm.) = "
                  "the seed mean normalised, 100 · (score − chance) / (100 − chance), which is the "
                  "raw score for a task without a chance rate (chance –). Scores above chance are in "
                  "per_task.csv.")]


def _write_claims(paired: pd.DataFrame, checks: pd.DataFrame, caps: pd.DataFrame,
                  info: pd.DataFrame, output_dir: str) -> list[Block]:
    """paired_tests.*, chance_checks.csv, new_capabilities.* and their report blocks."""
    blocks = [Block("h2", "H2: per-task paired comparison (tuned vs base, same items)")]
    if paired.empty:
        blocks.append(Block("p", "No predictions files pair up, so no paired test was run "
                                 "(needs predictions/<setting>/<task>.jsonl of both settings)."))
    else:
        write_table(paired, output_dir, "paired_tests", "Per-task paired comparison",
                    paired_display(paired))
        significant = paired[paired["verdict"] != "no significant difference"]
        blocks += [Block("table", verdict_counts(paired), "Number of tasks per verdict."),
                   Block("table", paired_display(significant),
                         "Tasks with a significant difference (all tasks in paired_tests.csv). "
                         "acc = share of items whose prediction is 'correct' (for generative tasks "
                         "the evaluator's per-item correctness, not the task metric).")]
    blocks.append(Block("h2", "H3: new capabilities (tuned solves, every base setting at chance)"))
    if not checks.empty:
        atomic_write_text(os.path.join(output_dir, "chance_checks.csv"), checks.to_csv(index=False))
    display = capabilities_display(caps) if not caps.empty else pd.DataFrame(
        columns=["model", "adapter", "tuned_setting", "task", "cluster", "seen", "chance", "tuned"])
    write_table(caps if not caps.empty else display, output_dir, "new_capabilities",
                "Tasks solved only after tuning", display)
    if caps.empty:
        blocks.append(Block("p", f"None: of {len(checks)} checked (tuned setting, task) pairs, no "
                                 "task is solved by a tuned setting while every base setting is at "
                                 "chance."))
    else:
        blocks.append(Block("table", display, f"{len(caps)} of {len(checks)} checked (tuned "
                                              "setting, task) pairs."))
    missing = claims.describe_missing_chance(info)
    if missing:
        blocks.append(Block("p", missing))
    return blocks
