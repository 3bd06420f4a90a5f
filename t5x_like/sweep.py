"""Sweeps: a grid of models x setups x seeds expanded into independent experiment runs.

A sweep config (configs/sweeps/*.py) names an experiment config template such as
`configs/experiments/paper_setup.py:{setup},{model}` and the grid. `expand` turns it into runs,
each one `python -m launch.run_experiment` command with its own workdir, so every run can go to a
different machine (or array job). With `split_seeds`, a run tunes one seed and only the first seed's
run evaluates the base-model settings (they do not depend on the tuning seed), so the union of the
runs holds each result once. Results are analysed per setup: one setup's runs across models and
seeds form one `launch.analyze` call (the seen / held-out label of a task depends on the setup).

Layout of a sweep's output_dir: sweep.json (the manifest), runs/<name>/ (experiment workdirs),
analysis/<setup>/ (launch.analyze outputs).
"""
from __future__ import annotations

import dataclasses
import glob
import json
import os
import shlex
import subprocess
from typing import Any, Sequence

import ml_collections
from absl import flags
from absl import logging
from ml_collections import config_flags

from t5x_like import io_utils
from t5x_like.errors import UserError
from t5x_like.experiment import analysis_argv, parse_list
from t5x_like.settings import get_setting

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MANIFEST = "sweep.json"


class SweepError(UserError, ValueError):
    """A sweep config, manifest or run index that cannot be used as given."""


@dataclasses.dataclass(frozen=True)
class SweepRun:
    """One independent experiment run of a sweep: what it is, where it writes, how to start it."""

    index: int
    name: str
    model: str
    setup: str
    seeds: tuple[int, ...]
    config: str  # experiment config path (relative to the repository root) with its :arg
    overrides: tuple[str, ...]  # "key=value" config overrides, passed as --config.key=value
    workdir: str
    command: tuple[str, ...]  # argv, run from the repository root

    @property
    def command_line(self) -> str:
        return shlex.join(self.command)


def load_config(spec: str, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
    """`--config=<spec> --config.<key>=<value> ...` parsed exactly as the launchers parse it.

    `spec` is a config file path (relative paths are taken from the repository root) with an
    optional `:arg`; `overrides` are "key=value" strings. The result is locked like the launchers'.
    """
    path, sep, arg = spec.partition(":")
    path = path if os.path.isabs(path) else os.path.join(ROOT, path)
    if not os.path.isfile(path):
        raise SweepError(f"config file {path} not found (from {spec!r})")
    argv = ["load_config", f"--config={path}{sep}{arg}", *(f"--config.{o}" for o in overrides)]
    values = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "config file", flag_values=values, sys_argv=argv)
    try:
        values(argv)
    except (flags.Error, AttributeError, KeyError) as error:  # bad value / unknown override key
        raise SweepError(f"{spec} with overrides {list(overrides)}: {error}") from None
    return values.config


def _template_values(sweep_cfg: ml_collections.ConfigDict) -> tuple[list[str], list[str], list[int]]:
    """The grid's models, setups and seeds; a multi-valued axis must appear in the config template."""
    grid = sweep_cfg.grid
    models, setups = parse_list(grid.models), parse_list(grid.setups)
    seeds = [int(s) for s in parse_list(grid.seeds)]
    for axis, values in (("model", models), ("setup", setups), ("seed", seeds)):
        if not values:
            raise SweepError(f"sweep {sweep_cfg.name}: grid.{axis}s is empty")
        if len(values) != len(set(values)):
            raise SweepError(f"sweep {sweep_cfg.name}: grid.{axis}s lists a value twice: {values}")
    for axis, values in (("model", models), ("setup", setups)):
        if len(values) > 1 and "{" + axis + "}" not in sweep_cfg.config:
            raise SweepError(f"sweep {sweep_cfg.name}: grid.{axis}s has {len(values)} values but the config "
                             f"template {sweep_cfg.config!r} has no {{{axis}}}: every run would be the same")
    return models, setups, seeds


def seed_dependent_settings(settings: str) -> str:
    """The settings of `settings` whose results depend on the tuning seed: the tuned models' own, and
    pipelines over a tuned model's responses. Base-model-only settings (Base-D, Gold Pipeline) are dropped."""
    chosen = [get_setting(s) for s in parse_list(settings)]
    return ",".join(s.name for s in chosen if s.run_model != "base")


