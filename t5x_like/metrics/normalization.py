"""Answer normalisation and token overlap shared by option matching and the QA metrics.

`normalize_squad` follows the official SQuAD v1.1/v2.0 evaluation script; `normalize_triviaqa`
follows the official TriviaQA script (punctuation and `_` become spaces instead of vanishing).
"""
from __future__ import annotations

import collections
import re
import string

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_SQUAD_PUNCTUATION = frozenset(string.punctuation)
_TRIVIAQA_PUNCTUATION = frozenset(string.punctuation + "‘’´`_")
_NUMBER_PUNCTUATION = re.compile(r"[+-](?=\d)|(?<=\d)\.(?=\d)")  # signs, decimal points
_EDGE_PUNCTUATION = ".,;:!?*\"'`‘’“”"  # never "+", "-": they tell "+1" from "-1"


def _normalize(text: str, punctuation: frozenset[str], replacement: str, *, drop_articles: bool = True,
               keep: re.Pattern[str] | None = None) -> str:
    """Lower-case, replace punctuation (except at `keep` matches), drop articles, collapse spaces.

    The order is the SQuAD script's.
    """
    text = text.lower()
    kept = {found.start() for found in keep.finditer(text)} if keep else set()
    text = "".join(replacement if ch in punctuation and i not in kept else ch for i, ch in enumerate(text))
    if drop_articles:
        text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def normalize_squad(text: str) -> str:
    """The official SQuAD `normalize_answer`: lower, delete punctuation and articles, fix spaces."""
    return _normalize(text, _SQUAD_PUNCTUATION, "")


def normalize_triviaqa(text: str) -> str:
    """The official TriviaQA `normalize_answer`: like SQuAD, but punctuation (and `_`, ‘’´`) -> space."""
    return _normalize(text, _TRIVIAQA_PUNCTUATION, " ")


def normalize_light(text: str) -> str:
    """Case-folded, whitespace collapsed, sentence punctuation and quotes stripped at the ends only."""
    return " ".join(text.casefold().split()).strip(_EDGE_PUNCTUATION).strip()


def normalize_for_matching(text: str) -> str:
    """SQuAD normalisation for option matching: number signs and decimal points are kept ("-1" is
    not "1", "12.5" not "125"), and a text made only of articles keeps them (the option "A")."""
    return (_normalize(text, _SQUAD_PUNCTUATION, "", keep=_NUMBER_PUNCTUATION)
            or _normalize(text, _SQUAD_PUNCTUATION, "", drop_articles=False, keep=_NUMBER_PUNCTUATION))


def token_f1(prediction_tokens: list[str], reference_tokens: list[str]) -> float:
    """Bag-of-tokens F1 in [0, 1] (SQuAD v2 convention: two empty token lists score 1, one empty 0)."""
    if not prediction_tokens or not reference_tokens:
        return float(prediction_tokens == reference_tokens)
    common = collections.Counter(prediction_tokens) & collections.Counter(reference_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(prediction_tokens)
    recall = num_same / len(reference_tokens)
    return 2 * precision * recall / (precision + recall)
