"""One loader for every task: local files, else the Hugging Face hub, else TFDS; same Examples.

Order of sources for (task, split):
  1. `<data_dir>/<task.source.local_dir>/<split file>.jsonl|parquet` in the hub's own schema
     (BIG-bench tasks: `<data_dir>/bigbench/<task>/.../task.json`, BIG-bench's own layout);
  2. `datasets.load_dataset(hub_id, config, split=..., cache_dir=...)` (datasets >= 4 runs no
     dataset scripts, so remote code is never trusted); when the hub host is unreachable the call
     runs in offline mode (cache only) instead of retrying for ~25 s;
  3. `tensorflow_datasets` when the registry names a TFDS dataset and the package is importable.
Whatever the source, rows go through `Task.to_example`, so the result is the same list.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib.util
import logging
import os
import pathlib
import random
import socket
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from t5x_like import io_utils
from t5x_like.data.examples import Example
from t5x_like.data.tasks import Task, get_task
from t5x_like.errors import UserError

ENV_DATA_DIR = "T5X_LIKE_DATA_DIR"
BIGBENCH_VALIDATION_FRACTION = 0.2  # local BIG-bench files: share of examples in "validation"
_HOW_TO_PROVIDE = (
    "Provide the data with --config.data_dir=DIR or the environment variable {env}=DIR "
    "({layout}), or give this machine access to the Hugging Face hub (network, or a filled "
    "cache_dir).")


class TaskDataNotFoundError(UserError, FileNotFoundError):
    """No source could provide a task's split; the message lists every source tried and why."""


class MissingSplitError(TaskDataNotFoundError):
    """The task's source has no such split at all (e.g. no train split for wsc273)."""


class _SourceUnavailable(Exception):
    """One source cannot provide the split (the reason goes into TaskDataNotFoundError)."""


@dataclasses.dataclass(frozen=True)
class LoadedSplit:
    """A task split's examples and where they came from (for manifests)."""

    examples: list[Example]
    origin: str  # e.g. "local:/data/tasks/rte/validation.jsonl" or "hub:nyu-mll/glue/rte[validation]"
    num_rows: int  # source rows read (before dropping unlabelled rows)


class DataDirNotFoundError(UserError, FileNotFoundError):
    """The configured local data directory does not exist."""


def resolve_data_dir(config_value: str | None) -> str | None:
    """The local data directory: the config value if set, else $T5X_LIKE_DATA_DIR, else None. A
    directory that is named but does not exist is an error here, not a list of failed sources later."""
    data_dir = config_value or os.environ.get(ENV_DATA_DIR) or None
    if data_dir is not None and not os.path.isdir(data_dir):
        origin = "--config.data_dir" if config_value else f"${ENV_DATA_DIR}"
        raise DataDirNotFoundError(f"{origin}={data_dir}: no such directory; point it at the local task data "
                                   "(e.g. ../shared/data/tasks) or unset it to use the Hugging Face hub")
    return data_dir


def load_examples(task: str | Task, split: str, *, data_dir: str | None = None,
                  cache_dir: str | None = None, faithful: bool = False) -> list[Example]:
    """The task's `split` ("train" or "eval") as Examples, from the first source that has it."""
    return load_split(task, split, data_dir=data_dir, cache_dir=cache_dir,
                      faithful=faithful).examples


def load_split(task: str | Task, split: str, *, data_dir: str | None = None,
               cache_dir: str | None = None, faithful: bool = False) -> LoadedSplit:
    """Like `load_examples`, also reporting the source used and the number of raw rows."""
    task = get_task(task)
    split_name = task.source.split_name(split, faithful)
    if split_name is None:
        raise MissingSplitError(
            f"task {task.name!r} has no {split} split in its source "
            f"({task.source.hub_id or 'manual download'}); formats that need {split} examples "
            "must carve a seeded pool out of the eval split explicitly.")
    data_dir = resolve_data_dir(data_dir)
    failures = []
    for kind, reader in (("local", _read_local), ("hub", _read_hub), ("tfds", _read_tfds)):
        try:
            rows, origin = reader(task, split, split_name, data_dir=data_dir,
                                  cache_dir=cache_dir, faithful=faithful)
        except _SourceUnavailable as exc:
            failures.append(f"  - {kind}: {exc}")
            continue
        examples = [ex for i, row in enumerate(rows)
                    if (ex := task.to_example(row, i, faithful=faithful)) is not None]
        logging.info("task %s %s: %d examples (of %d rows) from %s", task.name, split,
                     len(examples), len(rows), origin)
        return LoadedSplit(examples, origin, len(rows))
    raise TaskDataNotFoundError(
        f"no data for task {task.name!r} ({split} split {split_name!r}); sources tried:\n"
        + "\n".join(failures) + "\n"
        + _HOW_TO_PROVIDE.format(env=ENV_DATA_DIR, layout=_local_layout(task, split, faithful)))