def expand(sweep_cfg: ml_collections.ConfigDict, output_dir: str) -> list[SweepRun]:
    """Every run of the sweep, in a fixed order (models, then setups, then seeds); configs are checked.

    `{model}` and `{setup}` in the config template and in the overrides are filled per run.
    """
    models, setups, seeds = _template_values(sweep_cfg)
    seed_groups = [[s] for s in seeds] if sweep_cfg.split_seeds else [seeds]
    runs = []
    for model in models:
        for setup in setups:
            spec = sweep_cfg.config.format(model=model, setup=setup)
            common = tuple(o.format(model=model, setup=setup) for o in sweep_cfg.overrides)
            base = load_config(spec, common)
            for position, group in enumerate(seed_groups):
                overrides = common + (f"tuning.seeds={','.join(map(str, group))}",)
                if position > 0:  # base-model settings once per (model, setup): the first seed's run
                    overrides += (f"eval.settings={seed_dependent_settings(base.eval.settings)}",)
                load_config(spec, overrides)  # every run's config must load before any job starts
                name = f"{model}-{setup}" + (f"-seed{group[0]}" if sweep_cfg.split_seeds else "")
                workdir = os.path.join(output_dir, "runs", name)
                command = (sweep_cfg.python, "-m", "launch.run_experiment", f"--config={spec}",
                           f"--workdir={workdir}", f"--stages={sweep_cfg.stages}",
                           *(f"--config.{o}" for o in overrides))
                runs.append(SweepRun(len(runs), name, model, setup, tuple(group), spec, overrides, workdir,
                                     command))
    return runs  # names are unique: grid values are distinct (checked above)


def analysis_groups(runs: Sequence[SweepRun]) -> dict[str, list[SweepRun]]:
    """Runs analysed together: one group per setup, in first-appearance order."""
    groups: dict[str, list[SweepRun]] = {}
    for run in runs:
        groups.setdefault(run.setup, []).append(run)
    return groups


def manifest(sweep_cfg: ml_collections.ConfigDict, sweep_spec: str, output_dir: str,
             runs: Sequence[SweepRun]) -> dict[str, Any]:
    """The sweep.json content: the sweep config, every run (with its exact command) and the analyses."""
    return {
        "sweep": sweep_cfg.name,
        "sweep_config": sweep_spec,
        "sweep_values": json.loads(sweep_cfg.to_json_best_effort(sort_keys=True)),
        "output_dir": output_dir,
        "cwd": "the repository root (commands run `python -m launch...`)",
        "runs": [{**dataclasses.asdict(r), "command_line": r.command_line} for r in runs],
        "analyses": [{"group": g, "runs": [r.name for r in rs], "output_dir": os.path.join(output_dir, "analysis", g)}
                     for g, rs in analysis_groups(runs).items()],
    }


def write_manifest(output_dir: str, content: dict[str, Any]) -> str:
    """Writes sweep.json; an existing one of a different sweep is an error (run indices must not shift)."""
    path = os.path.join(output_dir, MANIFEST)
    if os.path.exists(path):
        with open(path) as f:
            previous = json.load(f)
        if previous.get("runs") != json.loads(json.dumps(content["runs"])):
            raise SweepError(f"{path} holds a different sweep ({previous.get('sweep')!r}, "
                             f"{len(previous.get('runs', []))} runs); use a new --output_dir or delete it")
    io_utils.atomic_write_json(path, {**content, "provenance": io_utils.provenance()})
    return path


def select(runs: Sequence[SweepRun], index: int) -> SweepRun:
    """Run number `index` (0-based, as listed); an out-of-range index names the valid range."""
    if not 0 <= index < len(runs):
        raise SweepError(f"--run_index={index}: the sweep has runs 0..{len(runs) - 1}")
    return runs[index]


def execute(run: SweepRun, extra_args: Sequence[str] = ()) -> int:
    """Runs one run's command from the repository root (output streams through); its exit code."""
    command = [*run.command, *extra_args]
    logging.info("sweep run %d (%s): %s", run.index, run.name, shlex.join(command))
    return subprocess.call(command, cwd=ROOT)


def results_dirs(run: SweepRun) -> list[str]:
    """The run's evaluation results dirs that hold scores (eval/<...>/scores.csv), sorted."""
    return sorted(os.path.dirname(p) for p in glob.glob(os.path.join(run.workdir, "eval", "*", "scores.csv")))


def analyze_command(sweep_cfg: ml_collections.ConfigDict, group: Sequence[SweepRun], output_dir: str
                    ) -> tuple[list[str], list[str]]:
    """(`launch.analyze` argv over the union of the group's results, names of runs without results)."""
    dirs = [d for run in group for d in results_dirs(run)]
    missing = [run.name for run in group if not results_dirs(run)]
    if not dirs:
        raise SweepError(f"no results yet for setup {group[0].setup}: none of {[r.name for r in group]} has "
                         f"eval/*/scores.csv; run them first (--run_index)")
    analysis = load_config(group[0].config, group[0].overrides).analysis
    return analysis_argv(dirs, output_dir, analysis, sweep_cfg.python), missing


def run_analyses(sweep_cfg: ml_collections.ConfigDict, runs: Sequence[SweepRun], output_dir: str) -> int:
    """`launch.analyze` over each setup's union of results into <output_dir>/analysis/<setup>; first failure's code."""
    for setup, group in analysis_groups(runs).items():
        command, missing = analyze_command(sweep_cfg, group, os.path.join(output_dir, "analysis", setup))
        if missing:
            logging.warning("setup %s: no results yet from %s (analysed without them)", setup, missing)
        logging.info("analysis of setup %s: %s", setup, shlex.join(command))
        code = subprocess.call(command, cwd=ROOT)
        if code:
            return code
    return 0
