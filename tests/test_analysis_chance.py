"""Chance-corrected correlations end to end: differing chance rates must not fake a correlation,
and a real tuned/base relation must survive the correction (values against scipy / statsmodels)."""
import os

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from analysis import chance, report
from tests.test_analysis_stats import residualised_partial

OPTIONS = (2, 3, 4, 5, 6) * 4        # 20 multiple-choice tasks, chance 50% .. 16.7%
GENERATIVE = ("gen_a", "gen_b")      # tasks without options (metric bleu)
N_ITEMS = 400
SEEDS = ("1", "2", "3")


def _task_names() -> list[str]:
    return [f"mc{i}_{k}opt" for i, k in enumerate(OPTIONS)]


def _write_table(root, skills: dict[str, np.ndarray], seed: int, generative: bool = False) -> str:
    """scores.csv of flan_d (3 seeds) and gold_pipeline / base_d (unseeded). A setting with skill s on
    a task of chance c answers each item correctly with probability c + (1 - c) * s; the value is
    the accuracy over N_ITEMS binomial items. Generative tasks score 40 * skill + noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for setting, seeds in (("flan_d", SEEDS), ("gold_pipeline", ("",)), ("base_d", ("",))):
        for run_seed in seeds:
            for i, (task, options) in enumerate(zip(_task_names(), OPTIONS)):
                p = 1 / options + (1 - 1 / options) * skills[setting][i]
                rows.append(dict(model="m", adapter="a" if setting == "flan_d" else "", seed=run_seed,
                                 setting=setting, task=task, cluster=f"c{options}", category="NLU",
                                 seen=False, metric="accuracy", n=N_ITEMS, num_options=options,
                                 value=100 * rng.binomial(N_ITEMS, p) / N_ITEMS))
            for j, task in enumerate(GENERATIVE if generative else ()):
                rows.append(dict(rows[-1], task=task, cluster="gen", category="NLG", metric="bleu",
                                 num_options=0, value=40 * skills[setting][j] + rng.normal(0, 1)))
    os.makedirs(root, exist_ok=True)
    pd.DataFrame(rows).to_csv(os.path.join(root, "scores.csv"), index=False)
    return str(root)


def _analyse(tmp_path, skills, seed, generative=False):
    results = _write_table(tmp_path / "results", skills, seed, generative)
    out = tmp_path / "out"
    table = report.run_analysis([results], str(out), ["all"], n_bootstrap=1000)
    return table.set_index(["base_setting", "scores"]), out


def _uniform(values: dict[str, float]) -> dict[str, np.ndarray]:
    return {setting: np.full(len(OPTIONS), s) for setting, s in values.items()}


def test_every_setting_at_chance_gives_a_raw_correlation_that_the_corrections_remove(tmp_path):
    """Under this null each corrected CI covers 0 with probability ~0.95 (all 12 together: 15 of the
    seeds 0-19); the table is seeded, so the test is deterministic."""
    table, out = _analyse(tmp_path, _uniform({"flan_d": 0.0, "gold_pipeline": 0.0, "base_d": 0.0}), seed=0)
    for base in ("gold_pipeline", "base_d"):
        raw = table.loc[(base, "raw")]
        assert raw.spearman > 0.8 and raw.spearman_ci_low > 0.5 and raw.spearman_p < 1e-4
        for scores in ("above_chance", "normalised", "partial"):
            row = table.loc[(base, scores)]
            for method in ("spearman", "pearson"):
                assert abs(row[method]) < 0.4, (base, scores, method)
                assert row[f"{method}_ci_low"] < 0 < row[f"{method}_ci_high"], (base, scores, method)
                assert row[f"{method}_p"] > 0.05
    assert set(pd.read_csv(out / "correlations.csv")["scores"]) == set(chance.SCORES)
    md = (out / "report.md").read_text()
    assert "does not for flan_d vs gold_pipeline, flan_d vs base_d" in md
    side_by_side = [line for line in md.splitlines() if line.startswith("| m | flan_d | ") and "p = " in line]
    assert len(side_by_side) == 2 and all(line.endswith("| no |") for line in side_by_side)


def test_a_uniform_skill_still_fakes_a_correlation_above_chance_but_not_normalised(tmp_path):
    """Why the headline is 'normalised': points above chance keep the ceiling 100 - chance."""
    table, _ = _analyse(tmp_path, _uniform({"flan_d": 0.5, "gold_pipeline": 0.3, "base_d": 0.3}), seed=1)
    assert table.loc[("gold_pipeline", "above_chance"), "spearman"] > 0.8
    normalised = table.loc[("gold_pipeline", "normalised")]
    assert normalised.spearman_ci_low < 0 < normalised.spearman_ci_high


def _seed_means(results_dir):
    scores = pd.read_csv(os.path.join(results_dir, "scores.csv"), keep_default_na=False)
    means = scores.groupby(["setting", "task"])["value"].mean().unstack("setting")
    options = scores.groupby("task")["num_options"].first()
    return scores, means, options


def test_a_real_relation_survives_and_every_variant_equals_scipy(tmp_path):
    skill = np.random.default_rng(7).uniform(0.05, 0.8, len(OPTIONS))
    skills = {"flan_d": 0.9 * skill, "gold_pipeline": 0.7 * skill, "base_d": 0.1 * skill}
    table, out = _analyse(tmp_path, skills, seed=2, generative=True)
    scores, means, options = _seed_means(tmp_path / "results")
    rated = options[options > 0].index
    chance_rate = (100 / options.where(options > 0)).fillna(0.0)  # generative: chance 0 = raw score
    for base in ("gold_pipeline", "base_d"):
        x, y = means["flan_d"], means[base]
        variants = {"raw": (x, y), "above_chance": (x - chance_rate, y - chance_rate),
                    "normalised": (100 * (x - chance_rate) / (100 - chance_rate),
                                   100 * (y - chance_rate) / (100 - chance_rate))}
        for scores_name, (a, b) in variants.items():
            row = table.loc[(base, scores_name)]
            assert row.n == 22 and row.n_no_chance == 2
            assert row.spearman == pytest.approx(sps.spearmanr(a, b).statistic, abs=1e-12)
            assert row.spearman_p == pytest.approx(sps.spearmanr(a, b).pvalue, rel=1e-9)
            assert row.pearson == pytest.approx(sps.pearsonr(a, b).statistic, abs=1e-12)
            assert row.kendall_p == pytest.approx(sps.kendalltau(a, b).pvalue, rel=1e-9)
        partial = table.loc[(base, "partial")]
        assert partial.n == 20 and "2 task(s) without a chance rate left out" in partial.note
        z = 100 / options[rated]
        r, p = residualised_partial(x[rated].to_numpy(), y[rated].to_numpy(), z.to_numpy())
        assert partial.pearson == pytest.approx(r, abs=1e-12) and partial.pearson_p == pytest.approx(p, rel=1e-9)
        ranks = [sps.rankdata(v) for v in (x[rated], y[rated], z)]
        r, p = residualised_partial(*ranks)
        assert partial.spearman == pytest.approx(r, abs=1e-12) and partial.spearman_p == pytest.approx(p, rel=1e-9)
        assert np.isnan(partial.kendall) and partial.p_method == "t, 17 df"
        per_seed = [residualised_partial(scores[(scores.setting == "flan_d") & (scores.seed == s)]
                                         .set_index("task")["value"][rated].to_numpy(), y[rated].to_numpy(),
                                         z.to_numpy())[0] for s in SEEDS]
        assert partial.pearson_seed_mean == pytest.approx(np.mean(per_seed), abs=1e-12)
    gold = table.loc[("gold_pipeline", chance.HEADLINE)]
    assert gold.spearman > 0.8 and gold.spearman_ci_low > 0.4
    assert table.loc[("gold_pipeline", "partial")].spearman_ci_low > 0.4
    md = (out / "report.md").read_text()
    assert "the correlation survives the chance correction" in md and "for flan_d vs gold_pipeline" in md


def test_per_task_table_has_scores_relative_to_chance(tmp_path):
    skill = np.random.default_rng(3).uniform(0.05, 0.8, len(OPTIONS))
    _, out = _analyse(tmp_path, {"flan_d": skill, "gold_pipeline": skill, "base_d": skill}, seed=3,
                      generative=True)
    _, means, options = _seed_means(tmp_path / "results")
    per_task = pd.read_csv(out / "per_task.csv").set_index("task")
    for task in _task_names():
        c = 100 / options[task]
        assert per_task.loc[task, "flan_d_above_chance"] == pytest.approx(means.loc[task, "flan_d"] - c)
        assert per_task.loc[task, "gold_pipeline_normalised"] == pytest.approx(
            100 * (means.loc[task, "gold_pipeline"] - c) / (100 - c))
        assert per_task.loc[task, "has_chance"]
    for task in GENERATIVE:  # no options: marked, and the corrected columns keep the raw score
        assert not per_task.loc[task, "has_chance"]
        assert per_task.loc[task, "flan_d_normalised"] == per_task.loc[task, "flan_d_mean"]
    assert "flan_d (norm.)" in (out / "per_task.md").read_text()
