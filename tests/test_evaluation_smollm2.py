"""Log-likelihood ranking with the real SmolLM2-135M-Instruct on real task data.

The paper's base_d setting (`ev.run`, loglik mode) on a few tasks: per-task acc / acc_norm against chance
are printed, the option log-likelihoods equal transformers PyTorch's on the same tokens, and two runs of
the same items give the same numbers. lm-eval's zero-shot cloze prompts (`t5x_like.zero_shot`)
through the same scorer: accuracy above chance, by a one-sided binomial test (scipy) at p < 0.01, on
the tasks and metrics where benchmarks/smollm2_ranking.py measured a clear margin (docs/evaluation.md,
"SmolLM2 figures"); in base_d this 135M model shows none at the test's item counts.
"""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from scipy.stats import binomtest

from t5x_like import evaluation as ev
from t5x_like.evaluation import contexts as ev_contexts
from t5x_like.evaluation import store as ev_store
from t5x_like import settings as registry
from t5x_like import io_utils
from t5x_like.data import pipeline
from t5x_like.data.sources import load_examples
from t5x_like.engine import Engine
from t5x_like.zero_shot import ZeroShotRanking, rank_zero_shot

from eval_helpers import eval_config, prepare_data

NUM_TEST = 50
TASKS = ("copa", "sst2")
# Zero-shot (task, items, metric asserted above chance): the first items of the benchmark's measurement.
ABOVE_CHANCE = (("arc_easy", 100, "acc"), ("piqa", 200, "acc"))
P_MAX = 0.01


def hf_logprob(model, engine: Engine, context: str, continuation: str) -> float:
    """Summed continuation log-prob from transformers' forward of the same lm-eval token split."""
    import torch

    ctx, cont = engine.tokenizer.encode_pair(context, continuation)
    tokens = torch.tensor([ctx + cont[:-1]])
    with torch.inference_mode():
        logprobs = torch.log_softmax(model(tokens).logits[0].double(), -1)
    positions = range(len(ctx) - 1, len(ctx) + len(cont) - 1)
    return float(sum(logprobs[p, t] for p, t in zip(positions, cont)))


def above_chance_p(ranking: ZeroShotRanking, metric: str) -> float:
    """One-sided binomial p of `ranking.<metric>` (percent of n items) against its chance rate."""
    correct = round(getattr(ranking, metric) * ranking.n / 100)
    return binomtest(correct, ranking.n, ranking.chance / 100, alternative="greater").pvalue


def zero_shot(engine: Engine, data_dir, task: str, n: int) -> ZeroShotRanking:
    return rank_zero_shot(engine, task, load_examples(task, "eval", data_dir=str(data_dir))[:n])


@pytest.mark.slow
@pytest.mark.torch
def test_smollm2_loglik_per_task_matches_transformers(tmp_path, data_dir, smollm2_dir, capsys):
    transformers = pytest.importorskip("transformers")
    data = prepare_data(tmp_path / "data", data_dir, ",".join(TASKS), NUM_TEST, formats="base_d")
    engine = Engine.load(smollm2_dir, batch_size=16, progress=False)
    config = eval_config(data, smollm2_dir, settings="base_d", mode="loglik", shard_size=NUM_TEST, max_length=0)
    config.model.name = "smollm2_135m"
    first = ev.run(config, str(tmp_path / "a"), engines={"base": engine})
    table = [{"setting": "base_d", "task": s.row["task"], "n": s.row["n"], "acc": s.metrics["accuracy"],
              "acc_norm": s.metrics["acc_norm_accuracy"]} for s in first.scores]
    rankings = {task: zero_shot(engine, data_dir, task, n) for task, n, _ in ABOVE_CHANCE}
    with capsys.disabled():
        print("\nSmolLM2-135M loglik ranking accuracy:\n"
              + "\n".join(json.dumps(r) for r in [*table, *map(dataclasses.asdict, rankings.values())]))
    for task, n, metric in ABOVE_CHANCE:
        ranking = rankings[task]
        assert ranking.n == n
        assert above_chance_p(ranking, metric) < P_MAX, \
            f"{task}: {metric} {getattr(ranking, metric)} vs chance {ranking.chance}"

    model = transformers.AutoModelForCausalLM.from_pretrained(str(smollm2_dir)).eval()
    for task in TASKS:
        rows = io_utils.read_jsonl(str(pipeline.split_path(data, "base_d", task, "test")))[:2]
        records = io_utils.read_jsonl(ev_store.predictions_path(str(tmp_path / "a"), "base_d", task))[:2]
        for row, record in zip(rows, records):
            context = ev_contexts.ranking_context(registry.get_setting("base_d"), row["prompt"])
            expected = [hf_logprob(model, engine, context, f" {option}") for option in row["options"]]
            np.testing.assert_allclose(record["logprobs"], expected, atol=2e-3, rtol=1e-4)

    second = ev.run(config, str(tmp_path / "b"), engines={"base": engine})  # the same items, a fresh run dir
    assert [s.metrics for s in second.scores] == [s.metrics for s in first.scores]
    task, n, _ = ABOVE_CHANCE[0]
    assert zero_shot(engine, data_dir, task, n) == rankings[task]
