"""The settings runner: settings, scoring contexts, scores, errors before work, pairing, determinism,
resumption and the stop-string policy, on real prepared task data and a tiny random Llama (real model
code, init_params, the real Llama-2 tokenizer)."""
from __future__ import annotations

import json
import os
import pathlib

import flax.linen as nn
import jax
import numpy as np
import pytest

from t5x_like import evaluation as ev
from t5x_like.evaluation import config as ev_config
from t5x_like.evaluation import contexts as ev_contexts
from t5x_like.evaluation import models as ev_models
from t5x_like.evaluation import records as ev_records
from t5x_like.evaluation import task_scores as ev_scores
from t5x_like.evaluation import store as ev_store
from t5x_like import settings as registry
from t5x_like import io_utils, metrics
from t5x_like.data import pipeline
from t5x_like.engine import Engine
from t5x_like.models.config import LoraConfig, ModelConfig
from t5x_like.models.llama import init_params
from t5x_like.tokenization import load_tokenizer

from eval_helpers import BATCH_SIZE, llama2_tokenizer, MAX_LENGTH, TINY_FIELDS, eval_config, prepare_data, \
    save_tiny_model

MAIN = "base_d,gold_pipeline,flan_d,samplegen_d,samplegen_pipeline"
NEWLINE_ID = 13  # "<0x0A>" in the Llama-2 vocabulary


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data(tmp_path_factory, data_dir) -> pathlib.Path:
    """rte (2 options), cb (3 options), squad (generative): 4 paired test items in the 4 main formats."""
    return prepare_data(tmp_path_factory.mktemp("data"), data_dir, "rte,cb,squad", num_test=4)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> pathlib.Path:
    return save_tiny_model(tmp_path_factory.mktemp("tiny") / "model", seed=0)


def tiny_engine(seed: int, newline_scale: float = 0.0) -> Engine:
    """A random tiny Llama; `newline_scale` > 0 makes its newline logit large for many hidden states."""
    config = ModelConfig.from_hf_dict(TINY_FIELDS)
    params = nn.meta.unbox(jax.jit(init_params, static_argnums=0)(config, jax.random.key(seed)))
    if newline_scale:
        kernel = np.array(params["lm_head"]["kernel"])
        kernel[:, NEWLINE_ID] = newline_scale * np.random.default_rng(seed).standard_normal(kernel.shape[0])
        params["lm_head"]["kernel"] = kernel
    return Engine(config, params, load_tokenizer(llama2_tokenizer()), batch_size=BATCH_SIZE, max_length=MAX_LENGTH,
                  progress=False)


@pytest.fixture(scope="module")
def engines() -> dict[str, Engine]:
    """Three different random models as base, FLAN-tuned and SampleGen-tuned (compiled once per module)."""
    return {"base": tiny_engine(0), "flan": tiny_engine(1), "samplegen": tiny_engine(2)}


def read_predictions(workdir: pathlib.Path, setting: str, task: str) -> list[dict]:
    return io_utils.read_jsonl(ev_store.predictions_path(str(workdir), setting, task))


def data_ids(data: pathlib.Path, task: str) -> list[str]:
    return [r["id"] for r in io_utils.read_jsonl(str(pipeline.split_path(data, "flan", task, "test")))]


# --- pure parts --------------------------------------------------------------------------------


def test_settings_registry_variants_and_order():
    assert registry.get_setting("flan_d") == registry.Setting("flan_d", "flan", "flan", "tuned", "flan_d")
    assert registry.get_setting("gold_pipeline_unified") == registry.Setting(
        "gold_pipeline_unified", "gold_pipeline_unified", "base", "base", "gold_pipeline")
    adv = registry.get_setting("samplegen_pipeline_adv")
    assert (adv.format, adv.model, adv.extraction, adv.source) == ("samplegen_adv", "base", "base", "samplegen_adv")
    assert (adv.role, adv.main, adv.run_model) == ("base", "samplegen_pipeline", "samplegen")
    assert registry.get_setting("flan_adv").lettered and not registry.get_setting("flan_d").lettered
    with pytest.raises(registry.UnknownSettingError, match="unknown setting 'flan'.*base_d"):
        registry.get_setting("flan")
    order = [s.name for s in registry.ordered_settings(["samplegen_pipeline", "flan_d", "samplegen_d", "flan_d"])]
    assert order == ["samplegen_d", "samplegen_pipeline", "flan_d"]


