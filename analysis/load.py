"""Read evaluation results (``scores.csv`` + optional per-item predictions) into one validated table.

A results directory holds ``scores.csv`` (one row per model x adapter x seed x setting x task) and,
optionally, ``predictions/<setting>/<task>.jsonl`` (one JSON object per test item with at least
``id`` and ``correct``; a task name containing ``/`` is a sub-directory). Several directories are
unioned: identical rows are kept once, rows with the same key but different content are an error.
"""
from __future__ import annotations

import dataclasses
import math
import os
import re
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from absl import logging

from t5x_like.errors import UserError
from t5x_like.io_utils import iter_jsonl
from t5x_like.settings import ROLES, SETTINGS

SCORE_COLUMNS = ("model", "adapter", "seed", "setting", "task", "cluster", "category", "seen",
                 "metric", "value", "n")
# role (tuned / base) and main_setting: written by the evaluator; for older files and other tools
# they come from the settings registry (t5x_like/settings.py).
OPTIONAL_COLUMNS = ("num_options", "role", "main_setting")
# A row is identified by these columns; two rows with the same key must agree on everything else.
ROW_KEY = ("model", "adapter", "seed", "setting", "task")
# Predictions of one run of one setting on one task are keyed like a score row.
PredictionKey = tuple[str, str, str, str, str]
_TRUE = frozenset({"true", "1", "yes", "t", "y"})
_FALSE = frozenset({"false", "0", "no", "f", "n"})


class ResultsError(UserError, ValueError):
    """A results directory or file does not follow the input contract (see docs/analysis.md)."""


@dataclasses.dataclass(frozen=True)
class Predictions:
    """Per-item outcomes of one run: ``correct`` indexed by item id, plus the item chance rates."""
    correct: pd.Series            # bool, index = item id (str)
    chance: float                 # mean over items of 100 / len(options); NaN without options
    source: str                   # the file it was read from


@dataclasses.dataclass(frozen=True)
class Results:
    """The union of one or more results directories."""
    scores: pd.DataFrame                          # SCORE_COLUMNS + num_options + source
    predictions: dict[PredictionKey, Predictions]
    sources: tuple[str, ...]


def _parse_bool(value: str, where: str) -> bool:
    """Parses a CSV boolean cell (True/False/1/0/yes/no), raising a ResultsError naming the cell."""
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ResultsError(f"{where}: column 'seen' must be a boolean (True/False/1/0), got {value!r}.")


def _parse_seed(value: str) -> str:
    """Normalises a seed cell to a canonical string: '' when missing, '42' for '42' or '42.0'."""
    text = str(value).strip()
    if text == "" or text.lower() in {"nan", "none", "null"}:
        return ""
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if number.is_integer() else text


def strip_seed(adapter: str, seed: str) -> str:
    """The adapter name without its seed: the seed, where it stands in the name as a number not
    adjacent to other digits, becomes ``{seed}`` (``train/flan_seed42/export`` ->
    ``train/flan_seed{seed}/export``), so that the seeds of one tuning setup form one group."""
    if not seed or not adapter:
        return adapter
    return re.sub(rf"(?<!\d){re.escape(seed)}(?!\d)", "{seed}", adapter)


def _numeric(frame: pd.DataFrame, column: str, path: str, allow_empty: bool) -> pd.Series:
    """Converts a text column to float, raising a ResultsError that lists the offending rows."""
    text = frame[column].str.strip()
    values = pd.to_numeric(text.where(text != "", None), errors="coerce")
    bad = values.isna() & ~((text == "") & allow_empty)
    if bad.any():
        rows = ", ".join(f"line {i + 2} ({frame[column].iloc[i]!r})" for i in np.flatnonzero(bad)[:5])
        raise ResultsError(f"{path}: column '{column}' must be numeric; bad values at {rows}.")
    return values.astype(float)


