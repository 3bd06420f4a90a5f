"""lm-eval's `--model t5x_like` (t5x_like/lm_eval_backend.py) against lm-eval's own `hf` backend
(transformers PyTorch) on the real SmolLM2-135M-Instruct in fp32, over the offline task YAMLs of
configs/lm_eval_tasks and the local task data.

Both backends answer the same lm-eval requests (lm-eval builds them from the same task configs):
per-request log-likelihoods within 2e-3, the same argmax option per item (so the same acc and
acc_norm), the same rolling log-likelihood and the same greedy text until "\\n". Fast: a few items;
slow: 200 items of each task. Also: the prompts t5x_like.zero_shot builds equal lm-eval's (COPA's
one documented difference), model-arg errors are one line, and the hf backend reads only local files.
"""
from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("lm_eval")
pytest.importorskip("torch")

from lm_eval import simple_evaluate  # noqa: E402
from lm_eval.api.instance import Instance  # noqa: E402
from lm_eval.api.registry import get_model  # noqa: E402
from lm_eval.tasks import TaskManager  # noqa: E402

from t5x_like import lm_eval_backend  # noqa: E402
from t5x_like.data.sources import load_examples  # noqa: E402
from t5x_like.errors import UserError  # noqa: E402
from t5x_like.evaluation.contexts import option_requests  # noqa: E402
from t5x_like.zero_shot import PROMPTS  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
TASKS_DIR = REPO / "configs" / "lm_eval_tasks"
TOLERANCE = 2e-3  # |log-likelihood difference| per request, fp32 JAX vs fp32 PyTorch
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
TASKS = ("arc_easy_local", "piqa_local", "copa_local")
ROLLING_TEXT = ("The quick brown fox jumps over the lazy dog. It was a sunny day in the small town, and "
                "everyone had gathered in the square to watch the parade go by.")


@pytest.fixture(scope="module", autouse=True)
def offline():
    """No hub access: transformers, datasets and the hub client read only local files."""
    with pytest.MonkeyPatch.context() as patch:
        for key, value in OFFLINE.items():
            patch.setenv(key, value)
        yield


@pytest.fixture(scope="module")
def task_manager(data_dir, tmp_path_factory) -> TaskManager:
    """The offline tasks, the data directory passed as lm-eval task metadata (`--metadata data_dir=`), plus
    copa_local_train: COPA's 400 train items with its prompts (validation has only 100)."""
    extra = tmp_path_factory.mktemp("lm_eval_tasks")
    (extra / "copa_local_train.yaml").write_text(
        f"include: {TASKS_DIR / 'copa_local.yaml'}\ntask: copa_local_train\nvalidation_split: train\n")
    return TaskManager(include_path=[str(TASKS_DIR), str(extra)], metadata={"data_dir": str(data_dir)})


@pytest.fixture(scope="module")
def ours(smollm2_dir):
    """`--model t5x_like --model_args path=DIR,dtype=float32 --batch_size auto`, as lm-eval builds it."""
    return get_model("t5x_like").create_from_arg_obj({"path": str(smollm2_dir), "dtype": "float32"},
                                                      {"batch_size": "auto"})


@pytest.fixture(scope="module")
def theirs(smollm2_dir):
    """lm-eval's hf backend on the same local directory, fp32 on CPU."""
    return get_model("hf").create_from_arg_obj({"pretrained": str(smollm2_dir), "dtype": "float32"},
                                                {"batch_size": 16, "device": "cpu"})


def evaluate(lm, tasks, limit: int, task_manager: TaskManager) -> dict:
    """lm-eval's simple_evaluate with per-sample logs (no bootstrap: stderr is not compared)."""
    return simple_evaluate(model=lm, tasks=list(tasks), limit=limit, task_manager=task_manager,
                           log_samples=True, bootstrap_iters=0)


def compare_multiple_choice(ours_out: dict, theirs_out: dict) -> dict[str, float]:
    """Per task: the largest per-request |Δ log-likelihood|; asserts the same requests, the same argmax
    option by log-likelihood and by log-likelihood per character (lm-eval's acc / acc_norm) per item,
    and the same reported metrics."""
    worst = {}
    for task, their_samples in theirs_out["samples"].items():
        mine = sorted(ours_out["samples"][task], key=lambda s: s["doc_id"])
        their_samples = sorted(their_samples, key=lambda s: s["doc_id"])
        assert [s["arguments"] for s in mine] == [s["arguments"] for s in their_samples]
        deltas = []
        for a, b in zip(mine, their_samples):
            ll_a = np.array([r[0] for r in a["filtered_resps"]])
            ll_b = np.array([r[0] for r in b["filtered_resps"]])
            chars = np.array([len(continuation) - 1 for _, continuation in a["arguments"]])  # len(choice)
            deltas.append(np.abs(ll_a - ll_b).max())
            assert np.argmax(ll_a) == np.argmax(ll_b), (task, a["doc_id"], ll_a, ll_b)
            assert np.argmax(ll_a / chars) == np.argmax(ll_b / chars), (task, a["doc_id"], ll_a, ll_b)
        worst[task] = float(max(deltas))
        for metric in ("acc,none", "acc_norm,none"):
            assert ours_out["results"][task].get(metric) == theirs_out["results"][task].get(metric), (task, metric)
    print({"max_abs_delta_loglikelihood": worst,
           "acc": {t: ours_out["results"][t].get("acc,none") for t in worst},
           "acc_norm": {t: ours_out["results"][t].get("acc_norm,none") for t in worst}})
    assert max(worst.values()) <= TOLERANCE
    return worst