def test_stop_strings_and_scoring_contexts():
    s = registry.get_setting
    assert ev_contexts.stop_strings(s("flan_d")) == ("END_EXAMPLES",)
    assert ev_contexts.stop_strings(s("gold_pipeline")) == ("\n", "END_EXAMPLES")
    assert ev_contexts.stop_strings(s("base_d"), enabled=False) == ()
    assert ev_contexts.ranking_context(s("base_d"), "Is it?\n\nyes; no") == "Is it?\n\nyes; no\nAnswer:"
    assert ev_contexts.ranking_context(s("base_d_adv"), "Q") == "Q\nAnswer:"
    assert ev_contexts.ranking_context(s("gold_pipeline"), "P\nAnswer Solution:") == "P\nAnswer Solution:"
    assert ev_contexts.ranking_context(s("flan_d"), "[INST] q[/INST]") == "[INST] q[/INST]\nAnswer Solution:"
    assert ev_contexts.ranking_context(s("samplegen_pipeline"), "Ex\nAnswer Solution:") == "Ex\nAnswer Solution:"
    assert ev_contexts.ranking_context(s("samplegen_pipeline"), "Ex without") == "Ex without\nAnswer Solution:"
    requests = ev_contexts.option_requests("ctx", ["yes", "no"])
    assert [(r.context, r.continuation) for r in requests] == [("ctx", " yes"), ("ctx", " no")]


def _record(label, matched, mode="generate", norm=None, options=("yes", "no"), refs=None, answer=None):
    return {"label": label, "references": refs or [label], "options": list(options), "mode": mode,
            "matched_option": matched, "answer": answer if answer is not None else (matched or ""),
            "acc_norm_option": norm, "truncated": False}


def test_task_metrics_and_score_row_by_hand():
    task = ev_records.TaskInfo("rte", "accuracy", "nli", "NLU")
    records = [_record("yes", "yes"), _record("no", "yes"), _record("no", None)]
    row = ev_scores.score_row(registry.get_setting("gold_pipeline"), task, records, model="m", adapter="", seed=1,
                       setup="default", mode="generate", faithful=False)
    assert row.row["value"] == pytest.approx(100 / 3) and row.row["n"] == 3 and row.row["num_options"] == 2
    assert row.row["seen"] is True and row.row["metric"] == "accuracy" and row.row["cluster"] == "nli"
    loglik = [_record("yes", "yes", "loglik", "yes"), _record("no", "yes", "loglik", "no")]
    values = ev_scores.task_metrics(task, loglik, faithful=False)
    assert values == {"accuracy": 50.0, "acc_norm_accuracy": 100.0}
    # squad: generative, every reference counts, SQuAD-normalised correctness per item
    squad = ev_records.TaskInfo("squad", "squad_em_f1", "reading_comp", "NLU")
    gen = [_record("Paris", None, options=(), refs=["Paris", "paris city"], answer="the Paris"),
           _record("1990", None, options=(), refs=["1990"], answer="in 1990")]
    values = ev_scores.task_metrics(squad, gen, faithful=False)
    assert values["em"] == 50.0 and values["f1"] == pytest.approx((100 + 200 / 3) / 2)
    assert ev_records.is_correct(gen[0], "the Paris", False) and not ev_records.is_correct(gen[1], "in 1990", False)
    csv_text = ev_store.scores_csv([row.row])
    assert csv_text.splitlines()[0] == ",".join(ev_store.SCORE_COLUMNS)


