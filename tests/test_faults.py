"""Faults a user meets, each as the user meets it (the real CLIs in subprocesses): full and read-only
disks, config typos, a diverging run, badly encoded or malformed files, a missing data dir, leftovers of
killed writers, an empty mixture, two processes on one workdir, SIGTERM. Each must end in one line
naming the path or key, exit non-zero, leave no complete-looking partial output, and a rerun once the
fault is gone must give the uninterrupted result."""
from __future__ import annotations

import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import pytest

from eval_helpers import cli_args, prepare_data, save_tiny_model
from fault_helpers import REPO, assert_one_line_error, read_only_dir, run_cli, small_fs
from t5x_like import io_utils

SMOKE = f"--config={REPO / 'configs' / 'experiments' / 'smoke.py'}"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> pathlib.Path:
    return save_tiny_model(tmp_path_factory.mktemp("faults") / "model", seed=0)


@pytest.fixture(scope="module")
def requests_file(tmp_path_factory) -> pathlib.Path:
    path = tmp_path_factory.mktemp("requests") / "requests.jsonl"
    io_utils.atomic_write_jsonl(str(path), [{"id": i, "context": f"Question {i}: is the sky blue?",
                                             "continuation": " yes"} for i in range(200)])
    return path


def _score(model_dir, requests, output):
    return run_cli("launch.score", f"--model={model_dir}", f"--requests={requests}", f"--output={output}")


# ----------------------------------------------------------------------------- 1. disks


def test_score_refuses_a_read_only_output_dir_before_loading_the_model(tmp_path, model_dir, requests_file):
    with read_only_dir(tmp_path / "ro") as ro:
        proc = _score(model_dir, requests_file, ro / "out.jsonl")
        line = assert_one_line_error(proc, "score", str(ro), "not writable")
        assert "loaded" not in proc.stderr.lower(), line  # refused before any weight was read
        assert not (ro / "out.jsonl").exists()
    good = _score(model_dir, requests_file, tmp_path / "out.jsonl")
    assert good.returncode == 0, good.stderr[-2000:]
    assert len(io_utils.read_jsonl(str(tmp_path / "out.jsonl"))) == 200


def test_score_on_a_full_disk_is_refused_before_scoring(tmp_path, model_dir, requests_file):
    with small_fs(tmp_path / "full") as full:
        proc = _score(model_dir, requests_file, full / "out.jsonl")
        assert_one_line_error(proc, "score", str(full), "GiB free")
        assert [p.name for p in full.iterdir()] == ["filler"]


def test_prepare_data_on_a_full_disk_is_one_line_and_leaves_no_manifest(tmp_path, data_dir):
    args = ["--config=configs/data/offline.py", f"--config.data_dir={data_dir}", "--config.tasks=rte,copa",
            "--config.num_test=20"]
    with small_fs(tmp_path / "full", size="256k", fill=False) as full:
        (full / "filler").write_bytes(b"\0" * (200 * 1024))
        proc = run_cli("launch.prepare_data", *args, f"--output_dir={full / 'out'}")
        assert_one_line_error(proc, "prepare_data", "No space left on device")
        assert not (full / "out" / "manifest.json").exists()
    once, twice = tmp_path / "a", tmp_path / "b"
    for out in (once, twice):
        assert run_cli("launch.prepare_data", *args, f"--output_dir={out}").returncode == 0
    assert (once / "manifest.json").read_bytes() == (twice / "manifest.json").read_bytes()


def test_evaluate_on_a_full_disk_is_one_line(tmp_path, data_dir, model_dir):
    data = prepare_data(tmp_path / "data", data_dir, "rte", num_test=4, formats="base_d")
    with small_fs(tmp_path / "full", size="64k", fill=False) as full:
        (full / "filler").write_bytes(b"\0" * (56 * 1024))
        proc = subprocess.run(cli_args(data, model_dir, full / "run", settings="base_d", tasks="rte", mode="loglik"),
                              cwd=REPO, capture_output=True, text=True, timeout=600)
        assert_one_line_error(proc, "evaluate", "No space left on device")
        assert not (full / "run" / "scores.csv").exists()


def test_train_refuses_an_export_dir_without_space_before_training(tmp_path, data_dir):
    with small_fs(tmp_path / "full", size="64k") as full:
        proc = run_cli("launch.train", SMOKE, f"--workdir={tmp_path / 'run'}", f"--export_dir={full / 'export'}",
                       "--config.train.num_steps=2", f"--config.data.data_dir={data_dir}")
        assert_one_line_error(proc, "train", str(full), "GiB free", "writes about")
        assert not (tmp_path / "run" / "checkpoints").exists() or not any((tmp_path / "run" / "checkpoints").iterdir())


def _analyze(results: list[str], out: pathlib.Path) -> subprocess.CompletedProcess:
    return run_cli("launch.analyze", f"--results={','.join(results)}", f"--output_dir={out}", "--n_bootstrap=50",
                   "--subset=all")


