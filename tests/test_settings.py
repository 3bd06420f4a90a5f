"""The settings registry is the one source of each setting's role: the evaluator writes it into
scores.csv, the analysis reads it back (or falls back to the registry for older files)."""
from __future__ import annotations

import pandas as pd
import pytest

from analysis import load, pairs
from configs.experiments import paper_bigbench
from t5x_like import settings
from t5x_like.evaluation import store
from t5x_like.evaluation.records import TaskInfo
from t5x_like.evaluation.task_scores import score_row
from t5x_like.experiment import parse_list

TASK = TaskInfo("rte", "accuracy", "nli", "NLU")
RECORD = {"options": ["yes", "no"], "references": ["yes"], "label": "yes", "matched_option": "yes", "answer": "yes",
          "mode": "generate"}


def evaluator_row(setting: settings.Setting, adapter: str = "", seed: int = 42, value_shift: float = 0.0):
    """A (setting, task) score row exactly as the evaluator builds it."""
    row = score_row(setting, TASK, [RECORD], model="m", adapter=adapter, seed=seed, setup="default",
                    mode="generate", faithful=True)
    row.row["value"] += value_shift
    return row


@pytest.mark.parametrize("name", sorted(settings.SETTINGS))
def test_every_setting_round_trips_through_the_evaluator_and_the_analysis(tmp_path, name):
    setting = settings.get_setting(name)
    store.write_scores(str(tmp_path), [evaluator_row(setting)])
    frame = load.read_scores(str(tmp_path / "scores.csv"))
    assert frame[["setting", "role", "main_setting"]].values.tolist() == [[name, setting.role, setting.main]]
    assert bool(pairs.tuned_mask(frame).iloc[0]) == (setting.role == "tuned")
    assert bool(pairs.base_mask(frame).iloc[0]) == (setting.role == "base")
    # A file written before the role column existed: the analysis asks the registry.
    old = pd.read_csv(tmp_path / "scores.csv", dtype=str).drop(columns=["role", "main_setting"])
    old.to_csv(tmp_path / "scores.csv", index=False)
    again = load.read_scores(str(tmp_path / "scores.csv"))
    assert again[["role", "main_setting"]].values.tolist() == [[setting.role, setting.main]]


def test_roles_follow_who_answers():
    assert settings.get_setting("flan_adv").role == settings.get_setting("samplegen_bad_prompt_3").role == "tuned"
    assert settings.get_setting("flan_bad_prompt_1").main == "flan_d"
    assert settings.get_setting("samplegen_pipeline_adv").role == "base"
    assert settings.get_setting("samplegen_pipeline_adv").run_model == "samplegen"  # it needs that run's outputs
    assert settings.get_setting("base_d_bad_prompt_6").main == "base_d"
    assert settings.trained_model("samplegen_unified") == "samplegen" and settings.trained_model("base_d") is None


def test_a_setting_unknown_to_the_registry_without_a_role_column_is_one_clear_error(tmp_path):
    (tmp_path / "scores.csv").write_text("model,adapter,seed,setting,task,cluster,category,seen,metric,value,n\n"
                                         "m,,1,my_setting,rte,nli,NLU,False,accuracy,50,10\n")
    with pytest.raises(load.ResultsError, match="setting 'my_setting' has no role column"):
        load.read_scores(str(tmp_path / "scores.csv"))


@pytest.mark.parametrize("with_role_columns", [True, False])
def test_bigbench_variants_are_tuned_groups_and_never_base_partners(tmp_path, with_role_columns):
    """The settings configs/experiments/paper_bigbench.py evaluates, laid out as the experiment writes
    them (eval/base: the base model; eval/<format>_seed<s>: a tuned model's settings, its adapter)."""
    names = parse_list(paper_bigbench.get_config().eval.settings)
    runs = {"base": ("", [n for n in names if settings.get_setting(n).run_model == "base"])}
    for model in ("flan", "samplegen"):
        for seed in (42, 1234):
            adapter = f"/w/train/{model}_seed{seed}/export/model"
            runs[f"{model}_seed{seed}"] = (adapter, [n for n in names if settings.get_setting(n).run_model == model])
    dirs = []
    for run, (adapter, chosen) in runs.items():
        seed = int(run.rsplit("seed", 1)[1]) if "seed" in run else 42
        rows = [evaluator_row(settings.get_setting(n), adapter if settings.get_setting(n).role == "tuned" else "",
                              seed, value_shift=i) for i, n in enumerate(chosen)]
        store.write_scores(str(tmp_path / run), rows)
        if not with_role_columns:
            path = tmp_path / run / "scores.csv"
            pd.read_csv(path, dtype=str).drop(columns=["role", "main_setting"]).to_csv(path, index=False)
        dirs.append(str(tmp_path / run))
    scores = load.union_scores([load.read_scores(f"{d}/scores.csv") for d in dirs])
    built = pairs.build_pairs(scores)
    tuned_groups = {p.tuned_setting for p in built}
    partners = {p.base_setting for p in built}
    expected_tuned = {n for n in names if settings.get_setting(n).role == "tuned"}
    assert {"flan_adv", "samplegen_adv", "flan_bad_prompt_1", "samplegen_bad_prompt_6"} <= expected_tuned
    assert tuned_groups == expected_tuned
    assert partners == {n for n in names if settings.get_setting(n).role == "base"}
    assert not partners & expected_tuned
