"""The one loader, against the real task data in T5X_LIKE_DATA_DIR (../shared/data/tasks)."""
import collections
import json
import pathlib

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from t5x_like.data import sources, tasks

# Raw label -> answer string, typed from the data bundle's README (label encodings of the hub).
RAW_LABELS = {
    "rte": {0: "yes", 1: "no"}, "qnli": {0: "yes", 1: "no"}, "wnli": {0: "no", 1: "yes"},
    "mrpc": {0: "no", 1: "yes"}, "cola": {0: "unacceptable", 1: "acceptable"},
    "sst2": {0: "negative", 1: "positive"}, "imdb_reviews": {0: "negative", 1: "positive"},
    "cb": {0: "yes", 1: "no", 2: "it's impossible to say"},
    "mnli_matched": {0: "yes", 1: "it is not possible to tell", 2: "no"},
    "snli": {0: "yes", 1: "it is not possible to tell", 2: "no"},
    "anli_r1": {0: "Yes", 1: "It's impossible to say", 2: "No"},
    "bool_q": {0: "False", 1: "True"}, "multirc": {0: "no", 1: "yes"}, "wic": {0: "False", 1: "True"},
    "ag_news": {0: "World", 1: "Sports", 2: "Business", 3: "Sci/Tech"},
}
# Registered tasks with data in the bundle (its README), BIG-bench aside.
LOCAL_TASKS = {"ag_news", "anli_r1", "anli_r2", "anli_r3", "arc", "arc_easy", "bool_q", "cb", "cola",
               "copa", "cosmos_qa", "imdb_reviews", "mnli", "mnli_matched", "mrpc", "multirc",
               "openbookqa", "piqa", "qnli", "rte", "snli", "squad", "sst2", "stsb", "trec", "wic",
               "wnli"}
TREC = ["ABBR", "ENTY", "DESC", "HUM", "LOC", "NUM"]


def _raw_rows(path: pathlib.Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line]


def _local_files(data_dir: pathlib.Path, task: tasks.Task) -> dict[str, pathlib.Path]:
    """split kind -> local file of the task, for the kinds that exist locally."""
    found = {}
    for kind in ("train", "eval"):
        stem = task.source.local_stem(kind)
        path = data_dir / task.source.local_dir / f"{stem}.jsonl"
        if stem and path.is_file():
            found[kind] = path
    return found


def _local_hf_tasks(data_dir):
    return [(t, kind, path) for t in tasks.all_tasks() if t.source.local_format == "hf"
            for kind, path in _local_files(data_dir, t).items()]


def test_every_local_task_loads_from_the_local_dir(data_dir):
    loaded = _local_hf_tasks(data_dir)
    assert {t.name for t, _, _ in loaded} == LOCAL_TASKS
    for task, kind, path in loaded:
        split = sources.load_split(task, kind, data_dir=str(data_dir))
        assert split.origin == f"local:{path}"
        rows = _raw_rows(path)
        assert split.num_rows == len(rows)
        # the bundle has no unlabelled rows: nothing is dropped
        assert len(split.examples) == len(rows), task.name
        assert len({e.id for e in split.examples}) == len(rows), f"{task.name}: ids not unique"
        for ex in split.examples:
            assert ex.task == task.name and [k for k, _ in ex.fields] == [
                f for f in task.fields if f not in task.optional_fields]
            if not task.generative:
                assert ex.label in ex.options, (task.name, ex.id)