def test_analyze_on_a_full_disk_leaves_nothing_that_looks_complete(tmp_path):
    from analysis_synthetic import write_results_tree

    results = write_results_tree(str(tmp_path / "results"))
    with small_fs(tmp_path / "full", size="256k", fill=False) as full:
        (full / "filler").write_bytes(b"\0" * (200 * 1024))  # room for a few tables, not the figures
        proc = _analyze(results, full / "analysis")
        assert_one_line_error(proc, "analyze", "No space left on device")
        assert sorted(p.name for p in full.iterdir()) == [".analysis.lock", "filler"]
    first, second = _analyze(results, tmp_path / "a"), _analyze(results, tmp_path / "a")  # second: replaces first
    assert first.returncode == 0 and second.returncode == 0, second.stderr[-2000:]
    assert (tmp_path / "a" / "correlations.csv").is_file() and (tmp_path / "a" / "report.md").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".a.") and p.name.endswith(".tmp")]


def test_analyze_refuses_to_replace_a_directory_that_is_not_an_analysis(tmp_path):
    from analysis_synthetic import write_results_tree

    results = write_results_tree(str(tmp_path / "results"))
    proc = _analyze(results, pathlib.Path(results[0]))
    assert_one_line_error(proc, "analyze", f"--output_dir={results[0]} is not empty and holds no earlier report.md")
    assert (pathlib.Path(results[0]) / "scores.csv").is_file()


def test_convert_on_a_full_disk_is_refused_before_writing(tmp_path):
    from test_gguf import DIMS, tiny_hf_weights, write_tiny_gguf

    source = write_tiny_gguf(tmp_path / "tiny.gguf", tiny_hf_weights(DIMS, tied=False), DIMS)
    with small_fs(tmp_path / "full", size="16k") as full:
        proc = run_cli("launch.convert", f"--gguf={source}", f"--output_dir={full / 'hf'}")
        assert_one_line_error(proc, "convert", f"output parent {full}", "GiB free")
        assert [p.name for p in full.iterdir()] == ["filler"]
    done = run_cli("launch.convert", f"--gguf={source}", f"--output_dir={tmp_path / 'hf'}")
    assert done.returncode == 0 and (tmp_path / "hf" / "model.safetensors").is_file(), done.stderr[-2000:]


# ----------------------------------------------------------------------------- 2. config typos


@pytest.mark.parametrize("module,program,config", [
    ("launch.prepare_data", "prepare_data", "--config=configs/data/default.py"),
    ("launch.train", "train", SMOKE),
    ("launch.evaluate", "evaluate", SMOKE),
    ("launch.run_experiment", "run_experiment", SMOKE),
])
def test_a_config_key_typo_is_one_line_naming_the_flag(tmp_path, module, program, config):
    args = [config, "--config.trian.num_steps=3"]
    args += [f"--output_dir={tmp_path / 'out'}"] if module == "launch.prepare_data" else [f"--workdir={tmp_path / 'w'}"]
    proc = run_cli(module, *args)
    line = assert_one_line_error(proc, program, "--config.trian.num_steps", "no config key 'trian'", code=2)
    if module != "launch.prepare_data":  # the experiment configs have a `train` section to suggest
        assert "train" in line.split("'trian'", 1)[1], line
    assert not (tmp_path / "out").exists() and not (tmp_path / "w").exists()


# ----------------------------------------------------------------------------- 3. divergence


def test_a_finite_blow_up_stops_training_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path, data_dir):
    run = tmp_path / "run"
    proc = run_cli("launch.train", SMOKE, f"--workdir={run}", f"--export_dir={tmp_path / 'export'}",
                   f"--config.data.data_dir={data_dir}",
                   "--config.train.learning_rate=1e8", "--config.train.num_steps=6",
                   "--config.train.checkpoint_every=1", "--config.train.async_checkpointing=False")
    line = assert_one_line_error(proc, "train", "step 2: diverged: param_norm=",
                                 "> train.divergence_param_norm=1e+06", "last good checkpoint is step 1")
    assert not (tmp_path / "export").exists(), line
    steps = sorted(int(p.name) for p in (run / "checkpoints").iterdir() if p.name.isdigit())
    assert steps == [1]


# ----------------------------------------------------------------------------- 4. messages that name the problem


def test_a_request_file_that_is_not_utf8_names_the_file_and_line(tmp_path, model_dir):
    bad = tmp_path / "requests.jsonl"
    bad.write_bytes(b'{"id": 0, "context": "a", "continuation": " b"}\n'
                    b'{"id": 1, "context": "caf\xe9", "continuation": " b"}\n')
    proc = _score(model_dir, bad, tmp_path / "out.jsonl")
    assert_one_line_error(proc, "score", f"{bad}:2: not UTF-8 (byte 0xe9")
    assert not (tmp_path / "out.jsonl").exists()


def test_a_missing_data_dir_is_named(tmp_path):
    proc = run_cli("launch.prepare_data", "--config=configs/data/offline.py", "--config.tasks=rte",
                   "--config.data_dir=/nonexistent/tasks", f"--output_dir={tmp_path / 'out'}")
    line = assert_one_line_error(proc, "prepare_data", "--config.data_dir=/nonexistent/tasks: no such directory")
    assert len(proc.stderr.strip().splitlines()) <= 3, proc.stderr  # no list of local/hub/tfds attempts
    assert "hub" not in proc.stderr.replace(line, "")


