"""Evaluation metrics: answer extraction, option matching, task metrics, log-likelihood ranking.

    extraction.py     extract_answer (the paper's tuned / base rules), map_letter_answer (adv)
    matching.py       match_option -> Match(option, index, rule)
    bertscore.py      optional BERTScore OptionScorer plugin (needs `bert-score` + a local model)
    normalization.py  official SQuAD / TriviaQA normalisation, token F1
    scores.py         compute_metric / primary_score over the whole test set
    ranking.py        lm-eval acc / acc_norm from per-option log-likelihoods
"""
from t5x_like.metrics.extraction import ANSWER_MARKER, extract_answer, map_letter_answer
from t5x_like.metrics.matching import Match, OptionScorer, match_option
from t5x_like.metrics.normalization import normalize_squad, normalize_triviaqa, token_f1
from t5x_like.metrics.ranking import Ranking, rank_options, ranking_accuracy
from t5x_like.metrics.scores import (METRICS, MetricSpec, compute_metric, metric_spec, parse_score,
                                     primary_score)

__all__ = [
    "ANSWER_MARKER", "METRICS", "Match", "MetricSpec", "OptionScorer", "Ranking", "compute_metric",
    "extract_answer", "map_letter_answer", "match_option", "metric_spec", "normalize_squad",
    "normalize_triviaqa", "parse_score", "primary_score", "rank_options", "ranking_accuracy", "token_f1",
]
