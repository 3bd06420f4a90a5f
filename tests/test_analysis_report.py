"""End to end: run_analysis and launch/analyze on a realistic synthetic results tree."""
import glob
import json
import os
import subprocess
import sys

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests

from analysis import chance, report
from tests import analysis_synthetic as synthetic

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REQUIRED = ["model", "tuned_setting", "base_setting", "subset", "n", "spearman", "spearman_p",
            "pearson", "pearson_p", "kendall", "kendall_p"]


@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory):
    return synthetic.write_results_tree(str(tmp_path_factory.mktemp("results")))


@pytest.fixture(scope="module")
def analysis(run_dirs, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("analysis"))
    table = report.run_analysis(run_dirs, out, ["all", "seen", "held_out", "nlu", "nlg", "clusters"],
                                min_cluster_tasks=3, n_bootstrap=200)
    return out, table


def _raw_scores(run_dirs):
    return pd.concat([pd.read_csv(os.path.join(d, "scores.csv"), dtype={"seed": str},
                                  keep_default_na=False) for d in run_dirs], ignore_index=True)


def test_correlations_csv_has_contract_columns_and_rows(analysis):
    out, table = analysis
    written = pd.read_csv(os.path.join(out, "correlations.csv"), keep_default_na=False)
    assert set(REQUIRED) <= set(written.columns)
    assert {"spearman_ci_low", "spearman_ci_high", "spearman_p_holm", "spearman_seed_mean",
            "spearman_seed_std"} <= set(written.columns)
    variants = written.groupby(["tuned_setting", "base_setting", "subset"])["scores"].apply(sorted)
    assert all(v == sorted(chance.SCORES) for v in variants)  # every score variant once per pair and subset
    all_rows = written[(written["subset"] == "all") & (written["scores"] == "raw")]
    assert len(all_rows) == 6 and set(all_rows["n"]) == {len(synthetic.TASKS)}
    assert set(all_rows["n_seeds"]) == {3}  # the seed inside the adapter path does not split groups
    assert {"seen", "held_out", "nlu", "nlg", "cluster:nli"} <= set(written["subset"])
    assert "cluster:misc" not in set(written["subset"])  # 2 tasks < min_cluster_tasks
    assert len(written) == len(table)


def test_correlations_equal_scipy_on_independently_computed_seed_means(analysis, run_dirs):
    _, table = analysis
    raw = _raw_scores(run_dirs)
    means = raw.groupby(["setting", "task"])["value"].mean().unstack("setting")
    for row in table[(table["subset"] == "all") & (table["scores"] == "raw")].itertuples():
        x, y = means[row.tuned_setting], means[row.base_setting]
        assert row.spearman == pytest.approx(sps.spearmanr(x, y).statistic, abs=1e-12)
        assert row.spearman_p == pytest.approx(sps.spearmanr(x, y).pvalue, rel=1e-9)
        assert row.pearson == pytest.approx(sps.pearsonr(x, y).statistic, abs=1e-12)
        assert row.kendall_p == pytest.approx(sps.kendalltau(x, y).pvalue, rel=1e-9)
        assert row.spearman_ci_low <= row.spearman <= row.spearman_ci_high
        per_seed = [sps.spearmanr(raw[(raw.setting == row.tuned_setting) & (raw.seed == str(s))]
                                  .set_index("task")["value"].loc[x.index], y).statistic
                    for s in synthetic.SEEDS if row.base_setting != "samplegen_pipeline"]
        if per_seed:
            assert row.spearman_seed_mean == pytest.approx(np.mean(per_seed), abs=1e-12)
            assert row.spearman_seed_std == pytest.approx(np.std(per_seed, ddof=1), abs=1e-12)
    per_seed = pd.read_csv(os.path.join(analysis[0], "correlations_per_seed.csv"), dtype={"seed": str},
                           keep_default_na=False, na_values={m: [""] for m in ("spearman", "pearson", "kendall")})
    row = table[(table.subset == "all") & (table.scores == "raw") & (table.tuned_setting == "flan_d") &
                (table.base_setting == "samplegen_pipeline")].iloc[0]
    seeds = per_seed[(per_seed.subset == "all") & (per_seed.scores == "raw") &
                     (per_seed.tuned_setting == "flan_d") & (per_seed.base_setting == "samplegen_pipeline")]
    assert sorted(seeds["seed"]) == sorted(str(s) for s in synthetic.SEEDS)
    for seed_row in seeds.itertuples():  # the base seed paired with the same tuned seed
        tuned = raw[(raw.setting == "flan_d") & (raw.seed == seed_row.seed)].set_index("task")["value"]
        base = raw[(raw.setting == "samplegen_pipeline") & (raw.seed == seed_row.seed)].set_index("task")["value"]
        assert seed_row.spearman == pytest.approx(sps.spearmanr(tuned, base.loc[tuned.index]).statistic)
    assert row.spearman_seed_mean == pytest.approx(seeds["spearman"].mean())
    assert row.spearman_seed_std == pytest.approx(seeds["spearman"].std(ddof=1))
    for scores in chance.SCORES:  # Holm within each score variant
        defined = table["spearman_p"].notna() & (table["scores"] == scores)
        np.testing.assert_allclose(table.loc[defined, "spearman_p_holm"],
                                   multipletests(table.loc[defined, "spearman_p"], method="holm")[1])


