"""Mapping a free-text answer onto one of a task's options, with the rule that decided it.

Rules, in order: exact string; light normalisation (case, whitespace, sentence punctuation and
quotes at the ends); SQuAD normalisation (articles kept when they are the whole text, so the
option "A" survives); unique token-F1 argmax; then an optional similarity plugin (BERTScore, see
`bertscore.py`). A rule that fits several *different* options is ambiguous: "+1." must not become
"-1" because SQuAD normalisation deletes signs. An empty answer matches nothing unless
`faithful=True`, which reproduces the original's BERTScore behaviour (empty -> option 0).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Protocol

from t5x_like.metrics.normalization import normalize_for_matching, normalize_light, token_f1

# Values of `Match.rule`.
EXACT = "exact"
CASEFOLD = "casefold"
NORMALIZED = "normalized"
TOKEN_F1 = "token_f1"
FAITHFUL_EMPTY = "faithful_empty"
EMPTY = "empty"
AMBIGUOUS = "ambiguous"
NO_MATCH = "no_match"

_KEY_RULES: tuple[tuple[str, Callable[[str], str]], ...] = (
    (EXACT, lambda text: text),
    (CASEFOLD, normalize_light),
    (NORMALIZED, normalize_for_matching),
)


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
    """Map `answer` to an option: exact, casefold, normalised, token-F1 argmax, then `scorer`.

    Where the string rules find no single option (ambiguous or no match), `scorer`, when given,
    decides and its `name` is the rule. Duplicate option texts count as one option (first index).
    """
    if not options:
        raise ValueError("match_option: the task has no options to match against")
    if not answer.strip():
        return Match(options[0], 0, FAITHFUL_EMPTY) if faithful else Match(None, None, EMPTY)
    for rule, key in _KEY_RULES:
        answer_key = key(answer)
        candidates = [i for i, option in enumerate(options) if answer_key and key(option) == answer_key]
        if candidates:
            return _single_option(candidates, options, rule, answer, scorer)
    normalized = normalize_for_matching(answer).split()
    f1s = [token_f1(normalized, normalize_for_matching(option).split()) for option in options]
    best = max(f1s)
    if best == 0:
        return _fallback(NO_MATCH, answer, options, scorer)
    return _single_option([i for i, f1 in enumerate(f1s) if f1 == best], options, TOKEN_F1, answer, scorer)


def _single_option(candidates: list[int], options: Sequence[str], rule: str, answer: str,
                   scorer: OptionScorer | None) -> Match:
    """The match when every candidate carries the same option text, else ambiguous."""
    if len({options[i] for i in candidates}) == 1:
        return Match(options[candidates[0]], candidates[0], rule)
    return _fallback(AMBIGUOUS, answer, options, scorer)


def _fallback(rule: str, answer: str, options: Sequence[str], scorer: OptionScorer | None) -> Match:
    """The scorer's argmax (ties -> lowest index) when a scorer is given, else no option."""
    if scorer is None:
        return Match(None, None, rule)
    scores = list(scorer(answer, options))
    if len(scores) != len(options):
        raise ValueError(f"scorer {scorer.name!r} returned {len(scores)} scores for {len(options)} options")
    index = scores.index(max(scores))
    return Match(options[index], index, scorer.name)
