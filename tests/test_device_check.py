"""benchmarks/device_check.py on CPU: the --smoke run completes every section and its numbers hold up.

One smoke run (2 fake CPU devices, so the sharded section runs too) in a fresh process; the report's
numerics are checked against transformers' references (the committed parity fixtures, and
transformers run live on the same requests), packed scoring against each request alone, the sharded
engine against one device. Full mode must refuse to start on CPU with one line.
"""
from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import pytest

from conftest import shared_path

REPO = pathlib.Path(__file__).resolve().parents[1]
SECTIONS = ("environment", "numerics", "inference", "training", "sharded")


def run_check(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchmarks.device_check", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(REPO), **env})


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> tuple[dict, str]:
    shared_path("tokenizers", "llama2")  # the smoke inference model is configs/models/tiny.py (Llama-2 tokenizer)
    tmp = tmp_path_factory.mktemp("device_check")
    proc = run_check(["--smoke", f"--out={tmp}/report"],
                     {"JAX_PLATFORMS": "cpu", "T5X_LIKE_CACHE": str(tmp / "cache"),
                      # LLVM optimisation off halves this compile-bound run; its CPU timings mean nothing anyway
                      "XLA_FLAGS": "--xla_force_host_platform_device_count=2 --xla_backend_optimization_level=0"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads((tmp / "report.json").read_text()), (tmp / "report.md").read_text()


def test_smoke_writes_both_reports_with_every_section_ok(smoke):
    report, md = smoke
    assert report["mode"] == "smoke"
    for name in SECTIONS:
        section = report["sections"][name]
        assert section["status"] == "ok", (name, section.get("error"))
        assert section["seconds"] >= 0
    env = report["sections"]["environment"]
    assert env["backend"] == "cpu" and env["device_count"] == 2 and env["versions"]["jax"]
    for heading in ("## Numerics", "## Inference", "## Training step", "## Sharded engine"):
        assert heading in md
    assert md.count("| ok |") >= len(SECTIONS)


def test_smoke_numerics_match_transformers(smoke):
    rows = smoke[0]["sections"]["numerics"]["rows"]
    covered = {(r["case"], r["dtype"], r["attention"]) for r in rows}
    for case in ("llama_tied", "mistral_window"):
        assert {(case, "float32", impl) for impl in ("xla", "blocked", "chunked")} <= covered
        assert (case, "bfloat16", "xla") in covered
    for row in rows:
        assert row["status"] == "ok", row.get("error")
        assert row["packed_vs_alone_is_greedy_equal"]
        if row["dtype"] == "float32":
            assert row["max_abs_logprob_diff"] <= 1e-4, row
            assert row["is_greedy_agreement"] == 1.0, row
            assert row["greedy_rows_equal"] == row["greedy_rows"] == 3, row
            assert row["packed_vs_alone_max_abs_diff"] <= 1e-5, row
        else:  # bf16 weights and compute vs the fp32 reference, sums over up to 11 tokens (measured <= 0.09)
            assert row["max_abs_logprob_diff"] <= 0.25, row
            assert row["packed_vs_alone_max_abs_diff"] <= 1e-2, row


def test_smoke_splash_matches_xla_attention(smoke):
    """The splash rows (Pallas's interpreter off a TPU) agree with the XLA attention (measured 2.7e-6)."""
    row, = smoke[0]["sections"]["numerics"]["splash_rows"]
    assert (row["case"], row["dtype"], row["status"], row["tokens"]) == ("llama_tied", "float32", "ok", 256), row
    assert row["max_abs_hidden_diff"] <= 2e-5, row


def test_smoke_inference_agrees_with_transformers_and_one_device(smoke):
    sections = smoke[0]["sections"]
    inference = sections["inference"]
    for path in ("scoring", "generation"):
        assert inference["ours"][path]["compile_s"] > 0 and inference["ours"][path]["compute_s"] > 0
    assert inference["ours"]["scoring"]["tokens_per_s"] > 0 and inference["ours"]["generation"]["new_tokens_per_s"] > 0
    if importlib.util.find_spec("torch") is not None:
        torch_part = inference["transformers"]
        assert torch_part["status"] == "ok" and torch_part["device"] == "cpu"
        agree = torch_part["agreement"]
        assert agree["max_abs_logprob_diff"] <= 1e-4 and agree["is_greedy_agreement"] == 1.0
        assert agree["generation_rows_identical"] == agree["generation_rows"] > 0
        assert torch_part["speedup"]["scoring_compute"] > 0
    shard = sections["sharded"]
    assert shard["devices"] == 2 and "data=2" in shard["ours"]["partitioner"]
    assert shard["vs_single_device"]["max_abs_logprob_diff"] <= 1e-5
    assert shard["vs_single_device"]["generation_rows_identical"] == shard["vs_single_device"]["generation_rows"]


def test_smoke_training_steps_lora_and_full(smoke):
    modes = smoke[0]["sections"]["training"]["modes"]
    for mode in ("lora", "full"):
        part = modes[mode]
        assert part["status"] == "ok", part.get("error")
        assert part["finite"] and part["step_s"] > 0 and part["tokens_per_s"] > 0 and part["mfu"] > 0
        assert part["aot_memory_gib"]["total"] > 0 and part["compile_s"] > 0
        assert "fsdp=2" in part["mesh"] and part["batch"] == 2
    assert modes["lora"]["trained_params"] < modes["full"]["trained_params"] == modes["full"]["params"]
    assert modes["lora"]["model_tflops_per_step"] < modes["full"]["model_tflops_per_step"]


def test_full_mode_refuses_on_cpu_in_one_line():
    proc = run_check([], {"JAX_PLATFORMS": "cpu"})
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("device_check: error: JAX sees only CPU devices") and "--smoke" in last
    assert "Traceback" not in proc.stderr


def test_a_failing_section_is_recorded_and_the_report_still_written(tmp_path):
    proc = run_check(["--smoke", "--sections=environment,inference", f"--inference_model={tmp_path}/missing",
                      f"--out={tmp_path}/report"], {"JAX_PLATFORMS": "cpu"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    sections = json.loads((tmp_path / "report.json").read_text())["sections"]
    assert sections["environment"]["status"] == "ok"
    assert sections["inference"]["status"] == "error"
    assert "FileNotFoundError" in sections["inference"]["error"] and "missing" in sections["inference"]["error"]
    assert "| inference | error |" in (tmp_path / "report.md").read_text()