def read_scores(path: str) -> pd.DataFrame:
    """Reads and validates one ``scores.csv``; returns normalised columns (see module docstring)."""
    if not os.path.isfile(path):
        raise ResultsError(f"{path}: file not found; a results directory must contain scores.csv "
                           "(written by launch/evaluate.py).")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in SCORE_COLUMNS if c not in frame.columns]
    if missing:
        raise ResultsError(f"{path}: missing column(s) {missing}; expected at least "
                           f"{list(SCORE_COLUMNS)} (optional: {list(OPTIONAL_COLUMNS)}).")
    if frame.empty:
        raise ResultsError(f"{path}: no rows.")
    out = pd.DataFrame({c: frame[c].str.strip() for c in
                        ("model", "adapter", "setting", "task", "cluster", "category", "metric")})
    for column in ("model", "setting", "task"):
        empty = np.flatnonzero(out[column] == "")
        if len(empty):
            raise ResultsError(f"{path}: column '{column}' is empty at line(s) "
                               f"{[int(i) + 2 for i in empty[:5]]}.")
    out["cluster"] = out["cluster"].replace("", "none")
    out["seed"] = [_parse_seed(s) for s in frame["seed"]]
    out["adapter"] = [strip_seed(a, s) for a, s in zip(out["adapter"], out["seed"])]
    out["seen"] = [_parse_bool(v, f"{path} line {i + 2}") for i, v in enumerate(frame["seen"])]
    out["value"] = _numeric(frame, "value", path, allow_empty=False)
    if not np.isfinite(out["value"]).all():
        raise ResultsError(f"{path}: column 'value' has non-finite entries.")
    out["n"] = _numeric(frame, "n", path, allow_empty=False).astype(int)
    if "num_options" in frame.columns:
        out["num_options"] = _numeric(frame, "num_options", path, allow_empty=True)
    else:
        out["num_options"] = np.nan
    outside = (out["value"] < 0) | (out["value"] > 100)
    if outside.any():
        logging.warning("%s: %d value(s) outside [0, 100] (e.g. task %s); the contract expects "
                        "percentages.", path, int(outside.sum()), out["task"][outside].iloc[0])
    out["role"], out["main_setting"] = _roles(frame, out["setting"], path)
    out["source"] = path
    return out[list(ROW_KEY) + ["role", "main_setting", "cluster", "category", "seen", "metric", "value", "n",
                                "num_options", "source"]]


def _roles(frame: pd.DataFrame, setting: pd.Series, path: str) -> tuple[list[str], list[str]]:
    """Each row's role and main setting: the file's own columns where filled, else the registry's."""
    given_role = frame["role"].str.strip() if "role" in frame.columns else pd.Series("", index=frame.index)
    given_main = frame["main_setting"].str.strip() if "main_setting" in frame.columns else given_role.map(lambda _: "")
    roles, mains = [], []
    for line, (name, role, main) in enumerate(zip(setting, given_role, given_main), start=2):
        if not role:
            known = SETTINGS.get(name)
            if known is None:
                raise ResultsError(f"{path} line {line}: setting {name!r} has no role column and is not in the "
                                   f"settings registry; add columns role (tuned/base) and main_setting.")
            role, main = known.role, main or known.main
        if role not in ROLES:
            raise ResultsError(f"{path} line {line}: role {role!r}; expected one of {list(ROLES)}.")
        roles.append(role)
        mains.append(main or name)
    return roles, mains


