"""One experiment end to end: prepare data, evaluate the base model, tune, evaluate tuned, analyze.

Every stage is resumable (the stage functions themselves continue where they stopped) and is
skipped once its completion marker `<workdir>/stages/<stage>.json` exists; markers are written
last, atomically, so a killed run never looks finished. The workdir holds:

    config.json, provenance.json, summary.json, summary.md
    data/                          prepared tasks and mixtures (launch.prepare_data)
    train/<format>_seed<seed>/     checkpoints, metrics, export/ (launch.train)
    eval/base/                     base-model settings (launch.evaluate)
    eval/<format>_seed<seed>/      tuned settings (+ the SampleGen Pipeline for samplegen runs)
    analysis/                      correlations, tables, figures, report (launch.analyze)
"""
from __future__ import annotations

import copy
import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any, Callable

import ml_collections
from absl import logging

from t5x_like import io_utils
from t5x_like.errors import PreemptedError, UserError
from t5x_like.settings import get_setting, trained_model

STAGES = ("prepare", "evaluate_base", "train", "evaluate_tuned", "analyze")
HOST_STAGES = ("prepare", "analyze")  # JAX-free: in a multi-process run only the writing process runs them


class ExperimentError(UserError, ValueError):
    """A problem with the experiment config or workdir, found before any long work."""



@dataclasses.dataclass(frozen=True)
class TunedRun:
    """One instruction-tuned model: a training format (flan, samplegen or a variant) and a seed."""

    format: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.format}_seed{self.seed}"

    @property
    def kind(self) -> str:
        """flan or samplegen: the tuned model training on this format produces (t5x_like.settings)."""
        return trained_model(self.format)


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where each stage of one experiment reads and writes."""

    workdir: str

    def path(self, *parts: str) -> str:
        return os.path.join(self.workdir, *parts)

    @property
    def data(self) -> str:
        return self.path("data")

    def train(self, run: TunedRun) -> str:
        return self.path("train", run.name)

    def export(self, run: TunedRun) -> str:
        return self.path("train", run.name, "export")

    @property
    def eval_base(self) -> str:
        return self.path("eval", "base")

    def eval_tuned(self, run: TunedRun) -> str:
        return self.path("eval", run.name)

    @property
    def analysis(self) -> str:
        return self.path("analysis")

    def marker(self, stage: str) -> str:
        return self.path("stages", f"{stage}.json")


def parse_list(value: Any) -> list[str]:
    """A comma-separated string or a sequence -> list of non-empty stripped strings."""
    items = value.split(",") if isinstance(value, str) else list(value)
    return [str(v).strip() for v in items if str(v).strip()]


def training_formats() -> list[str]:
    """Prepared formats whose training produces a tuned model (flan, samplegen and their variants)."""
    from t5x_like.data import pipeline

    return [name for name in pipeline.FORMATS if trained_model(name)]


def tuned_runs(config: ml_collections.ConfigDict) -> list[TunedRun]:
    """Every (format, seed) model the experiment tunes, in order."""
    formats = parse_list(config.tuning.formats)
    unknown = [f for f in formats if f not in training_formats()]
    if unknown:
        raise ExperimentError(f"tuning.formats has unknown training format(s) {unknown}; known: {training_formats()}")
    return [TunedRun(f, int(s)) for f in formats for s in parse_list(config.tuning.seeds)]


def check_stages(stages: list[str]) -> None:
    """Unknown stage names -> one error listing the known ones."""
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise ExperimentError(f"unknown stage(s) {unknown}; choose from {','.join(STAGES)}")


REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # where `launch` is importable
LAUNCH_KEYS = ("process_id", "coordinator_address")  # partitioning keys of how a run was started, not what it is


def _shared_part(config: dict[str, Any]) -> dict[str, Any]:
    """A config as every process and every restart of a run shares it: without this process's rank and
    the coordinator's address (a resumed multi-process run may use another host:port)."""
    partitioning = {k: v for k, v in config.get("partitioning", {}).items() if k not in LAUNCH_KEYS}
    return {**config, "partitioning": partitioning}


def check_workdir(config: ml_collections.ConfigDict, layout: Layout) -> None:
    """A workdir belongs to one experiment config: a different one there is an error, not a merge."""
    path = layout.path("config.json")
    if not os.path.exists(path):
        return
    with open(path) as f:
        previous = _shared_part(json.load(f))
    current = _shared_part(json.loads(config.to_json_best_effort(sort_keys=True)))
    changed = io_utils.changed_keys(previous, current)
    if changed:
        raise ExperimentError(
            f"{layout.workdir} holds experiment {previous.get('experiment')!r} with a different config "
            f"(sections differ: {changed}); use a new --workdir, or delete the old one to start over")


