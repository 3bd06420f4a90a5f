"""Per-item records: generation with the paper's answer extraction and option matching ("generate"),
or lm-eval acc / acc_norm ranking of the options ("loglik"; tasks without options are generated)."""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from t5x_like import metrics
from t5x_like.data import formats
from t5x_like.decoding import Generation, GenerationRequest
from t5x_like.engine import Engine
from t5x_like.evaluation.config import EvalOptions
from t5x_like.evaluation.contexts import (BASE_STOP, MARKER, option_requests, prompt_hash, ranking_context,
                                          stop_strings, with_marker)
from t5x_like.metrics.normalization import normalize_squad
from t5x_like.settings import Setting


@dataclasses.dataclass(frozen=True)
class TaskInfo:
    """What scoring needs to know about a task: registry metric, cluster and category."""

    name: str
    metric: str
    cluster: str | None
    category: str


def has_options(row: Mapping[str, Any], metric: str) -> bool:
    """Whether an item is scored by matching/ranking its options (classification, multiple choice)."""
    return bool(row["options"]) and metrics.metric_spec(metric).matches_options


def references(row: Mapping[str, Any]) -> list[str]:
    """Every gold answer of an item."""
    return list(row["references"]) or [row["label"]]


def is_correct(row: Mapping[str, Any], prediction: str | None, options_task: bool) -> bool:
    """Matched option is a gold answer; for generative tasks, SQuAD-normalised exact match."""
    if prediction is None:
        return False
    if options_task:
        return prediction in references(row)
    return any(normalize_squad(prediction) == normalize_squad(ref) for ref in references(row))


def base_record(setting: Setting, row: Mapping[str, Any], model_input: str, mode: str) -> dict[str, Any]:
    """Fields every record has: identity, input hash, gold answers and options."""
    return {"id": row["id"], "task": row["task"], "setting": setting.name, "format": setting.format,
            "mode": mode, "prompt_sha256": prompt_hash(model_input), "label": row["label"],
            "references": references(row), "options": list(row["options"])}


def answer_fields(setting: Setting, row: Mapping[str, Any], raw: str, options_task: bool, faithful: bool,
                  scorer: metrics.OptionScorer | None) -> dict[str, Any]:
    """Extraction and option matching of one generated response."""
    answer = metrics.extract_answer(raw, setting.extraction,
                                    lettered_options=row["options"] if setting.lettered else None)
    if not options_task:
        return {"raw_output": raw, "answer": answer, "matched_option": None, "match_rule": None,
                "correct": is_correct(row, answer, False)}
    match = metrics.match_option(answer, row["options"], faithful=faithful, scorer=scorer)
    return {"raw_output": raw, "answer": answer, "matched_option": match.option, "match_rule": match.rule,
            "correct": is_correct(row, match.option, True)}


def finish_fields(gen: Generation) -> dict[str, Any]:
    """How generation ended: reason, new tokens, whether the prompt was left-truncated."""
    return {"finish_reason": gen.finish_reason, "num_new_tokens": gen.num_tokens, "truncated": gen.truncated}


def generate_texts(engine: Engine, inputs: Sequence[str], max_new_tokens: int, stops: tuple[str, ...]
                   ) -> list[Generation]:
    """Greedy generations; items cut at a base-model newline before any text are regenerated without it.

    Base extraction takes the first non-empty line, so stopping at the first newline changes nothing
    once that line has text; when the model opens with a newline, the item is generated again with
    only the other stop strings (the same greedy text as an unstopped run up to its first line).
    """
    gens = engine.generate([GenerationRequest(x, max_new_tokens, stops) for x in inputs])
    if BASE_STOP not in stops:
        return gens
    retry = [i for i, g in enumerate(gens) if g.finish_reason == "stop" and not g.text.strip()]
    if retry:
        others = tuple(s for s in stops if s != BASE_STOP)
        for i, gen in zip(retry, engine.generate([GenerationRequest(inputs[i], max_new_tokens, others)
                                                  for i in retry])):
            gens[i] = gen
    return gens


