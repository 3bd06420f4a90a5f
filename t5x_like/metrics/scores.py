"""Task metrics, computed once over the whole test set (never averaged over batches).

Every metric is on a 0-100 scale except the raw edit distances (words). `compute_metric`
dispatches on the task registry's metric name; `primary_score` reduces a metric dict to the one
number in [0, 100] used by the analysis.
"""
from __future__ import annotations

import dataclasses
import math
import re
import statistics
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

import editdistance
import numpy as np
import sacrebleu
from rouge_score import rouge_scorer
from scipy import stats

from t5x_like.metrics.normalization import normalize_squad, normalize_triviaqa, token_f1

Prediction = str | None  # None: no answer / no option matched (always wrong)
Reference = str | Sequence[str]  # one gold string, or every acceptable gold string
References = tuple[str, ...]

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")
UNMATCHED_LABEL = "<unmatched>"  # the MCC class of predictions that matched no option
STSB_RANGE = (0.0, 5.0)
FAITHFUL_STSB_UNPARSED = 9.0  # the original's value for an answer that is not a float
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)")


def accuracy(predictions: Sequence[Prediction], references: Sequence[References]) -> dict[str, float]:
    """100 x the fraction of predictions equal (exact string) to one of their references."""
    hits = [p is not None and p in refs for p, refs in zip(predictions, references)]
    return {"accuracy": 100.0 * float(np.mean(hits))}


def matthews_corr(predictions: Sequence[Prediction], references: Sequence[References]) -> dict[str, float]:
    """100 x the multi-class Matthews correlation (Gorodkin's R_K, as sklearn); 0 when undefined.

    Predictions that matched no option form their own class `UNMATCHED_LABEL`.
    """
    truth = [_single(refs, "matthews_corr") for refs in references]
    pred = [UNMATCHED_LABEL if p is None else p for p in predictions]
    n = len(truth)
    correct = sum(t == p for t, p in zip(truth, pred))
    true_counts, pred_counts = Counter(truth), Counter(pred)
    labels = set(true_counts) | set(pred_counts)
    covariance = correct * n - sum(true_counts[k] * pred_counts[k] for k in labels)
    variance_pred = n * n - sum(c * c for c in pred_counts.values())
    variance_true = n * n - sum(c * c for c in true_counts.values())
    if variance_pred == 0 or variance_true == 0:
        return {"matthews_corr": 0.0}
    return {"matthews_corr": 100.0 * covariance / math.sqrt(variance_pred * variance_true)}


def parse_score(text: Prediction, *, faithful: bool = False) -> float | None:
    """A regression answer (STS-B) as a number; None when it holds none.

    Fixed: the first number in the text, clipped to `STSB_RANGE`. Faithful: `float(text)`, and
    `FAITHFUL_STSB_UNPARSED` (9.0) when that fails, as the original did.
    """
    if faithful:
        try:
            return float(text)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return FAITHFUL_STSB_UNPARSED
    found = _NUMBER.search(text or "")
    if found is None:
        return None
    return min(max(float(found.group()), STSB_RANGE[0]), STSB_RANGE[1])


def pearson_spearman(predictions: Sequence[Prediction], references: Sequence[References],
                     *, faithful: bool = False) -> dict[str, float]:
    """100 x Pearson and Spearman correlation of parsed predictions with the gold scores.

    Unparseable answers count as the midpoint of `STSB_RANGE` (no information; faithful: 9.0);
    their number is reported as `num_unparsed`. A constant side makes a correlation NaN.
    """
    gold = np.array([float(_single(refs, "pearson_spearman")) for refs in references])
    parsed = [parse_score(p, faithful=faithful) for p in predictions]
    midpoint = sum(STSB_RANGE) / 2
    values = np.array([midpoint if v is None else v for v in parsed])
    if np.ptp(values) == 0 or np.ptp(gold) == 0:
        pearson = spearman = math.nan
    else:
        pearson = float(stats.pearsonr(values, gold).statistic)
        spearman = float(stats.spearmanr(values, gold).statistic)
    return {"pearson": 100.0 * pearson, "spearman": 100.0 * spearman,
            "num_unparsed": float(sum(v is None for v in parsed))}


def _em_f1(predictions: Sequence[Prediction], references: Sequence[References],
           normalize: Callable[[str], str]) -> dict[str, float]:
    """100 x mean over items of the best exact match and best token F1 over all references."""
    em, f1 = [], []
    for prediction, refs in zip(predictions, references):
        pred = normalize(prediction or "")
        golds = [normalize(ref) for ref in refs]
        em.append(max(float(pred == gold) for gold in golds))
        f1.append(max(token_f1(pred.split(), gold.split()) for gold in golds))
    return {"em": 100.0 * float(np.mean(em)), "f1": 100.0 * float(np.mean(f1))}


def squad_em_f1(predictions: Sequence[Prediction], references: Sequence[References]) -> dict[str, float]:
    """SQuAD exact match and F1 (official normalisation), max over all references."""
    return _em_f1(predictions, references, normalize_squad)


def triviaqa_em_f1(predictions: Sequence[Prediction], references: Sequence[References]) -> dict[str, float]:
    """TriviaQA exact match and F1 (official normalisation), max over all aliases."""
    return _em_f1(predictions, references, normalize_triviaqa)


def _prepare_rouge_text(text: str) -> str:
    """T5's sentence split for ROUGE-Lsum: " . " ends a sentence; newlines already do."""
    return text.replace(" . ", " .\n")