def stage_train_config(config: ml_collections.ConfigDict, layout: Layout, run: TunedRun) -> ml_collections.ConfigDict:
    """The experiment config specialised for one tuned run: its mixture and seed."""
    from t5x_like.data import pipeline

    c = copy.deepcopy(config)
    c.unlock()
    c.seed = run.seed
    c.train.mixture_dir = os.path.dirname(str(pipeline.mixture_path(
        layout.data, pipeline.mixture_name(run.format, config.data.mixture), "train")))
    return c


def _read_marker(marker: str) -> dict[str, Any]:
    with open(marker) as f:
        return json.load(f)


def run_stage_once(stage: str, layout: Layout, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Runs a stage unless its marker exists; writes the marker (what ran, how long, outputs) last.

    Multi-process runs: every process runs the JAX stages together (SPMD); a host stage runs on the
    writing process while the others wait; markers are written by that process alone, and all
    processes pass a barrier after each stage, so the next one sees its outputs.
    """
    marker = layout.marker(stage)
    if os.path.exists(marker):
        logging.info("stage %s: complete (marker %s), skipped", stage, marker)
        return {**_read_marker(marker), "skipped": True}
    host_only = stage.split("/")[0] in HOST_STAGES and not io_utils.is_primary()
    logging.info("stage %s: %s", stage, "running on the writing process" if host_only else "running")
    start = time.time()
    outputs = None if host_only else fn()
    record = {"stage": stage, "seconds": round(time.time() - start, 1), "outputs": outputs}
    io_utils.atomic_write_json(marker, record)
    io_utils.barrier(f"stage {stage} done")
    if host_only:
        record = _read_marker(marker)
    logging.info("stage %s: done in %.1f s", stage, record["seconds"])
    return {**record, "skipped": False}


def _with_eval(config: ml_collections.ConfigDict, layout: Layout, settings: list[str], **changes: Any
               ) -> ml_collections.ConfigDict:
    """The config for one evaluation call: these settings over the experiment's prepared data."""
    c = copy.deepcopy(config)
    c.unlock()
    c.eval.settings = ",".join(settings)
    c.eval.data_dir = layout.data
    c.eval.setup = config.data.mixture or "default"
    for key, value in changes.items():
        if key == "seed":
            c.seed = value
        else:
            c.eval[key] = value
    return c


def requested_settings(config: ml_collections.ConfigDict) -> list[str]:
    """The eval settings the experiment asks for (config.eval.settings)."""
    return parse_list(config.eval.settings)


def stage_prepare(config: ml_collections.ConfigDict, layout: Layout) -> dict[str, Any]:
    """Prompt-formatted test sets and training mixtures into <workdir>/data."""
    from t5x_like.data import pipeline

    manifest = pipeline.prepare(config.data, layout.data)
    return {"data_dir": layout.data, "tasks": sorted(manifest["tasks"]), "mixtures": sorted(manifest["mixtures"]),
            "templates": manifest["templates"]["file"], "bigbench_templates": manifest["bigbench_templates"]["file"]}


def stage_evaluate_base(config: ml_collections.ConfigDict, layout: Layout) -> dict[str, Any]:
    """Base-D and the Gold Pipeline: the base model alone, no tuning needed."""
    from t5x_like import evaluation

    settings = [s for s in requested_settings(config) if get_setting(s).run_model == "base"]
    if not settings:
        return {"skipped": "no base settings requested"}
    evaluation.run(_with_eval(config, layout, settings), layout.eval_base)
    return {"results_dir": layout.eval_base, "settings": settings}


def stage_train(config: ml_collections.ConfigDict, layout: Layout, run: TunedRun) -> dict[str, Any]:
    """LoRA/full tuning of one (format, seed) model on its mixture; exports model/ and adapter/."""
    from t5x_like import trainer

    result = trainer.run(stage_train_config(config, layout, run), layout.train(run), layout.export(run))
    if result.preempted:
        raise PreemptedError(f"training {run.name} was preempted at step {result.step}; rerun to resume")
    return {"workdir": layout.train(run), "export_dir": layout.export(run), "steps": result.step,
            "final_loss": result.final_loss, "eval_loss": result.eval_loss}


def stage_evaluate_tuned(config: ml_collections.ConfigDict, layout: Layout, run: TunedRun) -> dict[str, Any]:
    """The tuned model's direct setting (+ the SampleGen Pipeline over its SampleGen-D responses)."""
    from t5x_like import evaluation

    settings = [s for s in requested_settings(config) if get_setting(s).run_model == run.kind]
    if not settings:
        return {"skipped": f"no {run.kind} settings requested"}
    model = os.path.join(layout.export(run), "model")
    changes = {f"{run.kind}_model": model, "seed": run.seed, "samplegen_d_run": ""}
    evaluation.run(_with_eval(config, layout, settings, **changes), layout.eval_tuned(run))
    return {"results_dir": layout.eval_tuned(run), "settings": settings, "model": model}


def results_dirs(config: ml_collections.ConfigDict, layout: Layout) -> list[str]:
    """Every evaluation results dir of the experiment that has scores."""
    dirs = [layout.eval_base] + [layout.eval_tuned(r) for r in tuned_runs(config)]
    return [d for d in dirs if os.path.exists(os.path.join(d, "scores.csv"))]


def analysis_argv(dirs: Sequence[str], output_dir: str, analysis_cfg: ml_collections.ConfigDict,
                  python: str = sys.executable) -> list[str]:
    """`launch.analyze` over results dirs with a config's analysis section. The library never imports
    the analysis package (it reads results only); the analyze stage and the sweep run it like a user."""
    return [python, "-m", "launch.analyze", f"--results={','.join(dirs)}", f"--output_dir={output_dir}",
            f"--subset={analysis_cfg.subsets}", f"--n_bootstrap={analysis_cfg.bootstrap_samples}",
            f"--seed={analysis_cfg.seed}"]


def stage_analyze(config: ml_collections.ConfigDict, layout: Layout) -> dict[str, Any]:
    """Correlations, tables, figures and the report over every results dir (`launch.analyze`)."""
    dirs = results_dirs(config, layout)
    if not dirs:
        raise ExperimentError(f"no scores.csv under {layout.path('eval')}: run the evaluate stages first")
    code = subprocess.call(analysis_argv(dirs, layout.analysis, config.analysis), cwd=REPO_ROOT)
    if code:
        raise ExperimentError(f"launch.analyze exited with status {code} (its message is above)")
    correlations = os.path.join(layout.analysis, "correlations.csv")
    with open(correlations, encoding="utf-8") as f:
        rows = sum(1 for line in f if line.strip()) - 1
    return {"analysis_dir": layout.analysis, "report": os.path.join(layout.analysis, "report.html"),
            "correlations": correlations, "rows": rows}


def stage_plan(config: ml_collections.ConfigDict, stages: list[str]) -> list[tuple[str, Callable[[Layout], dict]]]:
    """(marker name, stage function) in execution order; tuned stages expand per (format, seed)."""
    check_stages(stages)
    runs = tuned_runs(config)
    steps: list[tuple[str, Callable[[Layout], dict]]] = []
    for stage in STAGES:
        if stage not in stages:
            continue
        if stage == "prepare":
            steps.append((stage, lambda layout: stage_prepare(config, layout)))
        elif stage == "evaluate_base":
            steps.append((stage, lambda layout: stage_evaluate_base(config, layout)))
        elif stage == "train":
            steps += [(f"train/{r.name}", lambda layout, r=r: stage_train(config, layout, r)) for r in runs]
        elif stage == "evaluate_tuned":
            steps += [(f"evaluate_tuned/{r.name}", lambda layout, r=r: stage_evaluate_tuned(config, layout, r))
                      for r in runs]
        else:
            steps.append((stage, lambda layout: stage_analyze(config, layout)))
    return steps


def run_experiment(config: ml_collections.ConfigDict, workdir: str, stages: list[str] | None = None
                   ) -> dict[str, Any]:
    """Runs (or resumes) the experiment; returns and writes the run summary."""
    from t5x_like import partitioning

    partitioning.initialize_distributed(config.partitioning)  # first: jax.distributed must precede any JAX use
    layout = Layout(workdir)
    steps = stage_plan(config, list(stages or STAGES))
    with io_utils.workdir_lock(workdir, "launch.run_experiment"):
        check_workdir(config, layout)
        io_utils.barrier("workdir checked")  # every process has compared config.json before it is (re)written
        io_utils.atomic_write_text(layout.path("config.json"), config.to_json_best_effort(indent=2, sort_keys=True))
        io_utils.atomic_write_json(layout.path("provenance.json"), io_utils.provenance(experiment=config.experiment))
        records = [run_stage_once(name, layout, lambda fn=fn: fn(layout)) for name, fn in steps]
        summary = {"experiment": config.experiment, "workdir": workdir, "stages": records}
        io_utils.atomic_write_json(layout.path("summary.json"), summary)
        io_utils.atomic_write_text(layout.path("summary.md"), summary_markdown(summary, layout))
        io_utils.barrier("summary written")
    return summary


def summary_markdown(summary: dict[str, Any], layout: Layout) -> str:
    """What ran, how long, where the outputs are, and the headline correlations."""
    lines = [f"# Experiment {summary['experiment']}", "", f"workdir: `{summary['workdir']}`", "",
             "| stage | status | seconds | outputs |", "|---|---|---|---|"]
    for r in summary["stages"]:
        status = "skipped (already complete)" if r["skipped"] else "ran"
        outputs = ", ".join(f"{k}: {v}" for k, v in r["outputs"].items() if isinstance(v, (str, int, float)))
        lines.append(f"| {r['stage']} | {status} | {r['seconds']} | {outputs} |")
    table = headline_table(layout)
    if table:
        lines += ["", "## Correlations across tasks (subset: all)", "", table]
    return "\n".join(lines) + "\n"


def headline_table(layout: Layout) -> str:
    """The analysis's 'all tasks' correlation table (correlations_all.md; '' before the analysis ran)."""
    path = os.path.join(layout.analysis, "correlations_all.md")
    if not os.path.exists(path):
        return ""
    with open(path, encoding="utf-8") as f:
        return f.read().rstrip("\n")


def dry_run(config: ml_collections.ConfigDict, workdir: str, stages: list[str] | None = None) -> str:
    """What would run, with model shapes, mesh and per-device memory on `config.hardware`; runs nothing."""
    from t5x_like import estimates, partitioning, trainer
    from t5x_like.data import mixtures
    from t5x_like import model_dirs

    layout = Layout(workdir)
    steps = stage_plan(config, list(stages or STAGES))
    model = model_dirs.model_config(config.model)
    hardware, devices = estimates.parse_hardware(config.hardware)
    data, fsdp, tensor = partitioning.resolve_mesh_shape(tuple(config.partitioning.mesh_shape), devices)
    t = config.train
    lora = t.mode == "lora"
    model = model.replace(lora=trainer.lora_config(t))
    shape = estimates.TrainShape(t.batch_size, max(t.buckets), data, fsdp, tensor, lora,
                                 config.model.remat_policy != "none")
    est = estimates.estimate_training(model, shape, hardware)
    ev = estimates.estimate_inference(model.replace(lora=None), estimates.eval_shape(model, config.eval,
                                                                                     (data, fsdp, tensor)), hardware)
    setup = config.data.mixture or "default"
    lines = [
        f"experiment {config.experiment} -> {workdir}",
        f"model {config.model.name}: {model.num_layers} layers, hidden {model.hidden_size}, heads "
        f"{model.num_heads}/{model.num_kv_heads} kv, vocab {model.vocab_size}, "
        f"{model.num_params() / 1e9:.2f} B params, {model.param_dtype} weights, {model.dtype} compute",
        f"hardware {config.hardware} ({hardware.name} x {devices}), mesh data={data} fsdp={fsdp} tensor={tensor}",
        f"data: tasks={config.data.tasks}, formats={config.data.formats}, num_test={config.data.num_test}, "
        f"mixture {setup}: {len(mixtures.mixture_tasks(setup))} tasks",
        f"tuned runs: {', '.join(r.name for r in tuned_runs(config)) or 'none'}; "
        f"eval settings: {config.eval.settings} ({config.eval.mode})",
        f"training ({t.mode}, batch {t.batch_size} x {max(t.buckets)} tokens) per device: weights "
        f"{est.weights_gib:.2f} GiB + trainable state {est.trainable_state_gib:.2f} GiB + activations "
        f"{est.activations_gib:.2f} GiB = {est.total_gib:.2f} GiB of {hardware.memory_gib} GiB "
        f"({'fits' if est.fits else 'DOES NOT FIT'}); ~{est.step_seconds:.2f} s/step at 40% MFU",
        f"evaluation on the same mesh per device: scoring {ev.scoring_rows} rows x "
        f"{config.eval.max_length or model.max_position_embeddings} tokens {ev.scoring_gib:.2f} GiB, generation "
        f"{ev.generation_rows} rows (KV cache {ev.kv_cache_gib:.2f} GiB) {ev.generation_gib:.2f} GiB of "
        f"{hardware.memory_gib} GiB ({'fits' if ev.fits else 'DOES NOT FIT'})",
        "stages:",
    ]
    for name, _ in steps:
        done = os.path.exists(layout.marker(name))
        lines.append(f"  {name}: {'complete, would skip' if done else 'would run'}")
    return "\n".join(lines)

