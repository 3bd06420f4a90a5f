"""run_experiment: stage planning, workdir guards, markers, and the smoke experiment end to end."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from t5x_like import experiment, sweep
from tests.conftest import REPO

SMOKE = "configs/experiments/smoke.py"


def load(spec: str = SMOKE):
    """The config exactly as `--config=<spec>` parses it (unlocked copy)."""
    config = sweep.load_config(spec, ())
    config.unlock()
    return config


def test_plan_expands_tuned_stages_per_format_and_seed():
    config = load()
    config.tuning.formats = "flan,samplegen_unified"
    config.tuning.seeds = "1,2"
    names = [name for name, _ in experiment.stage_plan(config, list(experiment.STAGES))]
    assert names == ["prepare", "evaluate_base",
                     "train/flan_seed1", "train/flan_seed2", "train/samplegen_unified_seed1",
                     "train/samplegen_unified_seed2", "evaluate_tuned/flan_seed1", "evaluate_tuned/flan_seed2",
                     "evaluate_tuned/samplegen_unified_seed1", "evaluate_tuned/samplegen_unified_seed2", "analyze"]
    assert [run.kind for run in experiment.tuned_runs(config)] == ["flan", "flan", "samplegen", "samplegen"]


def test_bad_stage_and_format_names_fail_before_work():
    config = load()
    with pytest.raises(experiment.ExperimentError, match="unknown stage"):
        experiment.stage_plan(config, ["prepare", "evaluate"])
    config.tuning.formats = "flan,gold_pipeline"
    with pytest.raises(experiment.ExperimentError, match="unknown training format"):
        experiment.tuned_runs(config)


def test_workdir_of_another_config_is_refused(tmp_path):
    config = load()
    layout = experiment.Layout(str(tmp_path))
    (tmp_path / "config.json").write_text(config.to_json_best_effort(sort_keys=True))
    experiment.check_workdir(config, layout)  # the same config resumes
    config.data.num_test = 3
    with pytest.raises(experiment.ExperimentError, match=r"different config \(sections differ: \['data'\]\)"):
        experiment.check_workdir(config, layout)


def test_finished_stage_is_skipped_and_marker_written_last(tmp_path):
    layout = experiment.Layout(str(tmp_path))
    calls = []

    def failing():
        calls.append("fail")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        experiment.run_stage_once("prepare", layout, failing)
    assert not os.path.exists(layout.marker("prepare"))  # a failed stage never looks finished
    first = experiment.run_stage_once("prepare", layout, lambda: calls.append("ok") or {"n": 1})
    again = experiment.run_stage_once("prepare", layout, lambda: calls.append("again") or {"n": 2})
    assert calls == ["fail", "ok"] and not first["skipped"] and again["skipped"]
    assert again["outputs"] == {"n": 1}


def test_dry_run_names_hardware_memory_and_stages(tmp_path):
    text = experiment.dry_run(load(), str(tmp_path))
    assert "model tiny: 2 layers" in text and "hardware cpu-1" in text and "fits" in text
    assert text.count("would run") == 1 + 1 + 2 + 2 + 1


def _run(workdir, env) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "launch.run_experiment", f"--config={SMOKE}",
                             f"--workdir={workdir}"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _scores(workdir) -> list[dict]:
    rows = []
    for sub in sorted(n for n in os.listdir(os.path.join(workdir, "eval")) if not n.startswith(".")):  # .<run>.lock
        with open(os.path.join(workdir, "eval", sub, "scores.csv")) as f:
            rows += list(csv.DictReader(f))
    return sorted(rows, key=lambda r: (r["setting"], r["task"], r["adapter"]))


@pytest.mark.slow
def test_smoke_experiment_every_stage_and_kill_resume(tmp_path, data_dir):
    """The smoke config runs every stage; a run killed with SIGKILL and rerun ends with the same scores
    and every item exactly once."""
    env = {**os.environ, "T5X_LIKE_DATA_DIR": str(data_dir), "JAX_PLATFORMS": "cpu"}
    clean = tmp_path / "clean"
    proc = _run(clean, env)
    out, _ = proc.communicate(timeout=1500)
    assert proc.returncode == 0, out[-3000:]
    assert "Correlations across tasks" in out
    analysis = clean / "analysis"
    header = (analysis / "correlations.csv").read_text().splitlines()[0].split(",")
    assert {"model", "tuned_setting", "base_setting", "subset", "n", "spearman", "spearman_p", "pearson",
            "pearson_p", "kendall", "kendall_p"} <= set(header)
    assert (analysis / "report.html").stat().st_size > 10_000
    settings = {r["setting"] for r in _scores(clean)}
    assert settings == {"base_d", "gold_pipeline", "flan_d", "samplegen_d", "samplegen_pipeline"}

    killed = tmp_path / "killed"
    proc = _run(killed, env)
    deadline = time.time() + 1500
    while not (killed / "stages" / "train").exists() and time.time() < deadline:  # mid-way: training
        time.sleep(0.5)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc = _run(killed, env)
    out, _ = proc.communicate(timeout=1500)
    assert proc.returncode == 0, out[-3000:]
    summary = json.loads((killed / "summary.json").read_text())
    assert any(s["skipped"] for s in summary["stages"])  # finished stages were not redone
    # the adapter column names the run's own export path; everything else must be equal
    strip = lambda rows: [{k: v for k, v in r.items() if k != "adapter"} for r in rows]  # noqa: E731
    assert strip(_scores(killed)) == strip(_scores(clean))
    for path in (killed / "eval").rglob("predictions/*/*.jsonl"):
        ids = [json.loads(line)["id"] for line in path.read_text().splitlines()]
        assert len(ids) == len(set(ids)) == 8, path
