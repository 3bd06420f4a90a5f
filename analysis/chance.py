"""Scores relative to chance, so that differing chance rates cannot fake a correlation across tasks.

A model at chance scores 100 / options on every task: across tasks with 2 to 6 options its scores run
from 50 down to 17, and a tuned and a base setting that are both at chance rank the tasks alike. The
score variants (the ``scores`` column of correlations.csv):

* ``raw``: the score as evaluated (the paper's statistic);
* ``above_chance``: score - chance, in points;
* ``normalised``: 100 * (score - chance) / (100 - chance): 0 at chance, 100 perfect (chance-corrected
  accuracy, the form of Cohen's kappa and of BIG-bench's normalised score); the headline variant;
* ``partial``: the partial correlation of the raw scores controlling for the chance rate (%), over
  the tasks that have one.

A task without a chance rate (generative, or no option count) counts as chance 0 in ``above_chance``
and ``normalised``, so it keeps its raw score there; the partial correlation leaves it out.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from analysis.pairs import Pair

SCORES = ("raw", "above_chance", "normalised", "partial")
CORRECTED = ("above_chance", "normalised")   # the variants that transform each score
HEADLINE = "normalised"                      # the variant of the report's first table (docs/analysis.md)
LABELS = {"raw": "raw", "above_chance": "above chance", "normalised": "normalised",
          "partial": "partial (chance)"}


def offset_and_scale(chance: np.ndarray, scores: str) -> tuple[np.ndarray, np.ndarray]:
    """Per task (offset, scale) of the map corrected = scale * (score - offset); NaN chance counts as 0."""
    chance = np.nan_to_num(np.asarray(chance, float), nan=0.0)
    if scores in ("raw", "partial"):
        return np.zeros_like(chance), np.ones_like(chance)
    if scores == "above_chance":
        return chance, np.ones_like(chance)
    if scores == "normalised":
        return chance, 100.0 / (100.0 - chance)
    raise ValueError(f"unknown score variant {scores!r}; expected one of {SCORES}.")


def relative_to_chance(values: np.ndarray, chance: np.ndarray, scores: str) -> np.ndarray:
    """Scores (%) expressed in a variant: raw, above_chance or normalised (see module docstring)."""
    offset, scale = offset_and_scale(chance, scores)
    return scale * (np.asarray(values, float) - offset)


def corrected_pair(pair: Pair, chance: pd.Series, scores: str) -> Pair:
    """The pair with every per-task score (seed means, stds, per-seed values) in a score variant."""
    offset, scale = (pd.Series(v, index=pair.tasks.index) for v in
                     offset_and_scale(chance.reindex(pair.tasks.index).to_numpy(), scores))
    tasks = pair.tasks.copy()
    for side in ("tuned", "base"):
        tasks[f"{side}_mean"] = scale * (tasks[f"{side}_mean"] - offset)
        tasks[f"{side}_std"] = scale * tasks[f"{side}_std"]
    per_seed = {seed: frame.assign(**{side: scale.loc[frame.index] * (frame[side] - offset.loc[frame.index])
                                      for side in ("tuned", "base")})
                for seed, frame in pair.per_seed.items()}
    return dataclasses.replace(pair, tasks=tasks, per_seed=per_seed)


def with_chance_rates(pair: Pair, chance: pd.Series) -> Pair:
    """The pair restricted to the tasks that have a chance rate (those the partial correlation uses)."""
    rated = pair.tasks.index[np.isfinite(chance.reindex(pair.tasks.index).to_numpy())]
    return dataclasses.replace(pair, tasks=pair.tasks.loc[rated],
                               per_seed={seed: frame.loc[frame.index.intersection(rated)]
                                         for seed, frame in pair.per_seed.items()})
