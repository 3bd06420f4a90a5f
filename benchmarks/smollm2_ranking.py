r"""Per-task log-likelihood ranking accuracy of SmolLM2-135M-Instruct on the real task data, with a
one-sided binomial test against chance: through the project's own evaluation (`ev.run`, loglik mode)
in the paper's base-model settings, and lm-eval's zero-shot cloze prompts (`t5x_like.zero_shot`)
through the same scorer (`Engine.score`).

python -m benchmarks.smollm2_ranking [--tasks=copa,piqa,...] [--num_test=400] \
    [--settings=base_d] [--zero_shot_tasks=arc_easy,copa,piqa] [--out=benchmarks/results/smollm2_ranking]
Writes <out>.json (every figure) and <out>.md (the table). Data: --data_dir (default ../shared/data/tasks),
prepared with the offline data config (seed 42); model: the PyPI GGUF converted by `gguf.ensure_smollm2`.
"""
from __future__ import annotations

import os
import pathlib
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from typing import Any

from absl import app, flags, logging

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _ROOT)

from benchmarks import common  # noqa: E402
from configs import base  # noqa: E402
from configs.data import offline  # noqa: E402
from t5x_like import evaluation as ev  # noqa: E402
from t5x_like.evaluation import store as ev_store  # noqa: E402
from t5x_like import settings as registry  # noqa: E402
from t5x_like import io_utils  # noqa: E402
from t5x_like.data import pipeline  # noqa: E402
from t5x_like.data.sources import load_examples  # noqa: E402
from t5x_like.engine import Engine  # noqa: E402
from t5x_like.zero_shot import PROMPTS, rank_zero_shot  # noqa: E402

ZERO_SHOT = "lm_eval_zero_shot"

DEFAULT_TASKS = "arc_easy,arc,openbookqa,copa,piqa,social_iqa,sst2,rte,wic,qnli"
_TASKS = flags.DEFINE_string("tasks", DEFAULT_TASKS, "Comma-separated task names of the data registry.")
_NUM_TEST = flags.DEFINE_integer("num_test", 400, "Test items per task (fewer where the task has fewer).")
_SETTINGS = flags.DEFINE_string("settings", "base_d", "Base-model settings to evaluate ('' = none).")
_ZERO_SHOT_TASKS = flags.DEFINE_string("zero_shot_tasks", ",".join(sorted(PROMPTS)),
                                       f"Tasks ranked with lm-eval's zero-shot prompts (of {sorted(PROMPTS)}; '' = none).")
_DATA_DIR = flags.DEFINE_string("data_dir", os.path.join(os.path.dirname(_ROOT), "shared", "data", "tasks"),
                                "Offline task data.")
_OUT = flags.DEFINE_string("out", os.path.join(_ROOT, "benchmarks", "results", "smollm2_ranking"),
                           "Output path prefix (.json and .md are written).")


def prepare(out: pathlib.Path, data_dir: str, tasks: str, num_test: int, formats: str) -> pathlib.Path:
    """The offline task data prepared by the data pipeline (seed 42, no mixture) into `out`."""
    config = offline.get_config()
    config.data_dir, config.tasks, config.num_test, config.formats, config.mixture = (
        data_dir, tasks, num_test, formats, "")
    pipeline.prepare(config, out)
    return out


def eval_config(data: pathlib.Path, model_dir: str, settings: str, tasks: str) -> Any:
    """configs/base.py evaluating `settings` x `tasks` of `data` in loglik mode with SmolLM2."""
    config = base.get_config()
    config.model.name, config.model.path = "smollm2_135m", model_dir
    e = config.eval
    e.data_dir, e.settings, e.tasks, e.mode, e.shard_size = str(data), settings, tasks, "loglik", 10 ** 6
    return config


def binomial_p(correct: int, n: int, chance: float) -> float:
    """One-sided P(X >= correct) for X ~ Binomial(n, chance): how often a guesser scores this well.

    With a varying option count the per-item chance rates differ; a binomial at their mean has the
    larger variance (of all Bernoulli sums with that mean), so the p-value is conservative."""
    from scipy.stats import binomtest

    return float(binomtest(correct, n, chance, alternative="greater").pvalue)


