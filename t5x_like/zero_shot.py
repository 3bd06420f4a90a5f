"""lm-evaluation-harness's zero-shot cloze prompts for a few multiple-choice tasks, ranked by log-likelihood.

Each option is a continuation of the task's lm-eval prompt (" " + option); the highest summed
log-likelihood wins (`acc`), or the highest per character (`acc_norm`). This is the small-model
sanity check next to the paper's formats (where a 135M model is at chance): the scoring demo, the
SmolLM2 ranking benchmark and its test all rank through `rank_zero_shot`. The requests equal those
lm-eval builds (tests/test_lm_eval_backend.py) except COPA's, where lm-eval's choices carry a space of
their own before the delimiter's (two spaces) and ours one.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from t5x_like.data.examples import Example
from t5x_like.engine import Engine
from t5x_like.evaluation.contexts import option_requests
from t5x_like.metrics.ranking import ranking_accuracy


def _copa_context(ex: Example) -> str:
    connector = {"cause": "because", "effect": "therefore"}[ex.field("question")]
    return f"{ex.field('premise').strip()[:-1]} {connector}"


# lm-eval's zero-shot prompt and option text for each task: (context, options).
PROMPTS: dict[str, Callable[[Example], tuple[str, list[str]]]] = {
    "arc_easy": lambda ex: (f"Question: {ex.field('question')}\nAnswer:", list(ex.options)),
    "piqa": lambda ex: (f"Question: {ex.field('goal')}\nAnswer:", list(ex.options)),
    "copa": lambda ex: (_copa_context(ex), [o[0].lower() + o[1:] for o in ex.options]),
}


@dataclasses.dataclass(frozen=True)
class ZeroShotRanking:
    """Accuracies of one task in percent, the chance rate (mean 1 / options) and the request count."""

    task: str
    n: int
    acc: float
    acc_norm: float
    chance: float
    requests: int


def rank_zero_shot(engine: Engine, task: str, examples: Sequence[Example]) -> ZeroShotRanking:
    """Scores every option of `examples` with the task's zero-shot prompt and ranks them."""
    if task not in PROMPTS:
        raise ValueError(f"no zero-shot prompt for task {task!r}; known: {sorted(PROMPTS)}")
    prompts = [PROMPTS[task](ex) for ex in examples]
    requests = [r for context, options in prompts for r in option_requests(context, options)]
    results = iter(engine.score(requests))
    loglikelihoods = [[next(results).logprob for _ in options] for _, options in prompts]
    options = [opts for _, opts in prompts]
    gold = [list(ex.options).index(ex.label) for ex in examples]
    accuracy = ranking_accuracy(loglikelihoods, options, gold)
    chance = 100.0 * sum(1.0 / len(opts) for opts in options) / len(options)
    return ZeroShotRanking(task, len(examples), accuracy["acc"], accuracy["acc_norm"], chance, len(requests))
