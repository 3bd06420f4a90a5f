"""The evaluation runner: plans every (setting, task) of a run, computes the missing shards on the
whole mesh, and writes predictions and scores (docs/evaluation.md, "Runner")."""
from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ml_collections
from absl import logging

from t5x_like import io_utils
from t5x_like.data import pipeline
from t5x_like.engine import Engine
from t5x_like.evaluation.config import EvalConfigError, EvalOptions, memory_fraction, option_scorer, validate
from t5x_like.evaluation.contexts import model_inputs
from t5x_like.evaluation.models import Engines, ModelSpec, adapter_label, model_specs, role_max_new_tokens
from t5x_like.evaluation.records import TaskInfo, generate_records, loglik_records
from t5x_like.evaluation.store import (Unit, check_identity, collect, done_predictions, identity, predictions_path,
                                       read_scores, read_shard, shard_path, write_scores)
from t5x_like.evaluation.task_scores import ScoreRow, score_row
from t5x_like.partitioning import Partitioner, initialize_distributed
from t5x_like.scoring import DEFAULT_MAX_BATCH_TOKENS
from t5x_like.settings import Setting, ordered_settings


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
class EvalResult:
    """What a run produced: the score rows, and how many items it computed this time."""

    scores: list[ScoreRow]
    computed_items: int
    workdir: str


def plan_units(config: ml_collections.ConfigDict, workdir: str) -> tuple[list[Unit], str]:
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


def run(config: ml_collections.ConfigDict, workdir: str, *, engines: Mapping[str, Engine] | None = None
        ) -> EvalResult:
    """Evaluates (or resumes) every (setting, task) of `config.eval` into `workdir`.

    `engines` maps roles ("base", "flan", "samplegen") to already loaded Engines (tests, notebooks);
    other roles are loaded from the config when they have work. In a multi-process run
    (`partitioning.coordinator_address` / `multi_host`) every process runs this with the same config
    and workdir: all take part in every program on the whole mesh, process 0 alone writes files.
    """
    initialize_distributed(config.partitioning)
    with io_utils.workdir_lock(workdir, "launch.evaluate"):
        return _run_locked(config, workdir, engines)


def _run_locked(config: ml_collections.ConfigDict, workdir: str, engines: Mapping[str, Engine] | None
                ) -> EvalResult:
    """`run` while holding the workdir's lock (so the identity check and every write are one process's)."""
    units, data_dir = plan_units(config, workdir)
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
            return EvalResult(read_scores(workdir, units), 0, workdir)
    io_utils.atomic_write_json(os.path.join(workdir, "config.json"), config.to_dict())
    io_utils.atomic_write_json(os.path.join(workdir, "provenance.json"),
                               io_utils.provenance(data_dir=os.path.abspath(data_dir)))
    partitioner = Partitioner.from_config(config.partitioning)
    logging.info("evaluation on %s", partitioner.describe())
    options = dict(batch_size=e.batch_size, max_length=e.max_length or None, pack_length=e.pack_length,
                   score_batch_tokens=e.score_batch_tokens or None,
                   max_batch_tokens=e.generate_batch_tokens or DEFAULT_MAX_BATCH_TOKENS)
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
    return EvalResult(rows_out, total, workdir)


def run_unit(unit: Unit, shards: Sequence[tuple[int, tuple[dict[str, Any], ...]]], pool: Engines,
             opts: EvalOptions, workdir: str, loader: Callable[[], dict[str, dict[str, Any]]] | None,
             progress: Progress) -> None:
    """Computes and atomically writes the missing shards of one (setting, task)."""
    engine = pool.get(unit.setting.model)
    sources = loader() if loader else None
    compute = loglik_records if opts.mode == "loglik" else generate_records
    for start, rows in shards:
        records = compute(unit.setting, rows, model_inputs(unit.setting, rows, sources), engine, unit.task, opts)
        io_utils.atomic_write_jsonl(shard_path(workdir, unit, start), records)
        progress.update(unit, len(rows))
