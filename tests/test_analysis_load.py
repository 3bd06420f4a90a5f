"""analysis.load (contract validation, union of dirs, predictions) and analysis.pairs (pairing)."""
import json
import os
import pathlib

import numpy as np
import pandas as pd
import pytest

from analysis import load, pairs

COLUMNS = ["model", "adapter", "seed", "setting", "task", "cluster", "category", "seen", "metric",
           "value", "n"]


def _row(setting, task, value, adapter="", seed="", seen=False, cluster="nli", model="m"):
    return {"model": model, "adapter": adapter, "seed": seed, "setting": setting, "task": task,
            "cluster": cluster, "category": "NLU", "seen": seen, "metric": "accuracy",
            "value": value, "n": 4}


def _write(directory, rows, columns=COLUMNS):
    os.makedirs(directory, exist_ok=True)
    pd.DataFrame(rows)[columns].to_csv(os.path.join(directory, "scores.csv"), index=False)
    return str(directory)


def _write_predictions(directory, setting, task, items):
    path = os.path.join(directory, "predictions", setting, task + ".jsonl")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.writelines(json.dumps(item) + "\n" for item in items)


def test_reads_and_normalises(tmp_path):
    d = _write(tmp_path / "r", [_row("flan_d", "qnli", 61.5, "flan", 42.0, True),
                                _row("base_d", "qnli", 50.0)])
    scores = load.load_results([d]).scores
    assert list(scores["seed"]) == ["42", ""]
    assert list(scores["adapter"]) == ["flan", ""]
    assert scores["seen"].tolist() == [True, False]
    assert scores["num_options"].isna().all()


def test_missing_column_names_file_and_column(tmp_path):
    d = _write(tmp_path / "r", [_row("base_d", "qnli", 50.0)], [c for c in COLUMNS if c != "seen"])
    with pytest.raises(load.ResultsError, match=r"scores.csv: missing column\(s\) \['seen'\]"):
        load.load_results([d])


def test_bad_values_are_reported_with_line(tmp_path):
    d = _write(tmp_path / "a", [_row("base_d", "qnli", "abc")])
    with pytest.raises(load.ResultsError, match=r"column 'value' must be numeric; bad values at line 2"):
        load.load_results([d])
    d = _write(tmp_path / "b", [_row("base_d", "qnli", 1.0) | {"seen": "maybe"}])
    with pytest.raises(load.ResultsError, match="'seen' must be a boolean"):
        load.load_results([d])
    with pytest.raises(load.ResultsError, match="scores.csv: file not found"):
        load.load_results([str(tmp_path)])


def test_union_drops_identical_rows_and_rejects_conflicts(tmp_path):
    shared = _row("base_d", "qnli", 50.0)
    a = _write(tmp_path / "a", [shared, _row("base_d", "snli", 40.0)])
    b = _write(tmp_path / "b", [shared, _row("gold_pipeline", "qnli", 70.0)])
    assert len(load.load_results([a, b]).scores) == 3
    c = _write(tmp_path / "c", [_row("base_d", "qnli", 51.0)])
    with pytest.raises(load.ResultsError, match=r"conflicting duplicate score rows .*setting='base_d'.*"
                                                r"task='qnli'.*a/scores.csv has value=50.0.*c/scores.csv"):
        load.load_results([a, c])


def test_predictions_attach_to_the_run_of_their_dir(tmp_path):
    d = _write(tmp_path / "r", [_row("flan_d", "wmt16/de-en", 50.0, "flan", 7, True)])
    _write_predictions(d, "flan_d", "wmt16/de-en",
                       [{"id": i, "correct": i % 2 == 0, "options": ["a", "b", "c", "d"]} for i in range(4)])
    results = load.load_results([d])
    predictions = results.predictions[("m", "flan", "7", "flan_d", "wmt16/de-en")]
    assert predictions.correct.tolist() == [True, False, True, False]
    assert predictions.correct.index.tolist() == ["0", "1", "2", "3"]
    assert predictions.chance == pytest.approx(25.0)
    assert pairs.task_info(results).loc["wmt16/de-en", "chance"] == pytest.approx(25.0)


