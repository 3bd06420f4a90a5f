"""The prepared data directory: determinism, pairing, example provenance, mixtures, errors, CLI."""
import collections
import dataclasses
import re
import hashlib
import json
import pathlib
import subprocess
import sys

import pytest

from configs.data import default as default_config
from conftest import shared_path
from t5x_like import io_utils
from t5x_like.data import pipeline
from t5x_like.data.examples import Example

REPO = pathlib.Path(__file__).resolve().parents[1]
TASKS = "rte,copa,sst2,squad,causal_judgment,mnli"
MAIN_FORMATS = ("flan", "samplegen", "gold_pipeline", "base_d")
ROW_KEYS = {"id", "task", "format", "split", "prompt", "target", "label", "options", "references",
            "template_id", "ic_ids", "ic_tasks"}


def make_config(data_dir, **overrides):
    config = default_config.get_config()
    config.data_dir = str(data_dir)
    config.tasks = TASKS
    config.num_test = 30
    config.carve_example_pool = True
    for key, value in overrides.items():
        config[key] = value
    return config


def rows(root: pathlib.Path, relative: str) -> list[dict]:
    return io_utils.read_jsonl(str(root / relative))


def all_files(root: pathlib.Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def prepared(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared")
    manifest = pipeline.prepare(make_config(data_dir), out)
    return out, manifest


def test_rerun_is_byte_identical(prepared, data_dir, tmp_path):
    out, _ = prepared
    pipeline.prepare(make_config(data_dir), tmp_path)
    assert all_files(tmp_path) == all_files(out)


def test_manifest_names_the_builtin_templates(prepared):
    _, manifest = prepared
    builtin = REPO / "t5x_like" / "data" / "templates" / "flan_style.json"
    assert manifest["templates"] == {"file": "builtin", "sha256": hashlib.sha256(builtin.read_bytes()).hexdigest()}


def test_authors_template_file_is_used_recorded_and_byte_identical_on_rerun(data_dir, tmp_path):
    authors = shared_path("reference", "ukplab", "prompts", "flan_orig.py")
    config = make_config(data_dir, tasks="rte,sst2", num_test=8, mixture="", templates_file=str(authors))
    first = pipeline.prepare(config, tmp_path / "a")
    pipeline.prepare(config, tmp_path / "b")
    assert all_files(tmp_path / "a") == all_files(tmp_path / "b")
    assert first["templates"] == {"file": str(authors), "sha256": hashlib.sha256(authors.read_bytes()).hexdigest()}
    assert first["bigbench_templates"] == {"file": "builtin"}
    for relative in first["files"]:
        assert all(r["template_id"].startswith("flan_orig:") for r in rows(tmp_path / "a", relative))
    own = rows(tmp_path / "a", "flan/rte/test.jsonl")
    builtin = pipeline.prepare(make_config(data_dir, tasks="rte", num_test=8, mixture="", formats="flan"), tmp_path / "c")
    assert builtin["templates"]["file"] == "builtin"
    assert [r["id"] for r in rows(tmp_path / "c", "flan/rte/test.jsonl")] == [r["id"] for r in own]  # same items
    assert all(a["prompt"] != b["prompt"] for a, b in zip(own, rows(tmp_path / "c", "flan/rte/test.jsonl")))


def test_authors_bigbench_styles_are_used_and_recorded(data_dir, tmp_path):
    styles = shared_path("reference", "ukplab", "prompts", "templates.json")
    config = make_config(data_dir, tasks="causal_judgment", num_test=2, mixture="", formats="base_d_bad_prompt_1",
                         bigbench_templates_file=str(styles))
    manifest = pipeline.prepare(config, tmp_path)
    assert manifest["bigbench_templates"] == {"file": str(styles),
                                              "sha256": hashlib.sha256(styles.read_bytes()).hexdigest()}
    lead = json.loads(styles.read_text())["bigbench-bad-prompt-1"].split("{question}")[0]
    assert all(r["prompt"].startswith(lead) for r in rows(tmp_path, "base_d_bad_prompt_1/causal_judgment/test.jsonl"))


def test_bad_template_file_fails_before_writing(data_dir, tmp_path):
    bad = tmp_path / "flan_orig.py"
    bad.write_text("PATTERNS = {'rte': []}")
    out = tmp_path / "out"
    with pytest.raises(pipeline.templates.TemplateError, match="rte: expected a non-empty list of templates"):
        pipeline.prepare(make_config(data_dir, templates_file=str(bad)), out)
    assert not out.exists()


def test_another_seed_draws_differently(prepared, data_dir, tmp_path):
    out, _ = prepared
    pipeline.prepare(make_config(data_dir, seed=7, tasks="rte", mixture=""), tmp_path)
    for relative in ("flan/rte/test.jsonl", "samplegen/rte/train.jsonl"):
        ours, theirs = rows(out, relative), rows(tmp_path, relative)
        assert [r["id"] for r in ours] != [r["id"] for r in theirs]
    first = {r["id"]: r["ic_ids"] for r in rows(out, "gold_pipeline/rte/test.jsonl")}
    second = {r["id"]: r["ic_ids"] for r in rows(tmp_path, "gold_pipeline/rte/test.jsonl")}
    shared = set(first) & set(second)
    assert shared and any(first[i] != second[i] for i in shared)


def test_every_line_has_the_schema_and_labels_are_options(prepared):
    out, manifest = prepared
    assert manifest["files"]
    for relative in manifest["files"]:
        for row in rows(out, relative):
            assert set(row) == ROW_KEYS, relative
            if row["options"]:
                assert row["label"] in row["options"], (relative, row["id"])
            assert len(row["ic_ids"]) == len(row["ic_tasks"])
            assert (row["target"] != "") == (row["split"] == "train")


def test_test_sets_are_paired_across_formats(prepared):
    out, manifest = prepared
    for task in TASKS.split(","):
        orders = {fmt: [r["id"] for r in rows(out, f"{fmt}/{task}/test.jsonl")] for fmt in MAIN_FORMATS}
        assert len({tuple(ids) for ids in orders.values()}) == 1, task
        assert len(orders["flan"]) == min(30, manifest["tasks"][task]["test_items"])
        assert len(set(orders["flan"])) == len(orders["flan"])


def test_samplegen_examples_come_from_the_other_half_of_train(prepared, data_dir):
    out, _ = prepared
    train_ids = {str(json.loads(line)["idx"]) for line in (data_dir / "rte" / "train.jsonl").open()}
    main_half = {r["id"] for r in rows(out, "samplegen/rte/train.jsonl")}
    assert len(main_half) == 1000 and main_half <= train_ids
    for relative in ("samplegen/rte/train.jsonl", "gold_pipeline/rte/test.jsonl"):
        for row in rows(out, relative):
            assert len(row["ic_ids"]) == 2 and len(set(row["ic_ids"])) == 2
            assert set(row["ic_ids"]) <= train_ids - main_half, (relative, row["id"])
            assert row["ic_tasks"] == ["rte", "rte"]
    for row in rows(out, "samplegen/rte/train.jsonl"):
        assert row["id"] not in row["ic_ids"]


def test_carved_pools_are_disjoint_from_test_items_and_recorded(prepared):
    out, manifest = prepared
    for task in ("squad", "mnli", "causal_judgment"):
        pool = manifest["tasks"][task]["example_pool"]
        test_ids = {r["id"] for r in rows(out, f"gold_pipeline/{task}/test.jsonl")}
        if task == "causal_judgment":  # BIG-bench: gold examples from its validation split
            assert pool["origin"] == "train_split"
            continue
        assert pool["origin"] == "carved_from_eval" and pool["size"] == len(pool["ids"]) == 100
        assert not test_ids & set(pool["ids"])
        for row in rows(out, f"gold_pipeline/{task}/test.jsonl"):
            assert set(row["ic_ids"]) <= set(pool["ids"]) and row["id"] not in row["ic_ids"]


def test_mixture_rates_are_the_hand_computed_examples_proportional_rates(prepared):
    out, manifest = prepared
    # train splits here: rte 2000, sst2 2000, copa 400 (all under the 3000 cap); SampleGen uses half
    expected = {"flan_default": {"rte": 2000, "sst2": 2000, "copa": 400},
                "samplegen_default": {"rte": 1000, "sst2": 1000, "copa": 200}}
    for name, sizes in expected.items():
        entry = manifest["mixtures"][name]
        total = sum(sizes.values())
        assert entry["rates"] == pytest.approx({t: n / total for t, n in sizes.items()})
        assert entry["counts"] == sizes
        mixed = rows(out, f"mixtures/{name}/train.jsonl") + rows(out, f"mixtures/{name}/validation.jsonl")
        assert collections.Counter(r["task"] for r in mixed) == sizes
        assert entry["validation"] == round(0.1 * total) == len(rows(out, f"mixtures/{name}/validation.jsonl"))
        assert "mnli" in entry["missing_tasks"] and "hellaswag" in entry["missing_tasks"]


def test_unknown_task_fails_before_writing(data_dir, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(pipeline.DataConfigError, match="rtee"):
        pipeline.prepare(make_config(data_dir, tasks="rte,rtee"), out)
    assert not out.exists()


def test_missing_train_split_without_carving_names_task_split_and_option(data_dir, tmp_path):
    out = tmp_path / "out"
    config = make_config(data_dir, tasks="rte,squad", carve_example_pool=False, mixture="")
    with pytest.raises(pipeline.DataConfigError, match=r"squad.*train.*carve_example_pool"):
        pipeline.prepare(config, out)
    assert not out.exists()
    pipeline.prepare(make_config(data_dir, tasks="squad", carve_example_pool=False, formats="flan,base_d",
                                 mixture=""), out)


def test_explicit_task_without_data_is_an_error(data_dir, tmp_path):
    with pytest.raises(pipeline.DataConfigError, match="hellaswag"):
        pipeline.prepare(make_config(data_dir, tasks="hellaswag"), tmp_path / "out")


def test_cli_writes_a_prepared_dir(data_dir, tmp_path):
    out = tmp_path / "cli"
    command = [sys.executable, "-m", "launch.prepare_data", "--config=configs/data/default.py",
               f"--output_dir={out}", f"--config.data_dir={data_dir}", "--config.tasks=rte,sst2",
               "--config.num_test=5", "--config.seed=3", "--config.formats=flan,base_d"]
    subprocess.run(command, cwd=REPO, check=True, capture_output=True, timeout=120)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["seed"] == 3 and sorted(manifest["tasks"]) == ["rte", "sst2"]
    assert len(rows(out, "base_d/sst2/test.jsonl")) == 5
    assert set(manifest["mixtures"]) == {"flan_default"}
    bad = subprocess.run(command[:-1] + ["--config.formats=flan,nope"], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode != 0 and "nope" in bad.stderr


def test_empty_mixture_is_an_error_before_writing(data_dir, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(pipeline.DataConfigError, match="flan_setup4.*mnli"):
        pipeline.prepare(make_config(data_dir, tasks="rte,mnli", formats="flan", mixture="setup4"), out)
    assert not out.exists()


def test_every_task_of_the_local_bundle_prepares(data_dir, tmp_path):
    from configs.data import offline
    from t5x_like.data import tasks as registry

    config = offline.get_config()
    config.update(dict(data_dir=str(data_dir), num_test=5))
    manifest = pipeline.prepare(config, tmp_path)
    def has_local_file(task) -> bool:
        stems = {task.source.local_stem(kind) for kind in ("train", "eval")} - {None}
        return (any((data_dir / task.source.local_dir / f"{stem}.jsonl").is_file() for stem in stems)
                or any((data_dir / "bigbench" / f).is_file() for f in task.source.bigbench_files))

    local = {task.name for task in registry.all_tasks() if has_local_file(task)}
    assert len(local) >= 30
    assert local <= set(manifest["tasks"]), sorted(local - set(manifest["tasks"]))
    for task in local:
        for fmt in MAIN_FORMATS:
            assert f"{fmt}/{task}/test.jsonl" in manifest["files"], (fmt, task)
    assert manifest["mixtures"]["samplegen_default"]["tasks"]


def test_training_label_distribution_matches_the_source(prepared, data_dir):
    out, _ = prepared
    source = collections.Counter({0: "yes", 1: "no"}[json.loads(line)["label"]]
                                 for line in (data_dir / "rte" / "train.jsonl").open())
    assert collections.Counter(r["label"] for r in rows(out, "flan/rte/train.jsonl")) == source


def test_relevance_partners_and_ablation_examples(data_dir, tmp_path):
    from t5x_like.data import tasks as registry

    config = make_config(data_dir, tasks="rte,cb,copa,sst2,mrpc",
                         formats="samplegen,samplegen_relevance,gold_pipeline_ablation")
    manifest = pipeline.prepare(config, tmp_path)
    for task in ("rte", "cb", "copa", "sst2", "mrpc"):
        partner = manifest["tasks"][task]["relevance_partner"]
        assert registry.get_task(partner).category == registry.get_task(task).category
        assert registry.get_task(partner).cluster != registry.get_task(task).cluster
        for row in rows(tmp_path, f"samplegen_relevance/{task}/train.jsonl"):
            assert row["ic_tasks"] == [partner, partner]
    first_examples = {(r["ic_tasks"][0], r["ic_ids"][0])
                      for r in rows(tmp_path, "mixtures/samplegen_default/train.jsonl")}
    for row in rows(tmp_path, "gold_pipeline_ablation/rte/test.jsonl"):
        assert len(row["ic_ids"]) == 2
        assert set(zip(row["ic_tasks"], row["ic_ids"])) <= first_examples


def test_too_small_example_pool_fails_before_writing(tmp_path):
    data = tmp_path / "data" / "rte"
    data.mkdir(parents=True)
    lines = [{"sentence1": f"premise {i}", "sentence2": f"hypothesis {i}", "label": i % 2, "idx": i}
             for i in range(3)]
    for split in ("train", "validation"):
        (data / f"{split}.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "out"
    with pytest.raises(pipeline.DataConfigError, match=r"rte: its example pool \(train_half\) holds 1"):
        pipeline.prepare(make_config(tmp_path / "data", tasks="rte", mixture=""), out)
    assert not out.exists()


def test_translation_direction_follows_the_template(tmp_path):
    data = tmp_path / "data" / "wmt16_de-en"
    data.mkdir(parents=True)
    for split, n in (("train", 12), ("test", 6)):
        lines = [{"translation": {"de": f"Satz {split} {i}", "en": f"sentence {split} {i}"}} for i in range(n)]
        (data / f"{split}.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "out"
    pipeline.prepare(make_config(tmp_path / "data", tasks="wmt16/de-en", mixture="", num_test=6,
                                 formats="flan,samplegen,gold_pipeline"), out)
    directions = set()
    for relative in ("samplegen/wmt16/de-en/train.jsonl", "gold_pipeline/wmt16/de-en/test.jsonl"):
        for row in rows(out, relative):
            text = row["prompt"] + row["target"]
            assert row["references"] == [row["label"]]
            to_german = row["label"].startswith("Satz")
            directions.add(to_german)
            shown, hidden = ("Sent2", "Sent1") if to_german else ("Sent1", "Sent2")
            assert f"\n{shown} Solution: " in text and f"{hidden} Solution" not in text
            # example blocks: no example numbers (as the original), same direction as the item
            assert f"Example 1:\nLang1: German\nLang2: English\n{shown}: " in text
            assert f"\n{hidden}:" not in text and "\nAnswer: " in text
    assert directions == {True, False}


def test_readers_return_listed_files_and_refuse_unprepared_ones(prepared):
    out, _ = prepared
    assert pipeline.read_split(out, "flan", "rte") == rows(out, "flan/rte/test.jsonl")
    assert pipeline.read_split(out, "samplegen", "rte", "train") == rows(out, "samplegen/rte/train.jsonl")
    assert pipeline.read_mixture(out, "flan_default", "validation") == rows(out, "mixtures/flan_default/validation.jsonl")
    with pytest.raises(FileNotFoundError, match="base_d/cb/test"):
        pipeline.read_split(out, "base_d", "cb")
    with pytest.raises(FileNotFoundError, match="prepare_data"):
        pipeline.read_manifest(out / "flan")


@pytest.mark.parametrize("name,arg", [("default", None), ("offline", None), ("mixture", "setup3"),
                                      ("variants", "setup1"), ("bigbench", None)])
def test_every_data_config_names_known_tasks_formats_and_setups(name, arg):
    import importlib

    module = importlib.import_module(f"configs.data.{name}")
    config = module.get_config(arg) if arg else module.get_config()
    assert set(default_config.get_config().keys()) == set(config.keys())
    pipeline._selected_tasks(config.tasks)
    pipeline._selected_formats(config.formats)
    pipeline._check_setups(config, pipeline._selected_formats(config.formats))


def test_faithful_solution_blocks_show_what_the_originals_second_formatting_left(data_dir, tmp_path):
    """create_mix_prompts formatted a Solution block's item twice: qnli's quoting shows twice, copa's
    options only there; its in-context examples (formatted once) and wic never show an options line."""
    config = make_config(data_dir, tasks="qnli,copa", num_test=3, mixture="", faithful=True,
                         formats="samplegen,gold_pipeline")
    pipeline.prepare(config, tmp_path)
    qnli = rows(tmp_path, "gold_pipeline/qnli/test.jsonl")[0]["prompt"]
    examples, solution = qnli.split("\nSolution:\n")
    assert re.search(r'^Question 1: "[^"]', examples, re.M) and re.search(r'^Question Solution: ""', solution, re.M)
    copa = rows(tmp_path, "samplegen/copa/train.jsonl")[0]["target"]
    examples, solution = copa.split("\nSolution:\n")
    assert "Options 1:" not in examples and "\nOptions Solution: " in solution
    wic = [Example("wic", str(i), (("word", "w"), ("sentence1", f"s{i}"), ("sentence2", f"t{i}")), "True",
                   ("True", "False")) for i in range(4)]
    for faithful, shown in ((True, False), (False, True)):
        ctx = pipeline.Context(seed=0, faithful=faithful, pools={"wic": pipeline.ExamplePool(wic[1:])})
        row = pipeline.format_item(wic[0], pipeline.FORMATS["gold_pipeline"], "test", ctx)
        assert ("Options 1: True; False" in row["prompt"]) == shown
    default = make_config(data_dir, tasks="qnli", num_test=3, mixture="", formats="gold_pipeline")
    pipeline.prepare(default, tmp_path / "default")
    assert '""' not in rows(tmp_path / "default", "gold_pipeline/qnli/test.jsonl")[0]["prompt"]


def test_faithful_hellaswag_solution_block_resplits_the_endings():
    """Hand-derived from format_sample's second pass over a hellaswag row (endings already joined by
    "; ", split again at ";"): pieces listed with their "." cut, the answer the piece at its index."""
    def row(i: int, label: str) -> dict:
        return {"ind": i, "ctx": f"Ctx {i}.", "endings": ["a.", "b", "c; d.", "e..."], "label": label}
    task = pipeline.registry.get_task("hellaswag")
    item, *pool = [task.to_example(row(i, "2"), i) for i in range(4)]
    assert item.options == ("a", "b", "c; d", "e") and item.label == "c; d"
    ctx = pipeline.Context(seed=0, faithful=True, pools={"hellaswag": pipeline.ExamplePool(pool)})
    target = pipeline.format_item(item, pipeline.FORMATS["samplegen"], "train", ctx)["target"]
    examples, solution = target.split("\nSolution:\n")
    assert "\nEndings 1: a; b; c; d; e\nAnswer 1: c; d\n" in examples
    assert solution.startswith("Context Solution: Ctx 0.\nEndings Solution: a;  b;  c;  d;  e\nAnswer Solution:  c\n")
    default = pipeline.format_item(item, pipeline.FORMATS["samplegen"], "train", dataclasses.replace(ctx, faithful=False))
    assert "\nEndings Solution: a; b; c; d; e\nAnswer Solution: c; d\n" in default["target"]
