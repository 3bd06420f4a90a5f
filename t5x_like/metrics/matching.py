"""Mapping a free-text answer onto one of a task's options, with the rule that decided it.

Rules, in order: exact string, SQuAD-normalised string (articles kept when they are the whole
text, so the option "A" survives), unique token-F1 argmax, then an optional
similarity plugin (BERTScore, see `bertscore.py`). An empty answer matches nothing unless
`faithful=True`, which reproduces the original's BERTScore behaviour (empty -> option 0).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Protocol

from t5x_like.metrics.normalization import normalize_for_matching, token_f1

# Values of `Match.rule`.
EXACT = "exact"
NORMALIZED = "normalized"
TOKEN_F1 = "token_f1"
FAITHFUL_EMPTY = "faithful_empty"
EMPTY = "empty"
AMBIGUOUS = "ambiguous"
NO_MATCH = "no_match"


class OptionScorer(Protocol):
    """A similarity plugin: one score per option for `answer` (higher = closer)."""

    name: str

    def __call__(self, answer: str, options: Sequence[str]) -> Sequence[float]: ...


@dataclasses.dataclass(frozen=True)
class Match:
    """The option an answer was mapped to (None = wrong), its index and the rule that decided."""

    option: str | None
    index: int | None
    rule: str


def match_option(
    answer: str,
    options: Sequence[str],
    *,
    faithful: bool = False,
    scorer: OptionScorer | None = None,
) -> Match:
    """Map `answer` to an option: exact, normalised, token-F1 argmax, then `scorer` if given.

    A token-F1 tie between the best options is `ambiguous` (a hedge such as "yes or no" is not
    credited); the scorer, when given, then decides. The scorer's rule is reported as its `name`.
    """
    if not options:
        raise ValueError("match_option: the task has no options to match against")
    if not answer.strip():
        return Match(options[0], 0, FAITHFUL_EMPTY) if faithful else Match(None, None, EMPTY)
    if answer in options:
        index = options.index(answer)
        return Match(options[index], index, EXACT)
    normalized = normalize_for_matching(answer)
    if not normalized:  # only punctuation: nothing to compare
        return _match_by_scorer(answer, options, scorer) if scorer else Match(None, None, NO_MATCH)
    normalized_options = [normalize_for_matching(option) for option in options]
    if normalized in normalized_options:
        index = normalized_options.index(normalized)
        return Match(options[index], index, NORMALIZED)
    f1s = [token_f1(normalized.split(), option.split()) for option in normalized_options]
    best = max(f1s)
    if best > 0 and f1s.count(best) == 1:
        index = f1s.index(best)
        return Match(options[index], index, TOKEN_F1)
    if scorer is not None:
        return _match_by_scorer(answer, options, scorer)
    return Match(None, None, AMBIGUOUS if best > 0 else NO_MATCH)


def _match_by_scorer(answer: str, options: Sequence[str], scorer: OptionScorer) -> Match:
    """Argmax of the plugin's scores over the options (ties -> lowest index)."""
    scores = list(scorer(answer, options))
    if len(scores) != len(options):
        raise ValueError(f"scorer {scorer.name!r} returned {len(scores)} scores for {len(options)} options")
    index = scores.index(max(scores))
    return Match(options[index], index, scorer.name)