def test_bad_predictions_are_rejected(tmp_path):
    d = _write(tmp_path / "r", [_row("base_d", "qnli", 50.0)])
    _write_predictions(d, "base_d", "qnli", [{"id": 1, "correct": True}, {"id": 1, "correct": False}])
    with pytest.raises(load.ResultsError, match="duplicate item id '1'"):
        load.load_results([d])
    _write_predictions(d, "base_d", "qnli", [{"id": 1, "correct": "yes"}])
    with pytest.raises(load.ResultsError, match="'correct' must be a boolean"):
        load.load_results([d])
    _write_predictions(d, "base_d", "qnli", [{"correct": True}])
    with pytest.raises(load.ResultsError, match="must be a JSON object with 'id' and 'correct'"):
        load.load_results([d])
    pathlib.Path(d, "predictions", "base_d", "qnli.jsonl").write_text('{"id": 1, "correct": true}\n\n{"id": 2,\n')
    with pytest.raises(load.ResultsError, match=r"qnli\.jsonl:3: malformed JSON line"):
        load.load_results([d])


def test_conflicting_task_cluster_raises(tmp_path):
    d = _write(tmp_path / "r", [_row("base_d", "qnli", 50.0), _row("gold_pipeline", "qnli", 60.0,
                                                                     cluster="misc")])
    with pytest.raises(load.ResultsError, match="task 'qnli' has several clusters"):
        pairs.task_info(load.load_results([d]))


def test_pairing_seed_means_and_base_adapter_rules(tmp_path):
    rows = []
    for task, base, gold in (("a", 10.0, 30.0), ("b", 20.0, 50.0), ("c", 30.0, 40.0)):
        rows += [_row("base_d", task, base), _row("gold_pipeline", task, gold)]
        for seed, shift in (("1", 0.0), ("2", 2.0)):
            rows.append(_row("flan_d", task, gold + 5 + shift, "flan", seed, task == "a"))
            rows.append(_row("samplegen_d", task, gold + shift, "sg", seed))
            rows.append(_row("samplegen_pipeline", task, base + shift, "sg", seed))
    scores = load.load_results([_write(tmp_path / "r", rows)]).scores
    built = {(p.tuned_setting, p.base_setting): p for p in pairs.build_pairs(scores)}
    assert set(built) == {(t, b) for t in ("flan_d", "samplegen_d")
                          for b in ("base_d", "gold_pipeline", "samplegen_pipeline")}
    flan_gold = built[("flan_d", "gold_pipeline")]
    np.testing.assert_allclose(flan_gold.tasks["tuned_mean"], [36.0, 56.0, 46.0])
    np.testing.assert_allclose(flan_gold.tasks["tuned_std"], [np.sqrt(2.0)] * 3)
    assert flan_gold.tasks["seen"].tolist() == [True, False, False]
    assert flan_gold.base_adapter == ""
    # samplegen_pipeline has only adapter 'sg' rows: they pair with flan too, seed by seed.
    flan_sgp = built[("flan_d", "samplegen_pipeline")]
    assert flan_sgp.base_adapter == "sg"
    np.testing.assert_allclose(flan_sgp.per_seed["2"]["base"], [12.0, 22.0, 32.0])
    np.testing.assert_allclose(flan_sgp.tasks["base_mean"], [11.0, 21.0, 31.0])
    # An unseeded base pairs with every seed.
    np.testing.assert_allclose(flan_gold.per_seed["1"]["base"], [30.0, 50.0, 40.0])


def test_setting_classification():
    frame = pd.DataFrame({"role": ["tuned", "tuned", "base", "tuned"],
                          "main_setting": ["flan_d", "samplegen_d", "samplegen_pipeline", "flan_d"]})
    assert pairs.tuned_mask(frame).tolist() == [True, True, False, True]
    assert pairs.tuned_mask(frame, ["samplegen_d"]).tolist() == [False, True, False, False]
    assert pairs.base_mask(frame).tolist() == [False, False, True, False]
    assert pairs.setting_order(["base_d", "x_variant", "flan_d", "gold_pipeline"]) == [
        "flan_d", "gold_pipeline", "base_d", "x_variant"]


def test_seed_is_stripped_from_adapter_names_and_short_labels():
    assert load.strip_seed("/w/train/flan_seed42/export/model", "42") == "/w/train/flan_seed{seed}/export/model"
    assert load.strip_seed("/w/142/a_42", "42") == "/w/142/a_{seed}"
    assert load.strip_seed("flan", "42") == "flan" and load.strip_seed("", "42") == ""
    labels = pairs.short_adapter_labels(["/w/train/flan_seed{seed}/export/model",
                                         "/w/train/samplegen_seed{seed}/export/model", ""])
    assert labels == {"/w/train/flan_seed{seed}/export/model": "flan_seed{seed}",
                      "/w/train/samplegen_seed{seed}/export/model": "samplegen_seed{seed}", "": ""}
