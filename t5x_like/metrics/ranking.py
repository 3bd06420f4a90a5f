"""Log-likelihood ranking of options, lm-evaluation-harness semantics (`acc`, `acc_norm`).

`acc` picks the option with the highest summed continuation log-likelihood; `acc_norm` divides
each log-likelihood by the option's length in characters first. Ties go to the lowest index
(numpy argmax), as in lm-eval.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class Ranking:
    """The option index chosen by `acc` and by `acc_norm` for one item."""

    acc_index: int
    acc_norm_index: int


def rank_options(loglikelihoods: Sequence[float], options: Sequence[str]) -> Ranking:
    """Argmax of log-likelihood, and of log-likelihood / len(option) in characters.

    `options` are the option texts as lm-eval's `doc_to_choice` gives them, without the target
    delimiter (the leading space the request adds), so a one-word label has its own length.
    """
    if len(loglikelihoods) != len(options) or not options:
        raise ValueError(f"rank_options: {len(loglikelihoods)} log-likelihoods for {len(options)} options")
    lengths = np.array([len(option) for option in options], dtype=np.float64)
    if (lengths == 0).any():
        raise ValueError(f"rank_options: an option is the empty string, acc_norm is undefined: "
                         f"{list(options)!r}")
    scores = np.asarray(loglikelihoods, dtype=np.float64)
    return Ranking(int(np.argmax(scores)), int(np.argmax(scores / lengths)))


def ranking_accuracy(loglikelihoods: Sequence[Sequence[float]], options: Sequence[Sequence[str]],
                     gold_indices: Sequence[int]) -> dict[str, float]:
    """100 x the fraction of items whose `acc` / `acc_norm` choice is the gold option."""
    if not (len(loglikelihoods) == len(options) == len(gold_indices)) or not gold_indices:
        raise ValueError(f"ranking_accuracy: {len(loglikelihoods)} items of log-likelihoods, "
                         f"{len(options)} option lists, {len(gold_indices)} gold indices")
    rankings = [rank_options(lls, opts) for lls, opts in zip(loglikelihoods, options)]
    acc = [r.acc_index == gold for r, gold in zip(rankings, gold_indices)]
    acc_norm = [r.acc_norm_index == gold for r, gold in zip(rankings, gold_indices)]
    return {"acc": 100.0 * float(np.mean(acc)), "acc_norm": 100.0 * float(np.mean(acc_norm))}