def rouge(predictions: Sequence[Prediction], references: Sequence[References]) -> dict[str, float]:
    """100 x mean F-measure of ROUGE-1/2/L/Lsum (rouge-score, default tokenizer, no stemming).

    Deterministic mean over items (no bootstrap); several references: the best per type
    (`score_multi`).
    """
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=False)
    totals = dict.fromkeys(ROUGE_TYPES, 0.0)
    for prediction, refs in zip(predictions, references):
        pred = _prepare_rouge_text(prediction or "")
        targets = [_prepare_rouge_text(ref) for ref in refs]
        scores = scorer.score(targets[0], pred) if len(targets) == 1 else scorer.score_multi(targets, pred)
        for key in ROUGE_TYPES:
            totals[key] += scores[key].fmeasure
    return {key: 100.0 * total / len(predictions) for key, total in totals.items()}


def bleu(predictions: Sequence[Prediction], references: Sequence[References]) -> dict[str, float]:
    """sacreBLEU corpus BLEU, `intl` tokenizer and exp smoothing (as T5 and the original)."""
    counts = {len(refs) for refs in references}
    if len(counts) != 1:
        raise ValueError(f"bleu: every item needs the same number of references, got counts {sorted(counts)}")
    streams = [list(stream) for stream in zip(*references)]
    hypotheses = [p or "" for p in predictions]
    result = sacrebleu.corpus_bleu(hypotheses, streams, tokenize="intl", smooth_method="exp")
    return {"bleu": float(result.score)}


def edit_distance(predictions: Sequence[Prediction], references: Sequence[References]) -> dict[str, float]:
    """Word-level Levenshtein distance (closest reference): mean/median/min/max/sum, plus the
    corpus similarity 100 x (1 - sum distance / sum max(len pred, len ref))."""
    distances, lengths = [], []
    for prediction, refs in zip(predictions, references):
        words = (prediction or "").split()
        best = min(((editdistance.eval(words, ref.split()), ref.split()) for ref in refs),
                   key=lambda pair: pair[0])
        distances.append(best[0])
        lengths.append(max(len(words), len(best[1])))
    total_length = sum(lengths)
    similarity = 100.0 if total_length == 0 else 100.0 * (1 - sum(distances) / total_length)
    return {"edit_distance_mean": float(np.mean(distances)),
            "edit_distance_median": float(statistics.median(distances)),
            "edit_distance_min": float(min(distances)), "edit_distance_max": float(max(distances)),
            "edit_distance_sum": float(sum(distances)), "edit_similarity": similarity}


def _correlation_primary(values: Sequence[float]) -> float:
    """Map correlations x100 in [-100, 100] linearly to [0, 100] (chance 0 -> 50; NaN -> 50)."""
    finite = [0.0 if math.isnan(v) else v for v in values]
    return 50.0 + float(np.mean(finite)) / 2


@dataclasses.dataclass(frozen=True)
class MetricSpec:
    """One registry metric: how to compute it and how to reduce it to a primary score."""

    compute: Callable[..., dict[str, float]]
    primary: Callable[[Mapping[str, float]], float]
    matches_options: bool  # predictions are matched option texts (None = wrong)
    takes_faithful: bool = False


METRICS: dict[str, MetricSpec] = {
    "accuracy": MetricSpec(accuracy, lambda m: m["accuracy"], matches_options=True),
    "matthews_corr": MetricSpec(matthews_corr, lambda m: _correlation_primary([m["matthews_corr"]]),
                                matches_options=True),
    "pearson_spearman": MetricSpec(
        pearson_spearman, lambda m: _correlation_primary([m["pearson"], m["spearman"]]),
        matches_options=False, takes_faithful=True),
    "squad_em_f1": MetricSpec(squad_em_f1, lambda m: m["f1"], matches_options=False),
    "triviaqa_em_f1": MetricSpec(triviaqa_em_f1, lambda m: m["f1"], matches_options=False),
    "rouge": MetricSpec(rouge, lambda m: m["rougeL"], matches_options=False),
    "bleu": MetricSpec(bleu, lambda m: m["bleu"], matches_options=False),
    "edit_distance": MetricSpec(edit_distance, lambda m: m["edit_similarity"], matches_options=False),
}


def metric_spec(name: str) -> MetricSpec:
    """The registry entry for `name`, or a ValueError listing the known names."""
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; known metrics: {', '.join(sorted(METRICS))}")
    return METRICS[name]


def _single(refs: References, metric: str) -> str:
    """The one reference of a single-reference metric."""
    if len(refs) != 1:
        raise ValueError(f"{metric}: expects exactly one reference per item, got {len(refs)}: {refs!r}")
    return refs[0]


def _as_references(reference: Reference) -> References:
    """One item's references as a non-empty tuple of strings."""
    refs = (reference,) if isinstance(reference, str) else tuple(reference)
    if not refs or not all(isinstance(ref, str) for ref in refs):
        raise ValueError(f"each reference must be a string or a non-empty sequence of strings, "
                         f"got {reference!r}")
    return refs


def compute_metric(name: str, predictions: Sequence[Prediction], references: Sequence[Reference],
                   *, faithful: bool = False) -> dict[str, float]:
    """The metric `name` over the whole test set: one call with every item, never per batch.

    `faithful` only changes `pearson_spearman` (unparseable answer -> 9.0, as the original).
    """
    spec = metric_spec(name)
    if len(predictions) != len(references):
        raise ValueError(f"{name}: {len(predictions)} predictions but {len(references)} references")
    if not predictions:
        raise ValueError(f"{name}: no items to score")
    refs = [_as_references(reference) for reference in references]
    if spec.takes_faithful:
        return spec.compute(list(predictions), refs, faithful=faithful)
    return spec.compute(list(predictions), refs)


def primary_score(name: str, metrics: Mapping[str, float]) -> float:
    """The task's single number in [0, 100] for the analysis (see docs/evaluation.md)."""
    return min(max(metric_spec(name).primary(metrics), 0.0), 100.0)
