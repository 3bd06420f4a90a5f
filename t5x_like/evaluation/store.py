"""The resumable results store of one evaluation run (every file written atomically):

  config.json, provenance.json, identity.json    resolved config, versions, what results depend on
  shards/<setting>/<task>/<first item>.jsonl      per-item records, one file per shard of items
  predictions/<setting>/<task>.jsonl              all records of a (setting, task), in data order
  scores.csv, scores.json                         one row per (setting, task); corpus-level metrics

A killed run resumes from its shards; a finished run rerun does nothing.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections
from absl import logging

from t5x_like import io_utils
from t5x_like.evaluation.config import EvalConfigError
from t5x_like.evaluation.records import TaskInfo
from t5x_like.evaluation.task_scores import ScoreRow
from t5x_like.settings import Setting


SCORE_COLUMNS = ("model", "adapter", "seed", "setting", "role", "main_setting", "task", "cluster", "category",
                 "seen", "metric", "value", "n", "num_options", "mode")


IDENTITY_KEYS = ("mode", "models", "data_dir", "samplegen_d_run", "max_new_tokens_base", "max_new_tokens_tuned",
                 "stop_strings", "max_length", "dtype", "faithful", "seed", "bertscore_model")


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


def done_predictions(workdir: str, unit: Unit) -> list[dict[str, Any]] | None:
    """The unit's predictions file when it is complete for exactly its items."""
    path = predictions_path(workdir, unit.setting.name, unit.task.name)
    if not os.path.isfile(path):
        return None
    records = io_utils.read_jsonl(path)
    return records if [r["id"] for r in records] == [r["id"] for r in unit.rows] else None


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


def scores_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """scores.csv text: SCORE_COLUMNS, one line per (setting, task)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SCORE_COLUMNS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow(r)
    return buffer.getvalue()


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


def identity(config: ml_collections.ConfigDict, specs: Mapping[str, Any], data_dir: str) -> dict[str, Any]:
    """What every stored record depends on (`specs`: role -> models.ModelSpec); a rerun in the same
    workdir must match it."""
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
        changed = io_utils.changed_keys(stored, current, [k for k in IDENTITY_KEYS if k != "models"])
        shared_roles = [role for role in current["models"] if role in stored["models"]]
        changed += [f"models.{role}" for role in io_utils.changed_keys(stored["models"], current["models"], shared_roles)]
        if changed:
            raise EvalConfigError(f"{workdir} holds results of another evaluation (it differs in {changed}); "
                                  f"use a new --workdir or restore those settings")
    merged = {**current, "models": {**stored.get("models", {}), **current["models"]}}
    if merged != stored:
        io_utils.atomic_write_json(path, merged)
