"""Settings x tasks evaluation runner and its resumable results store (docs/evaluation.md, "Runner").

A run evaluates one base model, optionally a FLAN-tuned and a SampleGen-tuned model, on the paired
test items of a prepared data directory (launch.prepare_data) in a list of settings:

  base_d              base model on the bare instruction (base_d format), base extraction
  gold_pipeline       base model continues gold examples + the item's Solution block
  samplegen_pipeline  base model continues the SampleGen-D response of the same item, cut after its
                      first "Answer Solution:" (read from that run's predictions/samplegen_d)
  flan_d              FLAN-tuned model on the flan format, tuned extraction
  samplegen_d         SampleGen-tuned model on the samplegen format, tuned extraction
  <variant format>    a prepared test-format variant (gold_pipeline_unified, flan_adv, ...) run as
                      the setting of its kind; samplegen_pipeline_<style> continues samplegen_<style>

Two scoring modes: "generate" (greedy decoding, answer extraction, option matching) and "loglik"
(lm-eval acc / acc_norm ranking of the options; tasks without options fall back to generation).

Store layout under the run directory (every file written atomically):
  config.json, provenance.json, identity.json    resolved config, versions, what results depend on
  shards/<setting>/<task>/<first item>.jsonl      per-item records, one file per shard of items
  predictions/<setting>/<task>.jsonl              all records of a (setting, task), in data order
  scores.csv, scores.json                         one row per (setting, task); corpus-level metrics
A killed run resumes from its shards; a finished run rerun does nothing.
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ml_collections
from absl import logging

from t5x_like import io_utils, metrics
from t5x_like.data import formats as F
from t5x_like.data import mixtures, pipeline
from t5x_like.decoding import Generation, GenerationRequest
from t5x_like.engine import Engine
from t5x_like.metrics.normalization import normalize_squad
from t5x_like.partitioning import Partitioner, initialize_distributed
from t5x_like.scoring import ScoreRequest

MODES = ("generate", "loglik")
MARKER = F.ANSWER_PREFIX  # "Answer Solution:"
BASE_ANSWER_CUE = "Answer:"  # base_d ranking context cue (base extraction also accepts an "Answer:" prefix)
BASE_STOP = "\n"  # base models: the answer is the first non-empty line (see `generate_records`)
SCORE_COLUMNS = ("model", "adapter", "seed", "setting", "task", "cluster", "category", "seen", "metric",
                 "value", "n", "num_options", "mode")
IDENTITY_KEYS = ("mode", "models", "data_dir", "samplegen_d_run", "max_new_tokens_base", "max_new_tokens_tuned",
                 "stop_strings", "max_length", "dtype", "faithful", "seed", "bertscore_model")


class EvalConfigError(ValueError):
    """The eval config cannot run as given; raised before any model is loaded."""


# --- settings ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Setting:
    """How one setting is evaluated: which data format, which model, which extraction rule."""

    name: str
    format: str  # prepared test-format directory
    model: str  # "base" | "flan" | "samplegen"
    extraction: str  # metrics.extract_answer mode: "base" | "tuned"
    source: str | None = None  # samplegen_pipeline: the setting whose responses it continues

    @property
    def lettered(self) -> bool:
        """adv-style prompts letter their options; answers like "(b)" map back to option text."""
        return pipeline.FORMATS[self.format].bigbench_style == "adv"


MAIN_SETTINGS = {
    "base_d": Setting("base_d", "base_d", "base", "base"),
    "gold_pipeline": Setting("gold_pipeline", "gold_pipeline", "base", "base"),
    "samplegen_pipeline": Setting("samplegen_pipeline", "samplegen", "base", "base", source="samplegen_d"),
    "flan_d": Setting("flan_d", "flan", "flan", "tuned"),
    "samplegen_d": Setting("samplegen_d", "samplegen", "samplegen", "tuned"),
}
_SETTING_OF_KIND = {"base_d": "base_d", "gold_pipeline": "gold_pipeline", "flan": "flan_d", "samplegen": "samplegen_d"}
_MAIN_FORMATS = {s.format for s in MAIN_SETTINGS.values()}
_PIPELINE_PREFIX = "samplegen_pipeline_"


def _variant_settings() -> dict[str, Setting]:
    """Every prepared test-format variant as a setting of its kind, plus pipelines over SampleGen variants."""
    out = {}
    for name, spec in pipeline.FORMATS.items():
        if pipeline.TEST not in spec.splits or name in _MAIN_FORMATS:
            continue
        out[name] = dataclasses.replace(MAIN_SETTINGS[_SETTING_OF_KIND[spec.kind]], name=name, format=name)
        if spec.kind == "samplegen":
            pipe = _PIPELINE_PREFIX + name.removeprefix("samplegen_")
            out[pipe] = dataclasses.replace(MAIN_SETTINGS["samplegen_pipeline"], name=pipe, format=name, source=name)
    return out


SETTINGS = {**MAIN_SETTINGS, **_variant_settings()}


def get_setting(name: str) -> Setting:
    """The setting called `name`; EvalConfigError listing the known names otherwise."""
    if name not in SETTINGS:
        raise EvalConfigError(f"unknown setting {name!r}; known: {', '.join(MAIN_SETTINGS)} and the variants "
                              f"{', '.join(sorted(set(SETTINGS) - set(MAIN_SETTINGS)))}")
    return SETTINGS[name]


def ordered_settings(names: Sequence[str]) -> list[Setting]:
    """The named settings, each SampleGen source before the pipeline that continues its responses."""
    chosen = [get_setting(n) for n in dict.fromkeys(names)]
    sources = [s for s in chosen if any(o.source == s.name for o in chosen)]
    return sources + [s for s in chosen if s not in sources]


# --- requests ------------------------------------------------------------------------------------


def stop_strings(setting: Setting, enabled: bool = True) -> tuple[str, ...]:
    """Stop strings that cannot change the extracted answer: END_EXAMPLES, and for base models the
    newline that ends the first line (retried without it when that line is blank, see generate_records)."""
    if not enabled:
        return ()
    return (F.END_EXAMPLES,) if setting.extraction == "tuned" else (BASE_STOP, F.END_EXAMPLES)


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


def has_options(row: Mapping[str, Any], metric: str) -> bool:
    """Whether an item is scored by matching/ranking its options (classification, multiple choice)."""
    return bool(row["options"]) and metrics.metric_spec(metric).matches_options


# --- per-item records ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TaskInfo:
    """What scoring needs to know about a task: registry metric, cluster and category."""

    name: str
    metric: str
    cluster: str | None
    category: str


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


def generation_fields(gen: Generation) -> dict[str, Any]:
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
                        **generation_fields(gen)})
    return records


def samplegen_responses(engine: Engine, prompts: Sequence[str], max_new_tokens: int
                        ) -> list[tuple[str, Generation, bool]]:
    """SampleGen-D responses generated through their first "Answer Solution:" (response, gen, forced).

    `forced` = the model never wrote the marker; the response then gets it appended on a new line.
    """
    gens = engine.generate([GenerationRequest(p, max_new_tokens, (MARKER, F.END_EXAMPLES)) for p in prompts])
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
            extra[i] = {"raw_output": response, "forced_marker": forced, **generation_fields(gen)}
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


# --- scores --------------------------------------------------------------------------------------


def prediction_of(record: Mapping[str, Any], options_task: bool, key: str = "matched_option") -> str | None:
    """What the task metric compares: the matched option (None = wrong) or the extracted answer."""
    return record[key] if options_task else record["answer"]


def task_metrics(task: TaskInfo, records: Sequence[Mapping[str, Any]], faithful: bool) -> dict[str, float]:
    """The task's metric over every item at once (corpus level); acc_norm variants in loglik mode."""
    options_task = [has_options(r, task.metric) for r in records]
    refs = [r["references"] if len(r["references"]) > 1 else r["references"][0] for r in records]
    preds = [prediction_of(r, o) for r, o in zip(records, options_task)]
    values = metrics.compute_metric(task.metric, preds, refs, faithful=faithful)
    if any(r["mode"] == "loglik" and o for r, o in zip(records, options_task)):
        norm = [r["acc_norm_option"] if r["mode"] == "loglik" and o else p
                for r, o, p in zip(records, options_task, preds)]
        values.update({f"acc_norm_{k}": v for k, v in
                       metrics.compute_metric(task.metric, norm, refs, faithful=faithful).items()})
    return values


