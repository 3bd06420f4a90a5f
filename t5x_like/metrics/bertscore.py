"""Optional BERTScore option-matching plugin (the original's `bertscore.py` procedure).

Used only when the `bert-score` package is installed and a local model directory is given
(the Hugging Face hub may be unreachable). The package imports PyTorch; it is imported lazily,
here only, so `t5x_like` itself never needs either. Settings match the original: roberta-large,
layer 17, no idf, no baseline rescaling, F1 as the score.
"""
from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence

from t5x_like.errors import UserError

ROBERTA_LARGE_LAYER = 17


class PluginUnavailable(UserError, RuntimeError):
    """The BERTScore plugin cannot run here (package or local model missing)."""


def bertscore_unavailable_reason(model_dir: str | os.PathLike[str] | None) -> str | None:
    """Why the plugin cannot run with `model_dir` (None when it can)."""
    if importlib.util.find_spec("bert_score") is None:
        return ("BERTScore plugin unavailable: the `bert-score` package is not installed "
                "(pip install bert-score; it pulls in PyTorch). Option matching falls back to "
                "exact / normalized / token-F1 rules.")
    if model_dir is None or not os.path.isfile(os.path.join(model_dir, "config.json")):
        return (f"BERTScore plugin unavailable: {model_dir!r} is not a local Hugging Face model "
                "directory with a config.json (e.g. a saved copy of roberta-large).")
    return None


class BertScoreScorer:
    """An `OptionScorer`: BERTScore F1 of the answer against each option."""

    name = "bertscore"

    def __init__(self, model_dir: str | os.PathLike[str], *, num_layers: int = ROBERTA_LARGE_LAYER,
                 batch_size: int = 64):
        reason = bertscore_unavailable_reason(model_dir)
        if reason is not None:
            raise PluginUnavailable(reason)
        import bert_score  # noqa: PLC0415 (optional, heavy, imports torch)

        self._scorer = bert_score.BERTScorer(
            model_type=os.fspath(model_dir), num_layers=num_layers, batch_size=batch_size,
            idf=False, rescale_with_baseline=False)

    def __call__(self, answer: str, options: Sequence[str]) -> list[float]:
        """BERTScore F1 of `answer` against every option."""
        _, _, f1 = self._scorer.score([answer] * len(options), list(options))
        return [float(value) for value in f1]