def test_paired_mcnemar_equals_statsmodels_on_raw_predictions(analysis, run_dirs):
    out, _ = analysis
    paired = pd.read_csv(os.path.join(out, "paired_tests.csv"))
    row = paired[(paired.tuned_setting == "flan_d") & (paired.base_setting == "gold_pipeline") &
                 (paired.task == "trec")].iloc[0]

    def correct(run, setting):
        with open(os.path.join(run, "predictions", setting, "trec.jsonl")) as f:
            return np.array([json.loads(line)["correct"] for line in f])
    base = correct(run_dirs[0], "gold_pipeline")
    p_values = []
    for run in [d for d in run_dirs if "flan_seed" in d]:
        tuned = correct(run, "flan_d")
        table = [[np.sum(tuned & base), np.sum(tuned & ~base)], [np.sum(~tuned & base), np.sum(~tuned & ~base)]]
        p_values.append(mcnemar(table, exact=True).pvalue)
    assert row.mcnemar_p_max == pytest.approx(max(p_values), rel=1e-9)
    assert row.verdict == "tuned > base"


def test_new_capabilities_table_lists_the_tuned_only_task(analysis):
    out, _ = analysis
    caps = pd.read_csv(os.path.join(out, "new_capabilities.csv"))
    assert set(caps["task"]) == {"trec"}
    assert caps["chance"].iloc[0] == pytest.approx(100 / 6)
    assert set(caps["tuned_setting"]) == {"flan_d", "samplegen_d"}


def test_report_contains_tables_and_embedded_figures(analysis):
    out, _ = analysis
    md = open(os.path.join(out, "report.md"), encoding="utf-8").read()
    page = open(os.path.join(out, "report.html"), encoding="utf-8").read()
    for text in ("What is tested", "H1: correlation across tasks", "ρ [95% CI]", "Per-task scores",
                 "H2: per-task paired comparison", "H3: new capabilities", "Caveats", "trec"):
        assert text in md and text in page
    for link in [line.split("](")[1].rstrip(")") for line in md.splitlines() if line.startswith("![")]:
        assert os.path.isfile(os.path.join(out, link))
    assert page.count("src='data:image/png;base64,") == 4 and "<img src='figures" not in page
    for stem in ("figure1", f"figure1_{chance.HEADLINE}", "task_bars", "heatmap"):
        png = matplotlib.image.imread(os.path.join(out, "figures", f"{stem}_{synthetic.MODEL}.png"))
        assert png.shape[0] > 400 and png.shape[1] > 400 and png[..., :3].std() > 0.05
        assert os.path.getsize(os.path.join(out, "figures", f"{stem}_{synthetic.MODEL}.pdf")) > 1000
    for name in ("correlations", "per_task", "paired_tests", "new_capabilities"):
        assert all(os.path.isfile(os.path.join(out, f"{name}.{ext}")) for ext in ("csv", "md", "tex"))
    assert not glob.glob(os.path.join(out, "**", ".tmp-*"), recursive=True)


