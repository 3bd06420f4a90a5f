"""Sweep expansion (t5x_like/sweep.py, launch/sweep.py): deterministic, unique, overrides applied, runnable."""
import json
import os
import subprocess
import sys

import pytest

from t5x_like import sweep
from t5x_like.experiment import parse_list

ROOT = sweep.ROOT


def paper_sweep(arg: str = "", *overrides: str):
    """configs/sweeps/paper.py[:arg] as launch.sweep loads it, with extra run overrides."""
    s = sweep.load_config("configs/sweeps/paper.py" + (f":{arg}" if arg else ""))
    s.overrides = tuple(overrides)
    return s


def test_paper_grid_expands_to_unique_deterministic_runs(tmp_path):
    s = paper_sweep()
    runs = sweep.expand(s, str(tmp_path))
    assert len(runs) == 3 * 8 * 3
    assert len({r.name for r in runs}) == len(runs) and len({r.workdir for r in runs}) == len(runs)
    assert [r.index for r in runs] == list(range(len(runs)))
    assert sweep.expand(paper_sweep(), str(tmp_path)) == runs
    a = sweep.manifest(s, "configs/sweeps/paper.py", str(tmp_path), runs)
    b = sweep.manifest(paper_sweep(), "configs/sweeps/paper.py", str(tmp_path), sweep.expand(paper_sweep(), str(tmp_path)))
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    assert runs[0].name == "llama2_7b-default-seed42" and runs[-1].name == "mistral_7b-setup7-seed10203"
    assert {g: len(rs) for g, rs in sweep.analysis_groups(runs).items()} == {
        setup: 9 for setup in ["default"] + [f"setup{k}" for k in range(1, 8)]}


def test_overrides_reach_each_runs_config(tmp_path):
    runs = sweep.expand(paper_sweep("main", "model.path=/models/{model}", "data.data_dir=/data/{setup}"),
                        str(tmp_path))
    assert len(runs) == 9
    for run in runs:
        config = sweep.load_config(run.config, run.overrides)
        assert config.model.name == run.model
        assert config.model.path == f"/models/{run.model}"
        assert config.data.data_dir == "/data/default" and config.data.mixture == run.setup
        assert config.tuning.seeds == str(run.seeds[0])
        assert f"--config.model.path=/models/{run.model}" in run.command
        assert run.command[:3] == ("python", "-m", "launch.run_experiment")
        assert f"--workdir={run.workdir}" in run.command


def test_base_settings_run_once_per_model_and_setup(tmp_path):
    runs = sweep.expand(paper_sweep("main"), str(tmp_path))
    for model in ("llama2_7b", "llama2_13b", "mistral_7b"):
        mine = [r for r in runs if r.model == model]
        settings = [parse_list(sweep.load_config(r.config, r.overrides).eval.settings) for r in mine]
        base_counts = {s: sum(s in run_settings for run_settings in settings) for s in ("base_d", "gold_pipeline")}
        assert base_counts == {"base_d": 1, "gold_pipeline": 1}
        for run_settings in settings:  # every seed evaluates its own tuned models and pipeline
            assert {"flan_d", "samplegen_d", "samplegen_pipeline"} <= set(run_settings)


def test_seeds_together_when_not_split(tmp_path):
    s = paper_sweep("main")
    s.split_seeds = False
    runs = sweep.expand(s, str(tmp_path))
    assert [r.name for r in runs] == ["llama2_7b-default", "llama2_13b-default", "mistral_7b-default"]
    assert all(r.seeds == (42, 1234, 10203) for r in runs)
    assert sweep.load_config(runs[0].config, runs[0].overrides).eval.settings.startswith("base_d,gold_pipeline")


def test_bad_sweeps_are_refused(tmp_path):
    s = paper_sweep()
    s.config = "configs/experiments/paper_llama2_7b.py"
    with pytest.raises(sweep.SweepError, match="has no {model}"):
        sweep.expand(s, str(tmp_path))
    s = paper_sweep("main", "train.no_such_key=1")
    with pytest.raises(sweep.SweepError, match="no_such_key"):
        sweep.expand(s, str(tmp_path))
    with pytest.raises(sweep.SweepError, match="runs 0..8"):
        sweep.select(sweep.expand(paper_sweep("main"), str(tmp_path)), 9)


def test_manifest_is_kept_for_the_same_sweep_and_refused_for_another(tmp_path):
    out = str(tmp_path)
    runs = sweep.expand(paper_sweep("main"), out)
    path = sweep.write_manifest(out, sweep.manifest(paper_sweep("main"), "configs/sweeps/paper.py:main", out, runs))
    sweep.write_manifest(out, sweep.manifest(paper_sweep("main"), "configs/sweeps/paper.py:main", out, runs))
    written = json.load(open(path))
    assert [r["command_line"] for r in written["runs"]] == [r.command_line for r in runs]
    other = sweep.expand(paper_sweep(), out)
    with pytest.raises(sweep.SweepError, match="different sweep"):
        sweep.write_manifest(out, sweep.manifest(paper_sweep(), "configs/sweeps/paper.py", out, other))


def test_analysis_unions_the_results_of_a_setup(tmp_path):
    runs = sweep.expand(paper_sweep("main"), str(tmp_path))
    for run, names in ((runs[0], ("base", "flan_seed42")), (runs[4], ("samplegen_seed1234",))):
        for name in names:
            os.makedirs(os.path.join(run.workdir, "eval", name))
            open(os.path.join(run.workdir, "eval", name, "scores.csv"), "w").write("model\n")
    os.makedirs(os.path.join(runs[1].workdir, "eval", "flan_seed1234"))  # unfinished: no scores.csv
    command, missing = sweep.analyze_command(paper_sweep("main"), runs, str(tmp_path / "analysis" / "default"))
    results = command[command.index("-m") + 2].removeprefix("--results=").split(",")
    assert results == [os.path.join(runs[0].workdir, "eval", "base"), os.path.join(runs[0].workdir, "eval", "flan_seed42"),
                       os.path.join(runs[4].workdir, "eval", "samplegen_seed1234")]
    assert missing == [r.name for i, r in enumerate(runs) if i not in (0, 4)]
    assert "--subset=all,seen,held_out,nlu,nlg,clusters" in command


@pytest.mark.slow
def test_listed_command_runs_through_the_real_cli(tmp_path):
    out = tmp_path / "sweep"
    listed = subprocess.run([sys.executable, "-m", "launch.sweep", "--sweep=configs/sweeps/paper.py:main",
                             f"--output_dir={out}", "--list"], cwd=ROOT, capture_output=True, text=True, check=True)
    assert listed.stdout.count("python -m launch.run_experiment") == 9
    manifest = json.load(open(out / "sweep.json"))
    assert manifest["sweep_config"].endswith("configs/sweeps/paper.py:main")
    dry = subprocess.run([sys.executable, "-m", "launch.sweep", "--sweep=configs/sweeps/paper.py:main",
                          f"--output_dir={out}", "--run_index=5", "--dry_run"], cwd=ROOT, capture_output=True,
                         text=True)
    assert dry.returncode == 0, dry.stderr[-2000:]
    assert "llama2_13b" in dry.stdout and "h100-8" in dry.stdout and "train/flan_seed10203" in dry.stdout