def union_scores(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Unions score tables: exact duplicates (same key, same content) are dropped, conflicts raise.

    Two rows conflict when they share ROW_KEY but differ in any of cluster, category, seen, metric,
    value (|difference| > 1e-9), n or num_options.
    """
    scores = pd.concat(frames, ignore_index=True)
    first = scores.drop_duplicates(list(ROW_KEY), keep="first")
    if len(first) == len(scores):
        return scores.reset_index(drop=True)
    merged = scores.merge(first, on=list(ROW_KEY), suffixes=("", "_first"))
    same = np.ones(len(merged), bool)
    for column in ("role", "main_setting", "cluster", "category", "seen", "metric", "n"):
        same &= (merged[column] == merged[column + "_first"]).to_numpy()
    same &= np.isclose(merged["value"], merged["value_first"], rtol=0, atol=1e-9)
    options, options_first = merged["num_options"], merged["num_options_first"]
    same &= ((options == options_first) | (options.isna() & options_first.isna())).to_numpy()
    if not same.all():
        row = merged[~same].iloc[0]
        key = ", ".join(f"{c}={row[c]!r}" for c in ROW_KEY)
        raise ResultsError(
            f"conflicting duplicate score rows for ({key}): {row['source_first']} has "
            f"value={row['value_first']}, n={row['n_first']}, metric={row['metric_first']!r}; "
            f"{row['source']} has value={row['value']}, n={row['n']}, metric={row['metric']!r}. "
            "Pass each run's results only once, or remove the stale directory.")
    logging.info("dropped %d duplicate score rows present in several results dirs",
                 len(scores) - len(first))
    return first.reset_index(drop=True)


def read_predictions(path: str) -> Predictions:
    """Reads one predictions jsonl (fields ``id``, ``correct``, optional ``options``)."""
    ids, correct, chances = [], [], []
    try:
        lines = list(iter_jsonl(path))
    except ValueError as e:
        raise ResultsError(f"{e}; each line must be a JSON object with 'id' and 'correct'.") from e
    for line_no, item in lines:
        try:
            ids.append(str(item["id"]))
            flag = item["correct"]
        except (KeyError, TypeError) as e:
            raise ResultsError(f"{path} line {line_no}: each line must be a JSON object with "
                               f"'id' and 'correct' ({type(e).__name__}: {e}).") from e
        if not isinstance(flag, (bool, int)) or flag not in (0, 1):
            raise ResultsError(f"{path} line {line_no}: 'correct' must be a boolean, got {flag!r}.")
        correct.append(bool(flag))
        options = item.get("options")
        chances.append(100.0 / len(options) if isinstance(options, list) and options else math.nan)
    if not ids:
        raise ResultsError(f"{path}: no predictions.")
    series = pd.Series(correct, index=pd.Index(ids, name="id"), name="correct")
    if series.index.has_duplicates:
        dup = series.index[series.index.duplicated()][0]
        raise ResultsError(f"{path}: duplicate item id {dup!r}.")
    chance_values = np.array(chances)
    chance = float(chance_values.mean()) if np.isfinite(chance_values).all() else math.nan
    return Predictions(correct=series, chance=chance, source=path)


def _prediction_files(results_dir: str) -> Iterable[tuple[str, str, str]]:
    """Yields (setting, task, path) for every ``predictions/<setting>/<task>.jsonl`` of a dir."""
    root = os.path.join(results_dir, "predictions")
    if not os.path.isdir(root):
        return
    for setting in sorted(os.listdir(root)):
        setting_dir = os.path.join(root, setting)
        for dirpath, _, filenames in sorted(os.walk(setting_dir)):
            for name in sorted(filenames):
                if name.endswith(".jsonl"):
                    path = os.path.join(dirpath, name)
                    task = os.path.relpath(path, setting_dir)[: -len(".jsonl")].replace(os.sep, "/")
                    yield setting, task, path


def read_dir_predictions(results_dir: str, scores: pd.DataFrame) -> dict[PredictionKey, Predictions]:
    """Reads a dir's predictions, attaching each file to the one score row of its (setting, task).

    A file whose (setting, task) matches no score row, or rows of several runs (model, adapter,
    seed) of the same dir, cannot be attributed: it is skipped with a warning.
    """
    found: dict[PredictionKey, Predictions] = {}
    for setting, task, path in _prediction_files(results_dir):
        rows = scores[(scores["setting"] == setting) & (scores["task"] == task)]
        runs = rows[["model", "adapter", "seed"]].drop_duplicates()
        if len(runs) != 1:
            logging.warning("%s: matches %d runs in %s/scores.csv (need exactly 1); skipped.",
                            path, len(runs), results_dir)
            continue
        model, adapter, seed = runs.iloc[0]
        predictions = read_predictions(path)
        n = int(rows["n"].iloc[0])
        if len(predictions.correct) != n:
            logging.warning("%s: %d predictions but scores.csv says n=%d.", path,
                            len(predictions.correct), n)
        found[(model, adapter, seed, setting, task)] = predictions
    return found


def _scores_path(entry: str) -> str:
    """The scores.csv of a results location (a directory, or the file itself)."""
    if os.path.isfile(entry):
        return entry
    if not os.path.isdir(entry):
        raise ResultsError(f"{entry}: not a directory or a scores.csv file.")
    return os.path.join(entry, "scores.csv")


def load_results(results_dirs: Sequence[str]) -> Results:
    """Loads and unions results directories (or ``scores.csv`` paths), predictions included.

    Every scores.csv is read and the union checked before any (large) predictions file is read.
    """
    if not results_dirs:
        raise ResultsError("no results directories given (--results=DIR[,DIR...]).")
    paths = [_scores_path(entry) for entry in results_dirs]
    frames = [read_scores(path) for path in paths]
    scores = union_scores(frames)
    predictions: dict[PredictionKey, Predictions] = {}
    for path, frame in zip(paths, frames):
        dir_predictions = read_dir_predictions(os.path.dirname(path), frame)
        for key, value in dir_predictions.items():
            earlier = predictions.get(key)
            if earlier is not None and not earlier.correct.equals(value.correct):
                raise ResultsError(f"conflicting predictions for {key}: {earlier.source} and "
                                   f"{value.source} differ; pass each run's results only once.")
            predictions[key] = value
        logging.info("read %s: %d score rows, %d predictions files", path, len(frame),
                     len(dir_predictions))
    return Results(scores=scores, predictions=predictions, sources=tuple(results_dirs))
