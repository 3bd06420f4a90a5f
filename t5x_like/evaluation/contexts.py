"""What the model reads per item: prompts, ranking contexts, stop strings (docs/evaluation.md,
"Scoring contexts")."""
from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from t5x_like.data import formats
from t5x_like.data import pipeline
from t5x_like.scoring import ScoreRequest
from t5x_like.settings import Setting


MARKER = formats.ANSWER_PREFIX  # "Answer Solution:"


BASE_ANSWER_CUE = "Answer:"  # base_d ranking context cue (base extraction also accepts an "Answer:" prefix)


BASE_STOP = "\n"  # base models: the answer is the first non-empty line (see `generate_records`)


def stop_strings(setting: Setting, enabled: bool = True) -> tuple[str, ...]:
    """Stop strings that cannot change the extracted answer: END_EXAMPLES, and for base models the
    newline that ends the first line (retried without it when that line is blank, see generate_records)."""
    if not enabled:
        return ()
    return (formats.END_EXAMPLES,) if setting.extraction == "tuned" else (BASE_STOP, formats.END_EXAMPLES)


def with_marker(text: str) -> str:
    """`text` ending in "Answer Solution:" (appended on a new line when the model never wrote it)."""
    return text if text.rstrip().endswith(MARKER) else f"{text}\n{MARKER}"


def ranking_context(setting: Setting, model_input: str) -> str:
    """The context whose continuations " " + option are ranked (docs/evaluation.md, "Scoring contexts").

    flan_d: the prompt + "\nAnswer Solution:" (the tuned target's prefix); samplegen_d: the prompt +
    the generated response through its first marker (see `loglik_records`); samplegen_pipeline: the
    pipeline input (ends in the marker); gold_pipeline: the prompt (ends in the marker); base_d: the
    bare instruction + "\nAnswer:" (it ends with the options list, after which an option is no answer).
    """
    if setting.model == "flan":
        return f"{model_input}\n{MARKER}"
    if setting.source is not None:
        return with_marker(model_input)
    if pipeline.FORMATS[setting.format].kind == "base_d":
        return f"{model_input}\n{BASE_ANSWER_CUE}"
    return model_input


def option_requests(context: str, options: Sequence[str]) -> list[ScoreRequest]:
    """lm-eval multiple-choice requests: the target delimiter " " before each option."""
    return [ScoreRequest(context, f" {option}") for option in options]


def prompt_hash(text: str) -> str:
    """sha256 of the exact model input, so a prediction can be traced to its prompt."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def model_inputs(setting: Setting, rows: Sequence[Mapping[str, Any]],
                 sources: Mapping[str, dict[str, Any]] | None) -> list[str]:
    """What the model reads per item: the prompt, or the SampleGen Pipeline input of the source response."""
    if setting.source is None:
        return [r["prompt"] for r in rows]
    return [formats.samplegen_pipeline_input(sources[r["id"]]["raw_output"]) for r in rows]  # type: ignore[index]