def generate_records(setting: Setting, rows: Sequence[Mapping[str, Any]], inputs: Sequence[str],
                     engine: Engine, task: TaskInfo, opts: "EvalOptions") -> list[dict[str, Any]]:
    """Generation mode for a shard: greedy decoding, the paper's extraction, option matching."""
    max_new = opts.max_new_tokens(setting)
    gens = generate_texts(engine, inputs, max_new, stop_strings(setting, opts.stop_strings))
    records = []
    for row, model_input, gen in zip(rows, inputs, gens):
        options_task = has_options(row, task.metric)
        records.append({**base_record(setting, row, model_input, "generate"),
                        **answer_fields(setting, row, gen.text, options_task, opts.faithful, opts.scorer),
                        **finish_fields(gen)})
    return records


def samplegen_responses(engine: Engine, prompts: Sequence[str], max_new_tokens: int
                        ) -> list[tuple[str, Generation, bool]]:
    """SampleGen-D responses generated through their first "Answer Solution:" (response, gen, forced).

    `forced` = the model never wrote the marker; the response then gets it appended on a new line.
    """
    gens = engine.generate([GenerationRequest(p, max_new_tokens, (MARKER, formats.END_EXAMPLES)) for p in prompts])
    out = []
    for gen in gens:
        wrote_marker = gen.finish_reason == "stop" and MARKER in engine.tokenizer.decode(gen.tokens)
        response = gen.text + MARKER if wrote_marker else with_marker(gen.text)
        out.append((response, gen, not wrote_marker))
    return out


def loglik_records(setting: Setting, rows: Sequence[Mapping[str, Any]], inputs: Sequence[str],
                   engine: Engine, task: TaskInfo, opts: "EvalOptions") -> list[dict[str, Any]]:
    """Log-likelihood mode for a shard: option items are ranked, the others generated."""
    ranked = [i for i, row in enumerate(rows) if has_options(row, task.metric)]
    generated = sorted(set(range(len(rows))) - set(ranked))
    records: list[dict[str, Any] | None] = [None] * len(rows)
    if generated:
        for i, rec in zip(generated, generate_records(setting, [rows[i] for i in generated],
                                                      [inputs[i] for i in generated], engine, task, opts)):
            records[i] = rec
    if not ranked:
        return records  # type: ignore[return-value]
    extra: dict[int, dict[str, Any]] = {i: {"raw_output": ""} for i in ranked}
    contexts = {i: ranking_context(setting, inputs[i]) for i in ranked}
    if setting.model == "samplegen":
        responses = samplegen_responses(engine, [inputs[i] for i in ranked], opts.max_new_tokens(setting))
        for i, (response, gen, forced) in zip(ranked, responses):
            contexts[i] = inputs[i] + response
            extra[i] = {"raw_output": response, "forced_marker": forced, **finish_fields(gen)}
    elif setting.source is not None:
        for i in ranked:
            extra[i]["forced_marker"] = contexts[i] != inputs[i]
    requests = [r for i in ranked for r in option_requests(contexts[i], rows[i]["options"])]
    results = iter(engine.score(requests))
    for i in ranked:
        row, options = rows[i], list(rows[i]["options"])
        scored = [next(results) for _ in options]
        ranking = metrics.rank_options([s.logprob for s in scored], options)
        chosen, chosen_norm = options[ranking.acc_index], options[ranking.acc_norm_index]
        records[i] = {**base_record(setting, row, inputs[i], "loglik"), **extra[i],
                      "answer": chosen, "matched_option": chosen, "match_rule": "loglik_acc",
                      "correct": is_correct(row, chosen, True),
                      "acc_norm_option": chosen_norm, "acc_norm_correct": is_correct(row, chosen_norm, True),
                      "logprobs": [s.logprob for s in scored], "is_greedy": [s.is_greedy for s in scored],
                      "option_tokens": [s.num_tokens for s in scored],
                      "truncated": extra[i].get("truncated", False) or any(s.truncated for s in scored)}
    return records  # type: ignore[return-value]