def test_monotone_scores_give_rho_one_and_constant_base_is_undefined(tmp_path):
    rows = []
    for i, task in enumerate(f"t{k}" for k in range(10)):
        base = 5.0 + 9 * i
        rows.append(dict(model="m", adapter="", seed="", setting="gold_pipeline", task=task,
                         cluster="c", category="NLU", seen=False, metric="accuracy", value=base, n=100))
        rows.append(dict(rows[-1], setting="base_d", value=0.0))
        for seed in (1, 2, 3):
            rows.append(dict(rows[-1], adapter="a", seed=seed, setting="flan_d",
                             value=100 * (base / 100) ** 0.3 + 0.01 * seed))
    os.makedirs(tmp_path / "r")
    pd.DataFrame(rows).to_csv(tmp_path / "r" / "scores.csv", index=False)
    table = report.run_analysis([str(tmp_path / "r")], str(tmp_path / "out"), ["all"], n_bootstrap=50)
    gold = table[table.base_setting == "gold_pipeline"].iloc[0]
    assert gold.spearman == pytest.approx(1.0) and gold.kendall == pytest.approx(1.0)
    assert gold.spearman_seed_mean == pytest.approx(1.0) and gold.spearman_seed_std == pytest.approx(0.0)
    constant = table[table.base_setting == "base_d"].iloc[0]
    assert np.isnan(constant.spearman) and np.isnan(constant.spearman_p_holm)
    assert "base_d scores are constant" in constant.note
    assert "No predictions files pair up" in open(tmp_path / "out" / "report.md").read()


def test_unknown_subset_fails_before_reading(tmp_path):
    with pytest.raises(ValueError, match="unknown subset 'nlx'"):
        report.run_analysis([str(tmp_path / "missing")], str(tmp_path / "out"), ["all", "nlx"])


def test_cli_prints_main_table(run_dirs, tmp_path):
    out = tmp_path / "cli"
    flan_only = [d for d in run_dirs if "samplegen" not in d]  # base + FLAN seeds: a smaller run
    proc = subprocess.run([sys.executable, "-m", "launch.analyze", f"--results={','.join(flan_only)}",
                           f"--output_dir={out}", "--subset=all", "--n_bootstrap=50"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"| llama2-7b | flan_d | gold_pipeline | all | {chance.HEADLINE} | 14 |" in proc.stdout
    assert f"| llama2-7b | flan_d | base_d | all | {chance.HEADLINE} | 14 |" in proc.stdout
    assert "| ρ raw [95% CI] | ρ above chance [95% CI] | ρ normalised [95% CI] |" in proc.stdout
    assert (out / "correlations.csv").is_file() and (out / "report.html").is_file()


def test_analysis_imports_no_model_code():
    # stdlib-only file helpers and errors shared with every stage, and the settings registry with the
    # format definitions it reads (JAX-free)
    allowed = ("t5x_like", "t5x_like.io_utils", "t5x_like.errors", "t5x_like.settings", "t5x_like.data",
               "t5x_like.data.format_specs", "t5x_like.data.formats", "t5x_like.data.examples")
    code = ("import sys, analysis.report, launch.analyze; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('jax', 'flax', 'torch') "
            f"or (m.startswith('t5x_like') and m not in {allowed!r})]; "
            "assert not bad, bad")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_several_models_adapters_and_variant_settings(tmp_path):
    rng = np.random.default_rng(5)
    rows = []
    for model in ("llama2-7b", "mistral-7b"):
        skill = rng.uniform(0, 1, 8)
        for setting, adapter, seeds, strength in (("gold_pipeline", "", ("42",), 0.7),
                                                   ("gold_pipeline_unified", "", ("42",), 0.6),
                                                   ("flan_d", "/w/train/flan_seed{}/export", ("1", "2"), 0.9),
                                                   ("flan_d", "/w/train/flan_setup3_seed{}/export", ("1", "2"), 0.8)):
            for seed in seeds:
                for k in range(8):
                    rows.append(dict(model=model, adapter=adapter.format(seed), seed=seed, setting=setting,
                                     task=f"task{k}", cluster=f"c{k % 2}", category="NLU",
                                     seen=k < 3, metric="accuracy", n=100, num_options=2,
                                     value=100 * strength * skill[k] + rng.normal(0, 1)))
    os.makedirs(tmp_path / "r")
    pd.DataFrame(rows).to_csv(tmp_path / "r" / "scores.csv", index=False)
    out = tmp_path / "out"
    table = report.run_analysis([str(tmp_path / "r" / "scores.csv")], str(out), ["all", "seen"],
                                n_bootstrap=50)
    assert len(table) == 2 * 2 * 2 * 2 * len(chance.SCORES)  # models x adapters x base settings x subsets x scores
    assert set(table["base_setting"]) == {"gold_pipeline", "gold_pipeline_unified"}
    assert set(table["n_seeds"]) == {2}
    markdown = (out / "correlations.md").read_text()
    assert "| llama2-7b | flan_setup3_seed{seed} | flan_d | gold_pipeline_unified | all | raw | 8 |" in markdown
    for model in ("llama2-7b", "mistral-7b"):
        assert (out / "figures" / f"figure1_{model}.png").is_file()