def copa_prompts(task_manager: TaskManager, n: int) -> list[str]:
    """The first `n` copa_local contexts ("<premise> because/therefore"), as generation prompts that the
    model continues on the same line."""
    task = task_manager.load(["copa_local"])["tasks"]["copa_local"]
    return [task.doc_to_text(doc) for doc in list(task.eval_docs)[:n]]


def generation_requests(prompts: list[str], max_gen_toks: int) -> list[Instance]:
    """generate_until requests stopping at a newline."""
    return [Instance("generate_until", {}, (p, {"until": ["\n"], "max_gen_toks": max_gen_toks}), i)
            for i, p in enumerate(prompts)]


def test_loglikelihood_matches_the_hf_backend_on_a_few_items(ours, theirs, task_manager):
    compare_multiple_choice(evaluate(ours, TASKS, 2, task_manager), evaluate(theirs, TASKS, 2, task_manager))


def test_rolling_loglikelihood_matches_the_hf_backend(ours, theirs):
    requests = [Instance("loglikelihood_rolling", {}, (ROLLING_TEXT,), 0)]
    mine, reference = ours.loglikelihood_rolling(requests)[0], theirs.loglikelihood_rolling(requests)[0]
    print({"rolling": mine, "hf": reference})
    assert abs(mine - reference) <= TOLERANCE


def test_greedy_generation_matches_the_hf_backend_on_a_few_prompts(ours, theirs, task_manager):
    requests = generation_requests(copa_prompts(task_manager, 2), 16)
    mine = ours.generate_until(requests)
    print(mine)
    assert all(mine) and mine == theirs.generate_until(requests)


def test_zero_shot_prompts_are_lm_evals(task_manager, data_dir):
    """t5x_like.zero_shot's (context, continuation) requests for every eval item equal the ones lm-eval
    builds from its task definitions, except COPA: lm-eval's copa puts a space in front of each choice
    (doc_to_choice) and its target delimiter adds another, so its continuations start with two spaces."""
    names = {"arc_easy": "arc_easy_local", "piqa": "piqa_local", "copa": "copa_local"}
    tasks = task_manager.load(list(names.values()))["tasks"]
    for ours_name, lm_eval_name in names.items():
        task = tasks[lm_eval_name]
        task.build_all_requests(rank=0, world_size=1)
        theirs_by_doc: dict[int, list[tuple[str, str]]] = {}
        for instance in task.instances:
            theirs_by_doc.setdefault(instance.doc_id, []).append(instance.args)
        examples = load_examples(ours_name, "eval", data_dir=str(data_dir))
        assert len(examples) == len(theirs_by_doc)
        for doc_id, example in enumerate(examples):
            context, options = PROMPTS[ours_name](example)
            mine = [(r.context, r.continuation) for r in option_requests(context, options)]
            if ours_name == "copa":
                mine = [(c, " " + continuation) for c, continuation in mine]
            assert mine == theirs_by_doc[doc_id], (ours_name, doc_id)


def test_model_args_errors_are_user_errors(smollm2_dir):
    with pytest.raises(UserError, match="dtype='float16'"):
        lm_eval_backend.T5xLikeLM(path=str(smollm2_dir), dtype="float16")
    with pytest.raises(UserError, match="path=DIR"):
        lm_eval_backend.T5xLikeLM()
    with pytest.raises(UserError, match=r"mesh_shape='1,2'"):
        lm_eval_backend.mesh_shape_arg("1,2")
    with pytest.raises(UserError, match="batch_size=0"):
        lm_eval_backend.engine_rows(0)
    assert lm_eval_backend.mesh_shape_arg([1, -1, 1]) == (1, -1, 1)
    assert lm_eval_backend.engine_rows("auto") is None and lm_eval_backend.engine_rows("8") == 8


def test_the_cli_wrapper_finds_the_backend_and_prints_one_line_errors(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "launch.lm_eval", "--model", "t5x_like", "--model_args",
                           f"path={tmp_path / 'missing'}", "--tasks", "copa_local", "--include_path",
                           str(TASKS_DIR)], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **OFFLINE})
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == f"lm_eval: error: model directory not found: {tmp_path / 'missing'}"


@pytest.mark.slow
def test_loglikelihood_matches_the_hf_backend_on_200_items_per_task(ours, theirs, task_manager):
    tasks = ("arc_easy_local", "piqa_local", "copa_local_train")
    compare_multiple_choice(evaluate(ours, tasks, 200, task_manager), evaluate(theirs, tasks, 200, task_manager))


@pytest.mark.slow
def test_greedy_generation_matches_the_hf_backend_on_16_prompts(ours, theirs, task_manager):
    requests = generation_requests(copa_prompts(task_manager, 16), 32)
    mine, reference = ours.generate_until(requests), theirs.generate_until(requests)
    print(mine)
    assert sum(map(bool, mine)) >= 8 and mine == reference


@pytest.mark.slow
def test_rolling_windows_match_the_hf_backend(smollm2_dir):
    """A text several times longer than a 32-token window: lm-eval's disjoint windows on both backends."""
    ours = lm_eval_backend.T5xLikeLM(path=str(smollm2_dir), max_length=32)
    theirs = get_model("hf").create_from_arg_obj({"pretrained": str(smollm2_dir), "dtype": "float32",
                                                  "max_length": 32}, {"batch_size": 4, "device": "cpu"})
    text = " ".join([ROLLING_TEXT] * 3)
    assert len(ours.tok_encode(text)) > 3 * 32
    requests = [Instance("loglikelihood_rolling", {}, (text,), 0)]
    mine, reference = ours.loglikelihood_rolling(requests)[0], theirs.loglikelihood_rolling(requests)[0]
    print({"rolling_32_token_windows": mine, "hf": reference})
    assert abs(mine - reference) <= TOLERANCE