def task_row(setting: str, task: str, n: int, chance: float, acc: float, acc_norm: float) -> dict[str, Any]:
    """One table row: n, chance (mean 1/options, a fraction), acc, acc_norm (percent) and their binomial p."""
    return {"setting": setting, "task": task, "n": n, "chance": round(100 * chance, 1),
            "acc": round(acc, 1), "acc_norm": round(acc_norm, 1),
            "p_acc": binomial_p(round(acc * n / 100), n, chance),
            "p_acc_norm": binomial_p(round(acc_norm * n / 100), n, chance)}


def zero_shot_row(engine: Engine, task: str, num_test: int, data_dir: str) -> dict[str, Any]:
    """The first `num_test` eval examples of `task` ranked zero-shot with lm-eval's prompt for it."""
    ranking = rank_zero_shot(engine, task, load_examples(task, "eval", data_dir=data_dir)[:num_test])
    return task_row(ZERO_SHOT, task, ranking.n, ranking.chance / 100, ranking.acc, ranking.acc_norm)


def markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """The per-task table, p-values in scientific notation."""
    lines = ["| setting | task | n | chance | acc | acc_norm | p (acc) | p (acc_norm) |", "|---" * 8 + "|"]
    lines += [f"| {r['setting']} | {r['task']} | {r['n']} | {r['chance']} | {r['acc']} | {r['acc_norm']} | "
              f"{r['p_acc']:.1e} | {r['p_acc_norm']:.1e} |" for r in rows]
    return "\n".join(lines) + "\n"


def setting_rows(engine: Engine, model_dir: str, settings: Sequence[registry.Setting]) -> list[dict[str, Any]]:
    """Table rows of `ev.run` (loglik) over --tasks in each setting, on freshly prepared data."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = prepare(pathlib.Path(tmp) / "data", _DATA_DIR.value, _TASKS.value, _NUM_TEST.value,
                       ",".join(s.format for s in settings))
        for setting in settings:
            workdir = os.path.join(tmp, setting.name)
            result = ev.run(eval_config(data, model_dir, setting.name, _TASKS.value), workdir,
                            engines={"base": engine})
            for score in result.scores:
                task = score.row["task"]
                records = io_utils.read_jsonl(ev_store.predictions_path(workdir, setting.name, task))
                chance = sum(1 / len(r["options"]) for r in records) / len(records)
                rows.append(task_row(setting.name, task, len(records), chance, score.metrics["accuracy"],
                                     score.metrics["acc_norm_accuracy"]))
                logging.info("%s", rows[-1])
    return rows


def main(argv: list[str]) -> None:
    del argv
    model_dir = common.default_model_dir()
    settings = [registry.get_setting(s) for s in filter(None, _SETTINGS.value.split(","))]
    if any(s.model != "base" for s in settings):
        raise app.UsageError("--settings: only base-model settings (the model is not FLAN/SampleGen-tuned)")
    start = time.perf_counter()
    engine = Engine.load(model_dir, batch_size=16, progress=True)
    rows = setting_rows(engine, model_dir, settings) if settings else []
    for task in filter(None, _ZERO_SHOT_TASKS.value.split(",")):
        rows.append(zero_shot_row(engine, task, _NUM_TEST.value, _DATA_DIR.value))
        logging.info("%s", rows[-1])
    results = {"model": model_dir, "command": " ".join(["python -m benchmarks.smollm2_ranking", *sys.argv[1:]]),
               "num_test": _NUM_TEST.value, "mode": "loglik", "rows": rows,
               "wall_s": round(time.perf_counter() - start, 1), "machine": common.machine_state(),
               "versions": common.versions()}
    io_utils.atomic_write_json(_OUT.value + ".json", results)
    io_utils.atomic_write_text(_OUT.value + ".md", markdown(rows))
    print(markdown(rows))


if __name__ == "__main__":
    app.run(main)
