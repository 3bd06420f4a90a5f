"""`launch.score` / `launch.generate` as a user runs them: jsonl in, jsonl out in input order,
one-line errors with a non-zero exit and no output file for bad inputs."""
from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import flax.linen as nn
import jax
import pytest

from t5x_like import hf_io
from t5x_like.engine import Engine
from t5x_like.models.config import ModelConfig
from t5x_like.models.llama import init_params
from t5x_like.scoring import ScoreRequest

REPO = pathlib.Path(__file__).resolve().parents[1]
TINY = ModelConfig(vocab_size=32000, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4,
                   num_kv_heads=2, head_dim=8, max_position_embeddings=256, model_type="llama",
                   bos_token_id=1, eos_token_ids=(2,))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tokenizers_dir) -> pathlib.Path:
    """A tiny random Llama saved as an HF directory with the real Llama-2 tokenizer."""
    out = tmp_path_factory.mktemp("cli") / "model"
    params = nn.meta.unbox(init_params(TINY, jax.random.PRNGKey(0)))
    hf_io.save_params(params, TINY, str(out), tokenizer_dir=str(tokenizers_dir / "llama2"))
    return out


def run_cli(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)


def write_jsonl(path: pathlib.Path, rows: list) -> pathlib.Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


SCORE_ROWS = [{"id": "a", "context": "The capital of France is", "continuation": " Paris"},
              {"id": "b", "context": "Question: what is 2 + 2?\nAnswer:", "continuation": " 4, of course"},
              {"id": "c", "context": "", "continuation": "Hello"}]


def test_score_cli_writes_results_in_input_order(tmp_path, model_dir):
    requests = write_jsonl(tmp_path / "in.jsonl", SCORE_ROWS)
    out = tmp_path / "out.jsonl"
    proc = run_cli("launch.score", f"--model={model_dir}", f"--requests={requests}", f"--output={out}",
                   "--batch_size=2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["id"] for x in lines] == ["a", "b", "c"]
    expected = Engine.load(model_dir, batch_size=2, progress=False).score(
        [ScoreRequest(r["context"], r["continuation"]) for r in SCORE_ROWS])
    for line, result in zip(lines, expected):
        assert line["logprob"] == pytest.approx(result.logprob, abs=1e-5)
        assert (line["is_greedy"], line["num_tokens"], line["truncated"]) == (result.is_greedy, result.num_tokens, False)
        assert line["logprob"] < 0


def test_generate_cli_writes_results_in_input_order(tmp_path, model_dir):
    rows = [{"id": 1, "prompt": "Once upon a time", "max_new_tokens": 5},
            {"id": 2, "prompt": "The answer is", "max_new_tokens": 3, "stop": ["\n"]}]
    requests = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.jsonl"
    proc = run_cli("launch.generate", f"--model={model_dir}", f"--requests={requests}", f"--output={out}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["id"] for x in lines] == [1, 2]
    for line, row in zip(lines, rows):
        assert line["finish_reason"] in ("stop", "eos", "length")
        assert line["num_tokens"] <= row["max_new_tokens"] and isinstance(line["text"], str)


@pytest.mark.parametrize("module,bad_line,message", [
    ("launch.score", '{"id": 2, "context": "x"', "in.jsonl:2: malformed JSON line"),
    ("launch.score", '{"id": 2, "context": 3, "continuation": " y"}', "in.jsonl:2: field 'context' must be str"),
    ("launch.generate", '{"id": 2, "prompt": "x", "stop": "\\n", "max_new_tokens": 0}', "in.jsonl:2: max_new_tokens must be >= 1"),
    ("launch.generate", '{"id": 2}', "in.jsonl:2: missing field 'prompt'"),
])
def test_malformed_request_line_fails_cleanly(tmp_path, model_dir, module, bad_line, message):
    good = SCORE_ROWS[0] if module == "launch.score" else {"id": 1, "prompt": "Hi"}
    requests = write_jsonl(tmp_path / "in.jsonl", [good, bad_line])
    out = tmp_path / "out.jsonl"
    proc = run_cli(module, f"--model={model_dir}", f"--requests={requests}", f"--output={out}")
    assert proc.returncode != 0
    error = proc.stderr.strip().splitlines()[-1]
    assert error.startswith(f"{module.split('.')[1]}: error: ") and message in error
    assert not out.exists() and list(tmp_path.iterdir()) == [requests]


@pytest.mark.parametrize("module", ["launch.score", "launch.generate"])
def test_missing_model_dir_fails_cleanly(tmp_path, module):
    row = SCORE_ROWS[0] if module == "launch.score" else {"id": 1, "prompt": "Hi"}
    requests = write_jsonl(tmp_path / "in.jsonl", [row])
    out = tmp_path / "out.jsonl"
    proc = run_cli(module, f"--model={tmp_path / 'no_such_model'}", f"--requests={requests}", f"--output={out}")
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1] == (f"{module.split('.')[1]}: error: model directory not found: "
                                                    f"{tmp_path / 'no_such_model'}")
    assert not out.exists()
