"""Log-likelihood ranking with the real SmolLM2-135M-Instruct on real task data (base_d setting, 50 items
per task): per-task acc / acc_norm against chance are printed; the option log-likelihoods equal
transformers PyTorch's on the same tokens, and two runs of the same items give the same numbers.

Measured (CPU, fp32, GGUF Q4_1 dequantized): every task within 2 standard errors of chance at n=50, so
no task is asserted above chance (see docs/evaluation.md, "SmolLM2 figures")."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from t5x_like import evaluation as ev
from t5x_like import io_utils
from t5x_like.data import pipeline
from t5x_like.engine import Engine

from eval_helpers import eval_config, prepare_data

NUM_TEST = 50
TASKS = ("arc_easy", "copa", "piqa", "sst2")


def hf_logprob(model, engine: Engine, context: str, continuation: str) -> float:
    """Summed continuation log-prob from transformers' forward of the same lm-eval token split."""
    import torch

    ctx, cont = engine.tokenizer.encode_pair(context, continuation)
    tokens = torch.tensor([ctx + cont[:-1]])
    with torch.inference_mode():
        logprobs = torch.log_softmax(model(tokens).logits[0].double(), -1)
    positions = range(len(ctx) - 1, len(ctx) + len(cont) - 1)
    return float(sum(logprobs[p, t] for p, t in zip(positions, cont)))


@pytest.mark.slow
@pytest.mark.torch
def test_smollm2_loglik_per_task_matches_transformers(tmp_path, data_dir, smollm2_dir, capsys):
    transformers = pytest.importorskip("transformers")
    data = prepare_data(tmp_path / "data", data_dir, ",".join(TASKS), NUM_TEST, formats="base_d")
    engine = Engine.from_dir(smollm2_dir, batch_size=16, progress=False)
    config = eval_config(data, smollm2_dir, settings="base_d", mode="loglik", shard_size=NUM_TEST, max_length=0)
    config.model.name = "smollm2_135m"
    first = ev.run(config, str(tmp_path / "a"), engines={"base": engine})
    table = []
    for score in first.scores:
        row, values = score.row, score.metrics
        records = io_utils.read_jsonl(ev.predictions_path(str(tmp_path / "a"), "base_d", row["task"]))
        chance = sum(100 / len(r["options"]) for r in records) / len(records)  # ARC has 3- to 5-option items
        stderr = 100 * math.sqrt(chance / 100 * (1 - chance / 100) / row["n"])
        table.append({"task": row["task"], "n": row["n"], "chance": round(chance, 1),
                      "acc": round(values["accuracy"], 1), "acc_norm": round(values["acc_norm_accuracy"], 1),
                      "chance_stderr": round(stderr, 1)})
    with capsys.disabled():
        print("\nSmolLM2-135M base_d loglik accuracy:\n" + "\n".join(json.dumps(r) for r in table))

    model = transformers.AutoModelForCausalLM.from_pretrained(str(smollm2_dir)).eval()
    for task in TASKS[:2]:
        rows = io_utils.read_jsonl(str(pipeline.split_path(data, "base_d", task, "test")))[:2]
        records = io_utils.read_jsonl(ev.predictions_path(str(tmp_path / "a"), "base_d", task))[:2]
        for row, record in zip(rows, records):
            context = ev.ranking_context(ev.get_setting("base_d"), row["prompt"])
            expected = [hf_logprob(model, engine, context, f" {option}") for option in row["options"]]
            np.testing.assert_allclose(record["logprobs"], expected, atol=2e-3, rtol=1e-4)

    config.eval.tasks = ",".join(TASKS[:2])  # the same items again, in a fresh run dir
    second = ev.run(config, str(tmp_path / "b"), engines={"base": engine})
    assert [s.metrics for s in second.scores] == [s.metrics for s in first.scores[:2]]