def _local_layout(task: Task, split: str, faithful: bool) -> str:
    """Where the local source expects the split, relative to the data dir (for error messages)."""
    if task.source.local_format == "bigbench_json":
        return "BIG-bench task files DIR/bigbench/" + ", DIR/bigbench/".join(task.source.bigbench_files)
    stem = task.source.local_stem(split, faithful)
    return f"DIR/{task.source.local_dir}/{stem}.jsonl or .parquet in the Hugging Face hub schema"


# ----------------------------------------------------------------------------------------------
# Local files
# ----------------------------------------------------------------------------------------------

def local_path(task: str | Task, split: str, data_dir: str, *, faithful: bool = False) -> pathlib.Path | None:
    """The local file (or first BIG-bench task.json) that would serve `split`, if it exists."""
    task = get_task(task)
    root = pathlib.Path(data_dir)
    if task.source.local_format == "bigbench_json":
        paths = [root / "bigbench" / rel for rel in task.source.bigbench_files]
        return paths[0] if all(p.is_file() for p in paths) else None
    stem = task.source.local_stem(split, faithful)
    if stem is None:
        return None
    for suffix in (".jsonl", ".parquet"):
        path = root / task.source.local_dir / f"{stem}{suffix}"
        if path.is_file():
            return path
    return None


def local_splits(task: str | Task, data_dir: str) -> tuple[str, ...]:
    """The loader splits ("train", "eval") that `data_dir` holds for the task."""
    return tuple(kind for kind in ("train", "eval") if local_path(task, kind, data_dir) is not None)


def _read_local(task: Task, split: str, split_name: str, *, data_dir: str | None,
                faithful: bool, **_: Any) -> tuple[list[Mapping[str, Any]], str]:
    """Rows of the local split file (hub schema), or of BIG-bench task.json files."""
    if data_dir is None:
        raise _SourceUnavailable(f"no data_dir given (--config.data_dir or ${ENV_DATA_DIR})")
    root = pathlib.Path(data_dir)
    if task.source.local_format == "bigbench_json":
        return _read_bigbench(task, split_name, root)
    path = local_path(task, split, data_dir, faithful=faithful)
    if path is None:
        stem = task.source.local_stem(split, faithful)
        raise _SourceUnavailable(f"{root / task.source.local_dir / str(stem)}.jsonl|.parquet not found")
    reader = _read_parquet if path.suffix == ".parquet" else io_utils.read_jsonl
    return reader(str(path)), f"local:{path}"


def _read_parquet(path: pathlib.Path) -> list[dict[str, Any]]:
    """All rows of a parquet file as dicts."""
    import pyarrow.parquet as pq
    return pq.read_table(path).to_pylist()


def _bigbench_question(task_json: Mapping[str, Any], example: Mapping[str, Any]) -> str:
    """task_prefix + a non-default example_input_prefix + input, like BIG-bench's own inputs."""
    prefix = task_json.get("example_input_prefix")
    prefix = "" if prefix in (None, "\nQ: ") else prefix
    return (task_json.get("task_prefix") or "") + prefix + example["input"]


def _bigbench_rows(path: pathlib.Path, subtask: str | None) -> list[dict[str, Any]]:
    """task.json examples in the tasksource/bigbench row schema (inputs, targets, choices)."""
    task_json = io_utils.read_json(str(path))
    rows = []
    for i, example in enumerate(task_json.get("examples", [])):
        scores = example["target_scores"]
        best = max(scores.values())
        rows.append({"inputs": _bigbench_question(task_json, example),
                     "targets": [t for t, s in scores.items() if s == best],
                     "multiple_choice_targets": list(scores),
                     "idx": f"{subtask}:{i}" if subtask else str(i)})
    return rows


