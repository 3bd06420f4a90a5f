"""The data source of the offline lm-eval tasks in this directory: the local task-data directory
(hub-schema jsonl, as ../shared/data/tasks holds it) instead of the Hugging Face hub.

Each task YAML names its files relative to that directory (`dataset_kwargs.data_files`) and
`custom_dataset: !function local_data.load_json`, which lm-eval calls with the task's metadata and
dataset_kwargs. The directory is `--metadata '{"data_dir": "DIR"}'` when given, else
$T5X_LIKE_DATA_DIR (the variable t5x_like.data.sources reads). Self-contained (no t5x_like import),
so plain `lm_eval --model hf --include_path configs/lm_eval_tasks` runs these tasks from anywhere.
"""
from __future__ import annotations

import os
from typing import Any

import datasets

ENV_DATA_DIR = "T5X_LIKE_DATA_DIR"


def data_files_under(data_dir: str | None, data_files: dict[str, str]) -> dict[str, str]:
    """Each split's file joined to the data directory, every one checked to exist."""
    root = data_dir or os.environ.get(ENV_DATA_DIR)
    if not root:
        raise FileNotFoundError(f"the local lm-eval tasks need the task data directory: set {ENV_DATA_DIR}=DIR "
                                "(e.g. ../shared/data/tasks) or pass --metadata '{\"data_dir\": \"DIR\"}'")
    files = {split: os.path.join(root, name) for split, name in data_files.items()}
    missing = [path for path in files.values() if not os.path.isfile(path)]
    if missing:
        raise FileNotFoundError(f"task data file not found: {missing[0]} (data directory {root}; set "
                                f"{ENV_DATA_DIR} or --metadata data_dir to the local task data)")
    return files


def load_json(data_files: dict[str, str], data_dir: str | None = None, **_metadata: Any) -> datasets.DatasetDict:
    """The task's splits read from jsonl under the data directory (lm-eval passes all task metadata too)."""
    return datasets.load_dataset("json", data_files=data_files_under(data_dir, data_files))