def test_a_model_dir_without_tokenizer_files_says_so(tmp_path, model_dir, requests_file):
    bare = tmp_path / "bare"
    shutil.copytree(model_dir, bare, ignore=shutil.ignore_patterns("tokenizer*", "special_tokens*"))
    proc = _score(bare, requests_file, tmp_path / "out.jsonl")
    line = assert_one_line_error(proc, "score", f"{bare} has no tokenizer (tokenizer.json or tokenizer.model)")
    assert "sentencepiece" not in line


def test_a_malformed_line_in_task_data_names_the_file_and_line(tmp_path, data_dir):
    local = tmp_path / "tasks"
    shutil.copytree(data_dir / "rte", local / "rte")
    train = next(p for p in (local / "rte").iterdir() if p.name.startswith("train") and p.suffix == ".jsonl")
    lines = train.read_text(encoding="utf-8").splitlines(keepends=True)
    train.write_text("".join(lines[:4] + ['{"premise": "cut off\n'] + lines[4:]), encoding="utf-8")
    proc = run_cli("launch.prepare_data", "--config=configs/data/offline.py", "--config.tasks=rte",
                   f"--config.data_dir={local}", f"--output_dir={tmp_path / 'out'}")
    assert_one_line_error(proc, "prepare_data", f"{train}:5: malformed JSON line")


# ----------------------------------------------------------------------------- 5. leftovers of killed writers


def test_temp_dirs_of_a_killed_writer_are_swept_by_the_next_write(tmp_path):
    target = tmp_path / "hf"
    code = ("import os, sys, time; from t5x_like import io_utils; d = io_utils.make_temp_dir(sys.argv[1]); "
            "open(os.path.join(d, 'model.safetensors'), 'wb').truncate(1 << 20); print(d, flush=True); time.sleep(60)")
    writer = subprocess.Popen([sys.executable, "-c", code, str(target)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    leftover = pathlib.Path(writer.stdout.readline().strip())
    live = io_utils.make_temp_dir(str(target))  # a live writer's temp dir is never touched
    assert leftover.is_dir()
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    with io_utils.atomic_directory(str(target)) as tmp:
        pathlib.Path(tmp, "done").write_text("ok")
    assert not leftover.exists() and pathlib.Path(live).is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["hf", pathlib.Path(live).name])


@pytest.mark.slow
def test_a_conversion_killed_mid_write_leaves_nothing_after_the_rerun(tmp_path, smollm2_dir):
    """kill -9 while the real SmolLM2 GGUF is being written (its ~540 MB shard preallocated): the rerun
    removes the leftover temp dir and writes the same bytes as the uninterrupted conversion."""
    from t5x_like import gguf

    source, out = gguf.smollm2_gguf_path(), tmp_path / "hf"
    args = [sys.executable, "-m", "launch.convert", f"--gguf={source}", f"--output_dir={out}"]
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not list(tmp_path.glob(".hf.*.tmp/model.safetensors")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert list(tmp_path.glob(".hf.*.tmp")) and not out.exists()  # killed mid-write
    rerun = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf"]
    assert (out / "model.safetensors").read_bytes() == (smollm2_dir / "model.safetensors").read_bytes()


# ----------------------------------------------------------------------------- 6. empty mixture


def test_a_zero_mixture_size_is_refused(tmp_path, data_dir):
    proc = run_cli("launch.prepare_data", "--config=configs/data/offline.py", "--config.tasks=rte",
                   f"--config.data_dir={data_dir}", "--config.mixture=default", "--config.mixture_size=0",
                   f"--output_dir={tmp_path / 'out'}")
    assert_one_line_error(proc, "prepare_data", "mixture_size=0")
    assert not (tmp_path / "out" / "manifest.json").exists()


# ----------------------------------------------------------------------------- 7. two processes, one workdir

_HOLD = ("import sys, time; from t5x_like import io_utils\n"
         "with io_utils.workdir_lock(sys.argv[1], 'holder'):\n    print('held', flush=True); time.sleep(120)\n")


def test_a_second_process_on_a_workdir_is_refused_and_a_dead_holders_lock_is_taken_over(tmp_path, data_dir,
                                                                                        model_dir):
    data = prepare_data(tmp_path / "data", data_dir, "rte", num_test=4, formats="base_d")
    workdir = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(workdir)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    args = cli_args(data, model_dir, workdir, settings="base_d", tasks="rte", mode="loglik")
    busy = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert_one_line_error(busy, "evaluate", f"{workdir} is in use by holder (pid {holder.pid}")
    assert not (workdir / "scores.csv").exists()
    holder.send_signal(signal.SIGKILL)  # the holder dies: its lock file stays, the kernel's lock does not
    holder.wait()
    assert os.path.exists(io_utils.lock_path(str(workdir)))
    done = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (workdir / "scores.csv").is_file()


# 8. SIGTERM (exit status 75, the one line, the resume) is tests/test_checkpoints.py's preemption test.
