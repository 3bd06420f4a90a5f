"""Training mixtures: the task list of every setup and examples-proportional mixing (§2.4, §4.2).

The original (`make_mixtures.py`) reassigned its drop lists one after another, so only the last
setup ever ran. Here every setup is written out as an explicit task list; the contradictions of
the original are resolved as documented in docs/data.md ("Setups"):
- setup3 trains on QNLI although QNLI is on the always-dropped list: the stated intent wins.
- setup6 / setup7 add back Winogrande / DPR although Winogrande is always dropped: same rule.
- newsroom belongs to no cluster, so no cluster-based setup contains it (setup1 has 18 tasks).
"""
from __future__ import annotations

import dataclasses
import random
from typing import Generic, Mapping, Sequence, TypeVar

from t5x_like.data import tasks as registry
from t5x_like.errors import UserError

RATE_CAP = 3000  # examples-proportional cap per task (seqio `maximum`)
SIZE_LIMIT = 30000  # at most this many training rows per task enter a mixture
VALIDATION_FRACTION = 0.1

_NLU_DEFAULT = (
    "anli_r1", "anli_r2", "anli_r3", "rte", "cb", "snli", "mnli", "wnli",  # nli
    "copa", "hellaswag", "piqa",  # commonsense
    "imdb_reviews", "sentiment140", "sst2",  # sentiment
    "mrpc", "qqp", "paws_wiki",  # paraphrase
    "arc", "arc_easy",  # closed_book_qa
    "bool_q", "drop", "multirc", "openbookqa",  # reading_comp
    "cosmos_qa",  # reading_comp_with_cs
)
_NLG_DEFAULT = (
    "common_gen", "e2e_nlg", "web_nlg",  # struct_to_text_nlg
    "para_crawl/ende", "para_crawl/enes", "para_crawl/enfr",  # translation_nlg
    "wmt16/cs-en", "wmt16/de-en", "wmt16/fi-en", "wmt16/ru-en", "wmt16/tr-en",
)
_MISC = ("coqa", "quac", "trec", "cola", "wic", "math_dataset")  # fix_punct always dropped
_SUMMARIZATION = (  # samsum always dropped
    "aeslc", "ag_news", "cnn_dailymail", "gigaword", "xsum", "opin_idebate", "opin_movie",
)

SETUPS: dict[str, tuple[str, ...]] = {
    # drop clusters misc and summarization_nlg (36 tasks)
    "default": _NLU_DEFAULT + ("dpr_raw",) + _NLG_DEFAULT,
    # NLG only: struct_to_text + translation + summarization (18 tasks)
    "setup1": _NLG_DEFAULT + _SUMMARIZATION,
    # drop nli and the three NLG clusters (23 tasks, misc included)
    "setup2": (
        "copa", "hellaswag", "piqa", "imdb_reviews", "sentiment140", "sst2", "mrpc", "qqp",
        "paws_wiki", "arc", "arc_easy", "bool_q", "drop", "multirc", "openbookqa", "cosmos_qa",
        "dpr_raw",
    ) + _MISC,
    # train only on QNLI (overrides the always-drop of qnli)
    "setup3": ("qnli",),
    # train only on MNLI
    "setup4": ("mnli",),
    # drop only the coreference cluster (48 tasks)
    "setup5": _NLU_DEFAULT + _MISC + _NLG_DEFAULT + _SUMMARIZATION,
    # setup5 + Winogrande (overrides the always-drop of winogrande)
    "setup6": _NLU_DEFAULT + ("winogrande",) + _MISC + _NLG_DEFAULT + _SUMMARIZATION,
    # setup5 + DPR
    "setup7": _NLU_DEFAULT + ("dpr_raw",) + _MISC + _NLG_DEFAULT + _SUMMARIZATION,
}

T = TypeVar("T")


class UnknownSetupError(UserError, ValueError):
    """A mixture setup name that is not one of SETUPS."""


def mixture_tasks(setup: str) -> list[str]:
    """The training tasks of `setup` ("default", "setup1" ... "setup7"), in a fixed order."""
    if setup not in SETUPS:
        raise UnknownSetupError(f"unknown mixture setup {setup!r}; expected one of {sorted(SETUPS)}")
    return list(SETUPS[setup])


def is_seen(task: str, setup: str) -> bool:
    """Whether `task` was trained on in `setup` (mnli_matched/mismatched are seen when mnli is)."""
    return registry.is_seen_in(task, mixture_tasks(setup))


def mixing_rates(sizes: Mapping[str, int], *, cap: int = RATE_CAP) -> dict[str, float]:
    """Examples-proportional rates: rate_i = min(n_i, cap) / sum_j min(n_j, cap)."""
    capped = {task: min(n, cap) for task, n in sizes.items()}
    total = sum(capped.values())
    if total == 0:
        raise ValueError("cannot mix: every task has 0 training examples")
    return {task: n / total for task, n in capped.items()}


def allocate(rates: Mapping[str, float], total: int) -> dict[str, int]:
    """Split `total` draws over tasks in proportion to `rates` (largest remainder, ties by name)."""
    exact = {task: rate * total for task, rate in rates.items()}
    counts = {task: int(value) for task, value in exact.items()}
    by_remainder = sorted(exact, key=lambda task: (-(exact[task] - counts[task]), task))
    for task in by_remainder[: total - sum(counts.values())]:
        counts[task] += 1
    return counts


@dataclasses.dataclass(frozen=True)
class Mixture(Generic[T]):
    """A mixed training set and its seeded 10% validation split, with what went into it."""

    train: list[T]
    validation: list[T]
    rates: dict[str, float]  # examples-proportional rate per task
    counts: dict[str, int]  # rows drawn per task (before the validation split)
    sizes: dict[str, int]  # rows available per task after the size limit


def build_mixture(
    rows_by_task: Mapping[str, Sequence[T]],
    *,
    seed: int,
    size: int | None = None,
    cap: int = RATE_CAP,
    size_limit: int = SIZE_LIMIT,
    validation_fraction: float = VALIDATION_FRACTION,
) -> Mixture[T]:
    """Mix per-task training rows examples-proportionally, shuffle and split off validation, all seeded.

    Each task is cut to its first `size_limit` rows; task i contributes round(rate_i * size) rows
    (its first ones, cycling if it has fewer), `size` defaulting to sum_j min(n_j, cap), so that
    every task gives exactly min(n_i, cap) rows.
    """
    sizes = {task: min(len(rows), size_limit) for task, rows in sorted(rows_by_task.items())}
    empty = sorted(task for task, n in sizes.items() if n == 0)
    if empty:
        raise ValueError(f"cannot mix tasks without training rows: {empty}")
    rates = mixing_rates(sizes, cap=cap)
    total = sum(min(n, cap) for n in sizes.values()) if size is None else size
    counts = allocate(rates, total)
    mixed = [rows_by_task[task][i % sizes[task]] for task in sorted(counts) for i in range(counts[task])]
    random.Random(f"{seed}:mixture").shuffle(mixed)
    num_validation = round(validation_fraction * len(mixed))
    return Mixture(
        train=mixed[num_validation:],
        validation=mixed[:num_validation],
        rates=rates,
        counts=counts,
        sizes=sizes,
    )