def test_local_directories_match_the_registry_schema(data_dir):
    """Every local dir of a registered task: its split files are the registry's split names and its
    columns hold every column the registry reads (in the hub schema)."""
    by_dir = collections.defaultdict(list)
    for task in tasks.all_tasks():
        if task.source.local_format == "hf":
            by_dir[task.source.local_dir].append(task)
    checked = 0
    for directory in sorted(p for p in data_dir.iterdir() if p.is_dir() and p.name in by_dir):
        stems = {t.source.local_stem(k, f) for t in by_dir[directory.name]
                 for k in ("train", "eval") for f in (False, True)}
        files = sorted(directory.glob("*.jsonl"))
        assert files
        for path in files:
            if path.stem not in stems:
                # extra labelled splits (arc/openbookqa validation) are fine, if not the eval split
                assert path.stem == "validation", path
            columns = set(json.loads(path.open(encoding="utf-8").readline()))
            for task in by_dir[directory.name]:
                required = set(task.source.columns) - set(task.source.optional_columns)
                assert required <= columns, (task.name, path, required - columns)
                assert columns <= set(task.source.columns) | {"idx", "id", "uid", "reason",
                                                              "fine_label", "start1", "start2",
                                                              "end1", "end2"}, (task.name, path)
            checked += 1
    assert checked >= 40


def _raw_label_strings(task: tasks.Task, rows: list[dict]) -> list[str]:
    """Gold strings computed straight from raw rows with the README's encodings."""
    name = task.name
    if name in RAW_LABELS or name == "mnli" or name.startswith("anli"):
        table = RAW_LABELS.get(name) or RAW_LABELS["mnli_matched" if name == "mnli" else "anli_r1"]
        return [table[r["label"]] for r in rows]
    if name == "trec":
        return [TREC[r["coarse_label"]] for r in rows]
    if name == "stsb":
        return [str(int(r["label"] + 0.5)) for r in rows]
    if name in ("copa", "piqa", "cosmos_qa"):
        cols = {"copa": ("choice1", "choice2"), "piqa": ("sol1", "sol2"),
                "cosmos_qa": ("answer0", "answer1", "answer2", "answer3")}[name]
        clean = (lambda s: s.replace(" .", ".")) if name == "cosmos_qa" else (lambda s: s)
        return [clean(r[cols[r["label"]]]) for r in rows]
    if name in ("arc", "arc_easy", "openbookqa"):
        return [r["choices"]["text"][r["choices"]["label"].index(r["answerKey"])] for r in rows]
    if name == "squad":
        return [r["answers"]["text"][0] for r in rows]
    raise AssertionError(f"no raw-label reference for {name}")


def test_label_distributions_match_the_raw_files(data_dir):
    for task, kind, path in _local_hf_tasks(data_dir):
        rows = _raw_rows(path)
        examples = sources.load_examples(task, kind, data_dir=str(data_dir))
        assert collections.Counter(e.label for e in examples) == collections.Counter(
            _raw_label_strings(task, rows)), (task.name, kind)


def test_parquet_gives_the_same_examples_as_jsonl(data_dir, tmp_path):
    for name, rel in (("multirc", "multirc/validation.jsonl"), ("arc", "arc_challenge/test.jsonl")):
        task = tasks.get_task(name)
        table = pa.Table.from_pylist(_raw_rows(data_dir / rel))
        (tmp_path / task.source.local_dir).mkdir()
        pq.write_table(table, tmp_path / task.source.local_dir / f"{pathlib.Path(rel).stem}.parquet")
        from_parquet = sources.load_split(task, "eval", data_dir=str(tmp_path))
        assert from_parquet.origin.endswith(".parquet")
        assert from_parquet.examples == sources.load_examples(task, "eval", data_dir=str(data_dir))


def test_bigbench_local_split_is_disjoint_and_complete(data_dir):
    task_json = json.loads((data_dir / "bigbench/causal_judgment/task.json").read_text())
    train = sources.load_examples("causal_judgment", "train", data_dir=str(data_dir))
    test = sources.load_examples("causal_judgment", "eval", data_dir=str(data_dir))
    assert len(train) + len(test) == len(task_json["examples"]) == 190
    assert len(train) == round(0.2 * 190) and not {e.id for e in train} & {e.id for e in test}
    first = task_json["examples"][0]
    ex0 = next(e for e in train + test if e.id == "0")
    assert ex0.options == tuple(first["target_scores"])
    assert ex0.label == max(first["target_scores"], key=first["target_scores"].get)
    assert ex0.field("question").endswith(first["input"].strip())
    assert ex0.field("question").startswith(task_json["task_prefix"].strip())
    for name, n in (("tracking_shuffled_objects_three", 3), ("tracking_shuffled_objects_seven", 7)):
        examples = sources.load_examples(name, "eval", data_dir=str(data_dir))
        assert examples and all(len(e.options) == n and e.label in e.options for e in examples)
    logical = sources.load_split("logical_deduction", "eval", data_dir=str(data_dir))
    assert {e.id.split(":")[0] for e in logical.examples} == {
        "three_objects", "five_objects", "seven_objects"}