@dataclasses.dataclass(frozen=True)
class ScoreRow:
    """One (setting, task) result: the scores.csv columns plus every metric value (scores.json)."""

    row: dict[str, Any]
    metrics: dict[str, float]
    num_truncated: int


def score_row(setting: Setting, task: TaskInfo, records: Sequence[Mapping[str, Any]], *, model: str,
              adapter: str, seed: int, setup: str, mode: str, faithful: bool) -> ScoreRow:
    """The scores.csv row of a (setting, task) from all its records."""
    values = task_metrics(task, records, faithful)
    options = {len(r["options"]) for r in records}
    row = {"model": model, "adapter": adapter, "seed": seed, "setting": setting.name, "task": task.name,
           "cluster": task.cluster or "", "category": task.category, "seen": is_seen(task.name, setup),
           "metric": task.metric, "value": metrics.primary_score(task.metric, values), "n": len(records),
           "num_options": options.pop() if len(options) == 1 else "", "mode": mode}
    return ScoreRow(row, values, sum(bool(r.get("truncated")) for r in records))


def is_seen(task: str, setup: str) -> bool:
    """Whether the tuned models of `setup` trained on `task` (tasks outside the registry: False)."""
    try:
        return mixtures.is_seen(task, setup)
    except ValueError:
        return False