def _read_bigbench(task: Task, split_name: str,
                   root: pathlib.Path) -> tuple[list[Mapping[str, Any]], str]:
    """Local BIG-bench examples, split seeded into train / validation (tasksource's split names).

    tasksource/bigbench's own split cannot be recomputed offline: locally, a permutation seeded by
    the task name puts round(20%) of the examples (at least 1) into "validation", the rest into
    "train" (the test items), each in file order.
    """
    rows = []
    multi = len(task.source.bigbench_files) > 1
    for rel in task.source.bigbench_files:
        path = root / "bigbench" / rel
        if not path.is_file():
            raise _SourceUnavailable(f"{path} not found")
        rows += _bigbench_rows(path, pathlib.Path(rel).parent.name if multi else None)
    order = list(range(len(rows)))
    random.Random(f"bigbench-split:{task.name}").shuffle(order)
    n_val = max(1, round(BIGBENCH_VALIDATION_FRACTION * len(rows)))
    validation = set(order[:n_val])
    if split_name not in ("train", "validation"):
        raise _SourceUnavailable(f"BIG-bench files have no split {split_name!r}")
    keep = [row for i, row in enumerate(rows) if (i in validation) == (split_name == "validation")]
    return keep, f"local:{root / 'bigbench'} ({', '.join(task.source.bigbench_files)})[{split_name}]"


# ----------------------------------------------------------------------------------------------
# Hugging Face hub
# ----------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def hub_reachable(timeout_s: float = 3.0) -> bool:
    """Whether the hub host accepts a TCP connection (a quick probe, cached per process)."""
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    host = urllib.parse.urlparse(endpoint).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout_s).close()
        return True
    except OSError:
        return False


@contextlib.contextmanager
def _offline_hub() -> Iterator[None]:
    """Run `datasets` in offline mode (cache only) for the duration of the block."""
    import datasets.config
    import huggingface_hub.constants as hub_constants
    saved = (datasets.config.HF_HUB_OFFLINE, hub_constants.HF_HUB_OFFLINE)
    datasets.config.HF_HUB_OFFLINE = hub_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, hub_constants.HF_HUB_OFFLINE = saved


def _read_hub(task: Task, split: str, split_name: str, *, cache_dir: str | None,
              **_: Any) -> tuple[list[Mapping[str, Any]], str]:
    """Rows of the hub split via `datasets.load_dataset` (offline/cache-only without network)."""
    source = task.source
    if source.hub_id is None:
        raise _SourceUnavailable("not on the hub (manual download; see docs/tasks.md)")
    import datasets
    online = hub_reachable()
    guard = contextlib.nullcontext() if online else _offline_hub()
    try:
        with guard:
            dataset = datasets.load_dataset(source.hub_id, source.hub_config, split=split_name,
                                            cache_dir=cache_dir)
    except Exception as exc:  # every failure of the hub is one line of the final error
        reason = str(exc).splitlines()[0] if str(exc) else ""
        offline = "" if online else " [hub unreachable: tried the cache only]"
        raise _SourceUnavailable(f"{source.hub_id}/{source.hub_config or ''}[{split_name}]: "
                                 f"{type(exc).__name__}: {reason}{offline}") from exc
    return list(dataset), f"hub:{source.hub_id}/{source.hub_config or ''}[{split_name}]"


# ----------------------------------------------------------------------------------------------
# TFDS
# ----------------------------------------------------------------------------------------------

def _from_numpy(value: Any) -> Any:
    """TFDS numpy values -> the Python types of the hub schema (bytes -> str, arrays -> lists)."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, Mapping):
        return {k: _from_numpy(v) for k, v in value.items()}
    if hasattr(value, "tolist"):
        return _from_numpy(value.tolist())
    if isinstance(value, list):
        return [_from_numpy(v) for v in value]
    return value


def _read_tfds(task: Task, split: str, split_name: str,
               **_: Any) -> tuple[list[Mapping[str, Any]], str]:
    """Rows of the TFDS split (only for tasks whose TFDS features equal the hub schema)."""
    name = task.source.tfds_name
    if name is None:
        raise _SourceUnavailable("no TFDS dataset registered for this task")
    if importlib.util.find_spec("tensorflow_datasets") is None:
        raise _SourceUnavailable(f"{name}: tensorflow_datasets is not installed")
    import tensorflow_datasets as tfds
    try:
        dataset = tfds.load(name, split=split_name, data_dir=os.environ.get("TFDS_DATA_DIR"),
                            download=False)
        rows: Iterable[Any] = tfds.as_numpy(dataset)
        return [_from_numpy(row) for row in rows], f"tfds:{name}[{split_name}]"
    except Exception as exc:
        raise _SourceUnavailable(f"{name}[{split_name}]: {type(exc).__name__}: {exc}") from exc
