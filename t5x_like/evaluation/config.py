"""The eval config section: its checks, its error type and the knobs that change per-item records."""
from __future__ import annotations

import dataclasses

import ml_collections

from t5x_like import metrics
from t5x_like.data import mixtures, pipeline
from t5x_like.errors import UserError
from t5x_like.settings import Setting


MODES = ("generate", "loglik")


class EvalConfigError(UserError, ValueError):
    """The eval config cannot run as given; raised before any model is loaded."""


@dataclasses.dataclass(frozen=True)
class EvalOptions:
    """The knobs of the eval config that change per-item records."""

    mode: str
    max_new_tokens_base: int
    max_new_tokens_tuned: int
    stop_strings: bool
    faithful: bool
    scorer: metrics.OptionScorer | None = None

    def max_new_tokens(self, setting: Setting) -> int:
        return self.max_new_tokens_tuned if setting.extraction == "tuned" else self.max_new_tokens_base


def validate(config: ml_collections.ConfigDict) -> None:
    """Checks of the eval section that need no files."""
    e = config.eval
    if e.mode not in MODES:
        raise EvalConfigError(f"--config.eval.mode={e.mode!r}; expected one of {MODES}")
    if e.overlong not in ("truncate", "error"):
        raise EvalConfigError(f"--config.eval.overlong={e.overlong!r}; expected truncate or error")
    if e.shard_size < 1 or e.batch_size < 1 or e.num_test < 0:
        raise EvalConfigError("eval.shard_size and eval.batch_size must be >= 1 and eval.num_test >= 0")
    if not pipeline.parse_names(e.settings):
        raise EvalConfigError("--config.eval.settings is empty")
    if e.setup not in mixtures.SETUPS:
        raise EvalConfigError(f"--config.eval.setup={e.setup!r}; expected one of {sorted(mixtures.SETUPS)}")


def option_scorer(config: ml_collections.ConfigDict) -> metrics.OptionScorer | None:
    """The optional BERTScore plugin for option matching (eval.bertscore_model)."""
    if not config.eval.bertscore_model:
        return None
    from t5x_like.metrics.bertscore import BertScoreScorer
    return BertScoreScorer(config.eval.bertscore_model)


def memory_fraction(eval_cfg: ml_collections.ConfigDict) -> float | None:
    """The device-memory fraction engines are checked against before work, or None for no check.

    eval.memory_check: "auto" checks on accelerators only (XLA:CPU's analysis upcasts bf16 and is no
    guide), "on" always, "off" never."""
    mode = eval_cfg.memory_check
    if mode not in ("auto", "on", "off"):
        raise EvalConfigError(f"--config.eval.memory_check={mode!r}; expected auto, on or off")
    import jax

    if mode == "off" or (mode == "auto" and jax.default_backend() == "cpu"):
        return None
    return float(eval_cfg.max_memory_fraction)