def test_adapter_dir_loads_as_merged_lora(tmp_path):
    from t5x_like import checkpoints, hf_io
    from flax import traverse_util

    from t5x_like.models.lora import merge_lora, split_lora

    lora = LoraConfig(rank=4, alpha=8.0, dropout=0.0, targets=("q_proj", "v_proj"))
    config = ModelConfig.from_hf_dict(TINY_FIELDS).replace(lora=lora)
    params = nn.meta.unbox(jax.jit(init_params, static_argnums=0)(config, jax.random.key(3)))
    rng = np.random.default_rng(7)  # B starts at zero; make the adapter do something
    params = jax.tree_util.tree_map_with_path(
        lambda p, x: rng.standard_normal(x.shape).astype(np.float32) if p[-1].key == "lora_b" else np.asarray(x),
        params)
    base, adapter = split_lora(params)
    hf_io.save_params(base, config.replace(lora=None), str(tmp_path / "base"), tokenizer_dir=str(llama2_tokenizer()))
    checkpoints.export_adapter(adapter, config, str(tmp_path / "adapter"), {})
    spec = ev_models.tuned_model_spec("flan", str(tmp_path / "adapter"), lambda: str(tmp_path / "base"))
    assert spec.adapter_over == str(tmp_path / "base")
    read_lora, leaves = checkpoints.read_adapter(spec.path, "float32")
    assert read_lora == lora and len(leaves) == 2 * 2 * config.num_layers
    engine = Engine.load(spec.adapter_over, adapter_dir=spec.path, progress=False)
    expected = traverse_util.flatten_dict(merge_lora(params, lora))
    got = traverse_util.flatten_dict(engine.params)
    assert sorted(expected) == sorted(got)
    assert all(np.allclose(expected[k], got[k], atol=1e-6) for k in expected)
    with pytest.raises(ev_config.EvalConfigError, match="neither an HF model dir"):
        ev_models.tuned_model_spec("flan", str(tmp_path), lambda: "")


# --- errors before any work --------------------------------------------------------------------


@pytest.mark.parametrize("overrides, message", [
    (dict(settings="gold_pipeline,nope"), "unknown setting 'nope'"),
    (dict(tasks="rte,wic"), r"tasks \['wic'\] are not in the prepared data"),
    (dict(settings="gold_pipeline_unified"), "no prepared data .*gold_pipeline_unified/rte/test.jsonl"),
    (dict(settings="flan_d"), "need the flan-tuned model; set --config.eval.flan_model"),
    (dict(settings="samplegen_pipeline", samplegen_model="x"), "predictions/samplegen_d/rte.jsonl is missing"),
    (dict(mode="beam"), "eval.mode='beam'"),
    (dict(settings="gold_pipeline", max_new_tokens_base=1000, overlong="error"),
     "prompts longer than the model context"),
])
def test_config_errors_raise_before_work(tmp_path, data, model_dir, engines, overrides, message):
    config = eval_config(data, model_dir, **{"tasks": "rte", **overrides})
    with pytest.raises((ev_config.EvalConfigError, registry.UnknownSettingError), match=message):
        ev.run(config, str(tmp_path), engines={"base": engines["base"]})
    assert not (tmp_path / "shards").exists() and not (tmp_path / "scores.csv").exists()


def test_missing_data_dir_names_the_fix(tmp_path, model_dir):
    config = eval_config(tmp_path / "nowhere", model_dir)
    with pytest.raises(ev_config.EvalConfigError, match="launch.prepare_data"):
        ev.run(config, str(tmp_path / "run"))


# --- runs on the tiny model --------------------------------------------------------------------