def test_missing_task_gives_one_message_listing_every_source(tmp_path):
    with pytest.raises(sources.TaskDataNotFoundError) as info:
        sources.load_examples("story_cloze", "eval", data_dir=str(tmp_path))
    message = str(info.value)
    assert "'story_cloze'" in message and f"{tmp_path}/story_cloze/test.jsonl|.parquet not found" in message
    for part in ("- local:", "- hub: not on the hub", "- tfds: no TFDS dataset",
                 "--config.data_dir", "T5X_LIKE_DATA_DIR"):
        assert part in message


@pytest.mark.skipif(sources.hub_reachable(), reason="the hub is reachable: it would download")
def test_offline_hub_fails_fast_with_reason(tmp_path):
    import time
    start = time.monotonic()
    with pytest.raises(sources.TaskDataNotFoundError) as info:
        sources.load_examples("mnli_mismatched", "eval", data_dir=str(tmp_path),
                              cache_dir=str(tmp_path / "cache"))
    assert time.monotonic() - start < 15
    assert "- hub: nyu-mll/glue/mnli[validation_mismatched]" in str(info.value)
    assert "hub unreachable" in str(info.value)


def test_missing_split_is_named():
    with pytest.raises(sources.MissingSplitError, match="'wsc273' has no train split"):
        sources.load_examples("wsc273", "train")
    with pytest.raises(ValueError, match="split must be 'train' or 'eval'"):
        sources.load_examples("rte", "validation")


def test_resolve_data_dir(monkeypatch, tmp_path):
    from_env, from_config = tmp_path / "env", tmp_path / "config"
    from_env.mkdir()
    from_config.mkdir()
    monkeypatch.setenv(sources.ENV_DATA_DIR, str(from_env))
    assert sources.resolve_data_dir(str(from_config)) == str(from_config)
    assert sources.resolve_data_dir(None) == str(from_env)
    monkeypatch.delenv(sources.ENV_DATA_DIR)
    assert sources.resolve_data_dir(None) is None


def test_a_data_dir_that_does_not_exist_is_named_in_one_line(monkeypatch, tmp_path):
    missing = tmp_path / "nonexistent" / "tasks"
    with pytest.raises(sources.DataDirNotFoundError, match=r"^--config.data_dir=.*nonexistent/tasks: no such "
                       r"directory"):
        sources.load_examples("rte", "eval", data_dir=str(missing))
    monkeypatch.setenv(sources.ENV_DATA_DIR, str(missing))
    with pytest.raises(sources.DataDirNotFoundError, match=r"^\$T5X_LIKE_DATA_DIR=.*: no such directory"):
        sources.load_examples("rte", "eval")


def test_env_var_is_used_when_no_data_dir_given(data_dir, monkeypatch):
    monkeypatch.setenv(sources.ENV_DATA_DIR, str(data_dir))
    split = sources.load_split("rte", "eval")
    assert split.origin == f"local:{data_dir / 'rte' / 'validation.jsonl'}"


def test_tfds_numpy_rows_become_hub_schema_rows():
    import numpy as np
    row = {"question": b"Why?", "choices": {"text": np.array([b"a", b"b"]), "label": np.array([b"A", b"B"])},
           "answerKey": b"B", "idx": np.int64(4)}
    converted = sources._from_numpy(row)
    assert converted == {"question": "Why?", "choices": {"text": ["a", "b"], "label": ["A", "B"]},
                         "answerKey": "B", "idx": 4}
    assert tasks.get_task("arc").to_example(converted, 0).label == "b"