def scores_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """scores.csv text: SCORE_COLUMNS, one line per (setting, task)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SCORE_COLUMNS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow(r)
    return buffer.getvalue()


# --- the run -------------------------------------------------------------------------------------


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


@dataclasses.dataclass(frozen=True)
class Unit:
    """One (setting, task) of a run: its items (data order) and their shards."""

    setting: Setting
    task: TaskInfo
    rows: tuple[dict[str, Any], ...]
    shard_size: int

    @property
    def key(self) -> str:
        return f"{self.setting.name}/{self.task.name}"

    def shards(self) -> list[tuple[int, tuple[dict[str, Any], ...]]]:
        """(first item index, rows) of every shard."""
        return [(start, self.rows[start:start + self.shard_size]) for start in range(0, len(self.rows), self.shard_size)]


def shard_path(workdir: str, unit: Unit, start: int) -> str:
    return os.path.join(workdir, "shards", unit.setting.name, unit.task.name, f"{start:07d}.jsonl")


def predictions_path(workdir: str, setting: str, task: str) -> str:
    """`<workdir>/predictions/<setting>/<task>.jsonl` (task names with "/" nest)."""
    return os.path.join(workdir, "predictions", setting, f"{task}.jsonl")


def read_shard(path: str, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]] | None:
    """The shard's records if it exists and holds exactly `rows`' ids in order, else None (recompute)."""
    if not os.path.isfile(path):
        return None
    records = io_utils.read_jsonl(path)
    if [r["id"] for r in records] != [r["id"] for r in rows]:
        logging.warning("%s holds other items than this run's shard (data or num_test changed); recomputing", path)
        return None
    return records


def data_dir_of(config: ml_collections.ConfigDict, workdir: str) -> str:
    """eval.data_dir, else <workdir>/data; it must hold a prepared manifest."""
    data_dir = config.eval.data_dir or os.path.join(workdir, "data")
    if not os.path.isfile(os.path.join(data_dir, pipeline.MANIFEST)):
        raise EvalConfigError(
            f"no prepared data at {data_dir} ({pipeline.MANIFEST} missing); run python -m launch.prepare_data "
            f"--config=configs/data/offline.py --output_dir={data_dir} (with the formats of your settings) or set "
            f"--config.eval.data_dir")
    return data_dir


def task_infos(manifest: Mapping[str, Any], names: str) -> list[TaskInfo]:
    """The selected tasks ("all" = every task of the manifest), with metric / cluster / category."""
    prepared = manifest["tasks"]
    wanted = sorted(prepared) if names.strip() == "all" else pipeline.parse_names(names)
    unknown = [t for t in wanted if t not in prepared]
    if unknown or not wanted:
        raise EvalConfigError(f"tasks {unknown or wanted} are not in the prepared data (manifest tasks: "
                              f"{', '.join(sorted(prepared))}); fix --config.eval.tasks or prepare them")
    return [TaskInfo(t, prepared[t]["metric"], prepared[t]["cluster"], prepared[t]["category"]) for t in wanted]


def load_rows(data_dir: str, setting: Setting, task: str, num_test: int) -> tuple[dict[str, Any], ...]:
    """The first `num_test` (0 = all) test items of (setting's format, task); a missing file is an error."""
    path = pipeline.split_path(data_dir, setting.format, task, pipeline.TEST)
    if not path.is_file():
        raise EvalConfigError(f"setting {setting.name}: no prepared data {path}; prepare format {setting.format!r} "
                              f"for task {task!r} (launch.prepare_data --config.formats=...)")
    rows = io_utils.read_jsonl(str(path))
    return tuple(rows[:num_test] if num_test else rows)


def check_pairing(units: Sequence[Unit]) -> None:
    """Every setting of a task must score the same item ids in the same order."""
    by_task: dict[str, Unit] = {}
    for unit in units:
        first = by_task.setdefault(unit.task.name, unit)
        if [r["id"] for r in unit.rows] != [r["id"] for r in first.rows]:
            raise EvalConfigError(f"task {unit.task.name}: settings {first.setting.name} and {unit.setting.name} have "
                                  f"different test items (formats {first.setting.format} / {unit.setting.format} "
                                  f"were prepared with different data configs); prepare them in one run")


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Where a role's weights come from: an HF dir, or a PEFT adapter dir over the base model."""

    role: str
    path: str
    adapter_over: str | None = None  # base HF dir when `path` is an adapter


def tuned_model_spec(role: str, path: str, base_dir: Callable[[], str]) -> ModelSpec:
    """A tuned model given as a merged HF dir (config.json) or a LoRA adapter dir (adapter_config.json)."""
    if os.path.isfile(os.path.join(path, "config.json")):
        return ModelSpec(role, os.path.abspath(path))
    if os.path.isfile(os.path.join(path, "adapter_config.json")):
        return ModelSpec(role, os.path.abspath(path), adapter_over=base_dir())
    raise EvalConfigError(f"--config.eval.{role}_model={path!r}: neither an HF model dir (config.json) nor a "
                          f"LoRA adapter dir (adapter_config.json); point it at the training export "
                          f"(<export_dir>/model or <export_dir>/adapter)")


class Engines:
    """One Engine per model role on the run's mesh, loaded on first use (a finished run loads nothing).

    Every role loads with the model section's numerics (dtype, param_dtype, remat, attention impl);
    with `max_memory_fraction`, each engine's largest programs are compiled and checked first.
    """

    def __init__(self, specs: Mapping[str, ModelSpec], *, model_section: ml_collections.ConfigDict,
                 partitioner: Partitioner, options: Mapping[str, Any], max_new_tokens: Mapping[str, int | None],
                 max_memory_fraction: float | None, preloaded: Mapping[str, Engine] | None = None):
        self.specs, self.model_section, self.partitioner = dict(specs), model_section, partitioner
        self.options, self.max_new_tokens, self.max_memory_fraction = dict(options), dict(max_new_tokens), max_memory_fraction
        self._engines: dict[str, Engine] = dict(preloaded or {})

    def get(self, role: str) -> Engine:
        if role not in self._engines:
            from t5x_like.models import sources

            spec = self.specs[role]
            model_dir = spec.adapter_over or spec.path
            engine = Engine.load(model_dir, sources.model_config(self.model_section, model_dir), self.partitioner,
                                 adapter_dir=spec.path if spec.adapter_over else None, progress=False,
                                 **self.options)
            if self.max_memory_fraction is not None:
                engine.check_memory(self.max_new_tokens.get(role), self.max_memory_fraction)
            self._engines[role] = engine
            logging.info("loaded the %s model from %s", role, spec.path)
        return self._engines[role]


class Progress:
    """Items/s and ETA over every pending item of the run, logged after each shard."""

    def __init__(self, total: int):
        self.total, self.done, self.start = total, 0, time.perf_counter()

    def update(self, unit: Unit, count: int) -> None:
        self.done += count
        elapsed = time.perf_counter() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        logging.info("%s: %d/%d pending items done, %.2f items/s, ETA %.0fs", unit.key, self.done, self.total,
                     rate, eta)


@dataclasses.dataclass(frozen=True)
class RunResult:
    """What a run produced: the score rows, and how many items it computed this time."""

    scores: list[ScoreRow]
    computed_items: int
    workdir: str


def identity(config: ml_collections.ConfigDict, specs: Mapping[str, ModelSpec], data_dir: str) -> dict[str, Any]:
    """What every stored record depends on; a rerun in the same workdir must match it."""
    e = config.eval
    return {"mode": e.mode, "models": {r: dataclasses.asdict(s) for r, s in sorted(specs.items())},
            "data_dir": os.path.abspath(data_dir), "samplegen_d_run": e.samplegen_d_run,
            "max_new_tokens_base": e.max_new_tokens_base, "max_new_tokens_tuned": e.max_new_tokens_tuned,
            "stop_strings": e.stop_strings, "max_length": e.max_length, "dtype": config.model.dtype,
            "faithful": e.faithful, "seed": config.seed, "bertscore_model": e.bertscore_model}


def check_identity(workdir: str, current: Mapping[str, Any]) -> None:
    """Refuse to mix results of different evaluations in one workdir (models are compared per role)."""
    path = os.path.join(workdir, "identity.json")
    stored: dict[str, Any] = {}
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            stored = json.load(f)
        same = lambda a, b: json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
        changed = [k for k in IDENTITY_KEYS if k != "models" and not same(stored.get(k), current.get(k))]
        changed += [f"models.{role}" for role, spec in current["models"].items()
                    if role in stored["models"] and not same(stored["models"][role], spec)]
        if changed:
            raise EvalConfigError(f"{workdir} holds results of another evaluation (it differs in {changed}); "
                                  f"use a new --workdir or restore those settings")
    merged = {**current, "models": {**stored.get("models", {}), **current["models"]}}
    if merged != stored:
        io_utils.atomic_write_json(path, merged)


def model_specs(config: ml_collections.ConfigDict, settings: Sequence[Setting], needs_model: set[str]
                ) -> dict[str, ModelSpec]:
    """The model of every role that has work; a tuned role without a model is an error."""
    from t5x_like.models import sources

    base_dir: list[str] = []

    def resolve_base() -> str:
        if not base_dir:
            base_dir.append(sources.resolve_model_dir(config.model))
        return base_dir[0]

    specs = {}
    for role in sorted(needs_model):
        if role == "base":
            specs[role] = ModelSpec("base", resolve_base())
            continue
        path = config.eval.get(f"{role}_model", "")
        if not path:
            users = [s.name for s in settings if s.model == role]
            raise EvalConfigError(f"settings {users} need the {role}-tuned model; set --config.eval.{role}_model="
                                  f"<export_dir>/model (merged HF dir) or <export_dir>/adapter")
        specs[role] = tuned_model_spec(role, path, resolve_base)
    return specs


def source_records(workdir: str, source_run: str, setting: Setting, unit_rows: Sequence[Mapping[str, Any]],
                   produced_here: bool) -> Callable[[], dict[str, dict[str, Any]]] | None:
    """For a pipeline setting: a loader of its source setting's records by id (checked up front when
    they come from another run: every item must be there)."""
    if setting.source is None:
        return None
    run = source_run or workdir
    task = unit_rows[0]["task"] if unit_rows else ""
    path = predictions_path(run, setting.source, task)

    def load() -> dict[str, dict[str, Any]]:
        if not os.path.isfile(path):
            raise EvalConfigError(f"setting {setting.name}: {path} is missing; run setting {setting.source} first "
                                  f"(in this run, or set --config.eval.samplegen_d_run=<its run dir>)")
        by_id = {r["id"]: r for r in io_utils.read_jsonl(path)}
        missing = [r["id"] for r in unit_rows if r["id"] not in by_id]
        if missing:
            raise EvalConfigError(f"setting {setting.name}: {path} lacks {len(missing)} of the items (e.g. "
                                  f"{missing[:3]}); evaluate {setting.source} with at least this num_test first")
        return by_id

    if not produced_here:
        load()  # fail before any work
    return load


def model_inputs(unit: Unit, rows: Sequence[Mapping[str, Any]], sources: Mapping[str, dict[str, Any]] | None
                 ) -> list[str]:
    """What the model reads per item: the prompt, or the SampleGen Pipeline input of the source response."""
    if unit.setting.source is None:
        return [r["prompt"] for r in rows]
    return [F.samplegen_pipeline_input(sources[r["id"]]["raw_output"]) for r in rows]  # type: ignore[index]


def check_lengths(engines: Engines, units: Sequence[Unit], opts: EvalOptions) -> None:
    """overlong="error": refuse prompts that would not fit the context with their new tokens, before work."""
    problems = []
    for unit in units:
        if unit.setting.source is not None:
            continue  # its inputs exist only after the source setting ran; the engine counts truncations
        engine = engines.get(unit.setting.model)
        budget = engine.max_length - opts.max_new_tokens(unit.setting)
        over = [r["id"] for r in unit.rows if len(engine.tokenizer.encode(r["prompt"])) > budget]
        if over:
            problems.append(f"{unit.key}: {len(over)} prompts exceed {budget} tokens (e.g. ids {over[:3]})")
    if problems:
        raise EvalConfigError("prompts longer than the model context minus max_new_tokens (eval.overlong=error):\n  "
                              + "\n  ".join(problems) + "\nset --config.eval.overlong=truncate to left-truncate them")


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


def option_scorer(config: ml_collections.ConfigDict) -> metrics.OptionScorer | None:
    """The optional BERTScore plugin for option matching (eval.bertscore_model)."""
    if not config.eval.bertscore_model:
        return None
    from t5x_like.metrics.bertscore import BertScoreScorer
    return BertScoreScorer(config.eval.bertscore_model)


def plan(config: ml_collections.ConfigDict, workdir: str) -> tuple[list[Unit], str]:
    """Every (setting, task) of the run with its items; all config / data errors raise here."""
    validate(config)
    settings = ordered_settings(pipeline.parse_names(config.eval.settings))
    data_dir = data_dir_of(config, workdir)
    with open(os.path.join(data_dir, pipeline.MANIFEST), encoding="utf-8") as f:
        manifest = json.load(f)
    tasks = task_infos(manifest, config.eval.tasks)
    units = [Unit(s, t, load_rows(data_dir, s, t.name, config.eval.num_test), config.eval.shard_size)
             for s in settings for t in tasks]
    check_pairing(units)
    return units, data_dir


def done_predictions(workdir: str, unit: Unit) -> list[dict[str, Any]] | None:
    """The unit's predictions file when it is complete for exactly its items."""
    path = predictions_path(workdir, unit.setting.name, unit.task.name)
    if not os.path.isfile(path):
        return None
    records = io_utils.read_jsonl(path)
    return records if [r["id"] for r in records] == [r["id"] for r in unit.rows] else None


def run(config: ml_collections.ConfigDict, workdir: str, *, engines: Mapping[str, Engine] | None = None
        ) -> RunResult:
    """Evaluates (or resumes) every (setting, task) of `config.eval` into `workdir`.

    `engines` maps roles ("base", "flan", "samplegen") to already loaded Engines (tests, notebooks);
    other roles are loaded from the config when they have work. In a multi-process run
    (`partitioning.coordinator_address` / `multi_host`) every process runs this with the same config
    and workdir: all take part in every program on the whole mesh, process 0 alone writes files.
    """
    initialize_distributed(config.partitioning)
    units, data_dir = plan(config, workdir)
    e = config.eval
    opts = EvalOptions(e.mode, e.max_new_tokens_base, e.max_new_tokens_tuned, e.stop_strings, e.faithful,
                       option_scorer(config))
    finished = {u.key: done_predictions(workdir, u) for u in units}
    pending = {u.key: [(start, rows) for start, rows in u.shards()
                       if finished[u.key] is None and read_shard(shard_path(workdir, u, start), rows) is None]
               for u in units}
    names = {u.setting.name for u in units}
    loaders = {u.key: source_records(workdir, e.samplegen_d_run, u.setting, u.rows,
                                     produced_here=u.setting.source in names and not e.samplegen_d_run)
               for u in units}
    io_utils.barrier("evaluation planned")  # every process has read the same store before anyone writes
    roles = {u.setting.model for u in units if pending[u.key]}
    if engines:
        roles -= set(engines)
    specs = model_specs(config, [u.setting for u in units], roles)
    check_identity(workdir, identity(config, {**specs, **{r: ModelSpec(r, "<preloaded>") for r in engines or {}}},
                                     data_dir))
    scores_file = os.path.join(workdir, "scores.json")
    total = sum(len(rows) for shards in pending.values() for _, rows in shards)
    if total == 0 and os.path.isfile(scores_file) and all(finished.values()):
        with open(scores_file, encoding="utf-8") as f:
            stored = {(r["setting"], r["task"]) for r in json.load(f)["scores"]}
        if stored >= {(u.setting.name, u.task.name) for u in units}:
            logging.info("nothing to do: every (setting, task) of %s is scored", workdir)
            return RunResult(read_scores(workdir, units), 0, workdir)
    io_utils.atomic_write_json(os.path.join(workdir, "config.json"), config.to_dict())
    io_utils.atomic_write_json(os.path.join(workdir, "provenance.json"),
                               io_utils.provenance(data_dir=os.path.abspath(data_dir)))
    partitioner = Partitioner.from_config(config.partitioning)
    logging.info("evaluation on %s", partitioner.describe())
    options = dict(batch_size=e.batch_size, max_length=e.max_length or None, pack_length=e.pack_length,
                   score_batch_tokens=e.score_batch_tokens or None)
    pool = Engines(specs, model_section=config.model, partitioner=partitioner, options=options,
                   max_new_tokens=role_max_new_tokens(units, opts), max_memory_fraction=memory_fraction(e),
                   preloaded=engines)
    if e.overlong == "error" and total:
        check_lengths(pool, [u for u in units if pending[u.key]], opts)
    progress = Progress(total)
    logging.info("evaluating %d (setting, task) pairs, %d items to compute (%s mode) into %s", len(units), total,
                 e.mode, workdir)
    rows_out = []
    for unit in units:
        if pending[unit.key]:
            run_unit(unit, pending[unit.key], pool, opts, workdir, loaders[unit.key], progress)
            io_utils.barrier(f"{unit.key} shards written")
        records = finished[unit.key] or collect(workdir, unit)
        io_utils.barrier(f"{unit.key} collected")  # a pipeline setting may read these predictions next
        rows_out.append(score_row(unit.setting, unit.task, records, model=config.model.name,
                                  adapter=adapter_label(config, unit.setting), seed=config.seed, setup=e.setup,
                                  mode=e.mode, faithful=e.faithful))
        if rows_out[-1].num_truncated:
            logging.warning("%s: %d of %d items were left-truncated to fit the model context", unit.key,
                            rows_out[-1].num_truncated, len(records))
    write_scores(workdir, rows_out)
    io_utils.barrier("scores written")
    return RunResult(rows_out, total, workdir)


def role_max_new_tokens(units: Sequence[Unit], opts: EvalOptions) -> dict[str, int | None]:
    """Per model role, the most new tokens its settings generate (None in loglik mode: scoring only)."""
    if opts.mode != "generate":
        return {}
    out: dict[str, int | None] = {}
    for unit in units:
        role = unit.setting.model
        out[role] = max(out.get(role) or 0, opts.max_new_tokens(unit.setting))
    return out


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


def adapter_label(config: ml_collections.ConfigDict, setting: Setting) -> str:
    """The tuned model a setting used ("" for base-model settings), as given in the config."""
    return "" if setting.model == "base" else config.eval.get(f"{setting.model}_model", "")


def run_unit(unit: Unit, shards: Sequence[tuple[int, tuple[dict[str, Any], ...]]], pool: Engines,
             opts: EvalOptions, workdir: str, loader: Callable[[], dict[str, dict[str, Any]]] | None,
             progress: Progress) -> None:
    """Computes and atomically writes the missing shards of one (setting, task)."""
    engine = pool.get(unit.setting.model)
    sources = loader() if loader else None
    compute = loglik_records if opts.mode == "loglik" else generate_records
    for start, rows in shards:
        records = compute(unit.setting, rows, model_inputs(unit, rows, sources), engine, unit.task, opts)
        io_utils.atomic_write_jsonl(shard_path(workdir, unit, start), records)
        progress.update(unit, len(rows))


def collect(workdir: str, unit: Unit) -> list[dict[str, Any]]:
    """Joins a unit's shards into predictions/<setting>/<task>.jsonl (data order, each item once)."""
    records = []
    for start, rows in unit.shards():
        shard = read_shard(shard_path(workdir, unit, start), rows)
        if shard is None:
            raise RuntimeError(f"{unit.key}: shard {start} is missing after evaluation")
        records.extend(shard)
    io_utils.atomic_write_jsonl(predictions_path(workdir, unit.setting.name, unit.task.name), records)
    return records


def write_scores(workdir: str, rows: Sequence[ScoreRow]) -> None:
    """scores.csv (the analysis table) and scores.json (the same rows + every metric value); rows of
    other (setting, task) pairs already stored in the workdir are kept."""
    path = os.path.join(workdir, "scores.json")
    table: dict[tuple[str, str], dict[str, Any]] = {}
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            table = {(r["setting"], r["task"]): r for r in json.load(f)["scores"]}
    for r in rows:
        table[(r.row["setting"], r.row["task"])] = {**r.row, "metrics": r.metrics, "num_truncated": r.num_truncated}
    merged = list(table.values())
    io_utils.atomic_write_text(os.path.join(workdir, "scores.csv"), scores_csv(merged))
    io_utils.atomic_write_json(path, {"scores": merged})


def read_scores(workdir: str, units: Sequence[Unit]) -> list[ScoreRow]:
    """The stored score rows of `units`, in unit order."""
    with open(os.path.join(workdir, "scores.json"), encoding="utf-8") as f:
        stored = {(r["setting"], r["task"]): r for r in json.load(f)["scores"]}
    out = []
    for unit in units:
        r = dict(stored[(unit.setting.name, unit.task.name)])
        values, truncated = r.pop("metrics"), r.pop("num_truncated")
        out.append(ScoreRow(r, values, truncated))
    return out