@pytest.mark.slow
def test_pairing_determinism_and_store(tmp_path, data, model_dir, engines):
    """Every setting of a task scores the same ids (the data's); two runs give identical bytes."""
    config = eval_config(data, model_dir, settings=MAIN, mode="loglik", flan_model="a", samplegen_model="b")
    first = ev.run(config, str(tmp_path / "a"), engines=engines)
    second = ev.run(config, str(tmp_path / "b"), engines=engines)
    assert first.computed_items == second.computed_items == 5 * 3 * 4
    for task in ("rte", "cb", "squad"):
        for setting in MAIN.split(","):
            records = read_predictions(tmp_path / "a", setting, task)
            assert [r["id"] for r in records] == data_ids(data, task)
            assert records == read_predictions(tmp_path / "b", setting, task)
    for name in ("scores.csv", "scores.json"):
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text()
    scores = json.loads((tmp_path / "a" / "scores.json").read_text())["scores"]
    assert {(r["setting"], r["task"]) for r in scores} == {(s, t) for s in MAIN.split(",")
                                                           for t in ("rte", "cb", "squad")}
    for name in ("config.json", "provenance.json", "identity.json"):
        assert (tmp_path / "a" / name).is_file()
    # loglik records: options ranked with the documented contexts; squad fell back to generation
    rte = read_predictions(tmp_path / "a", "flan_d", "rte")[0]
    row = io_utils.read_jsonl(str(pipeline.split_path(data, "flan", "rte", "test")))[0]
    expected = engines["flan"].score(ev_contexts.option_requests(row["prompt"] + "\nAnswer Solution:", row["options"]))
    assert rte["logprobs"] == [r.logprob for r in expected]
    ranking = metrics.rank_options(rte["logprobs"], row["options"])
    assert rte["matched_option"] == row["options"][ranking.acc_index]
    assert rte["acc_norm_option"] == row["options"][ranking.acc_norm_index]
    assert {r["mode"] for r in read_predictions(tmp_path / "a", "flan_d", "squad")} == {"generate"}
    # the pipeline continued exactly the SampleGen-D response of the same item
    sg = {r["id"]: r for r in read_predictions(tmp_path / "a", "samplegen_d", "cb")}
    for r in read_predictions(tmp_path / "a", "samplegen_pipeline", "cb"):
        assert r["prompt_sha256"] == ev_contexts.prompt_hash(sg[r["id"]]["raw_output"])


@pytest.mark.slow
def test_resume_recomputes_only_missing_shards(tmp_path, data, model_dir, engines, caplog):
    config = eval_config(data, model_dir, settings="gold_pipeline", tasks="rte,cb", shard_size=2)
    work = tmp_path / "run"
    full = ev.run(config, str(work), engines=engines)
    assert full.computed_items == 8
    before = {t: read_predictions(work, "gold_pipeline", t) for t in ("rte", "cb")}
    scores = (work / "scores.json").read_text()
    os.remove(ev_store.predictions_path(str(work), "gold_pipeline", "cb"))
    os.remove(work / "shards" / "gold_pipeline" / "cb" / "0000002.jsonl")
    again = ev.run(config, str(work), engines=engines)
    assert again.computed_items == 2
    assert {t: read_predictions(work, "gold_pipeline", t) for t in ("rte", "cb")} == before
    assert (work / "scores.json").read_text() == scores
    caplog.clear()
    with caplog.at_level("INFO"):
        assert ev.run(config, str(work), engines=engines).computed_items == 0
    assert "nothing to do" in caplog.text


def test_identity_mismatch_is_refused(tmp_path, data, model_dir, engines):
    work = tmp_path / "run"
    config = eval_config(data, model_dir, settings="gold_pipeline", tasks="rte", num_test=2, mode="loglik")
    ev.run(config, str(work), engines=engines)
    with pytest.raises(ev_config.EvalConfigError, match=r"differs in \['mode'\]"):
        ev.run(eval_config(data, model_dir, settings="gold_pipeline", tasks="rte", num_test=2), str(work),
               engines=engines)


@pytest.mark.slow
def test_base_stop_strings_do_not_change_answers(tmp_path, data, model_dir):
    """Stopping base models at the newline after their first line gives the same extracted answers as
    generating the whole budget, including items whose output starts with a newline (regenerated)."""
    engine = tiny_engine(5, newline_scale=1.5)
    runs = {}
    for stop in (True, False):
        config = eval_config(data, model_dir, settings="base_d,gold_pipeline", tasks="rte,squad",
                             max_new_tokens_base=24, stop_strings=stop)
        ev.run(config, str(tmp_path / str(stop)), engines={"base": engine})
        runs[stop] = {(s, t): read_predictions(tmp_path / str(stop), s, t)
                      for s in ("base_d", "gold_pipeline") for t in ("rte", "squad")}
    stopped = [r for recs in runs[True].values() for r in recs]
    full = [r for recs in runs[False].values() for r in recs]
    assert [r["answer"] for r in stopped] == [r["answer"] for r in full]
    assert [r["matched_option"] for r in stopped] == [r["matched_option"] for r in full]
    assert any(r["finish_reason"] == "stop" for r in stopped)  # the newline stop was used ...
    assert any(r["raw_output"].startswith("\n") for r in full)  # ... and some outputs open with a newline
    assert all(r["raw_output"].strip() or r["finish_reason"] != "stop" for r in stopped)
