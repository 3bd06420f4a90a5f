"""The authors' own prompt-building code (../shared/reference/ukplab, unmodified) as a test reference.

Their modules import the hub, torch, metrics and model code at module level and read a `config`
module that is not part of the copy. `AuthorsCode` imports them with small fakes in `sys.modules`
for exactly those imports (removed again afterwards) and replaces two things at call time: the hub
(`data_utils.load_dataset` serves the raw rows a test hands it, in the hub schema their loader
asks for) and their module-level `random` (a script of the draws: which of the first five
templates, which in-context examples). Everything else (their row preprocessing, `format_sample`,
`create_flan_format_prompts`, `create_mix_prompts`, `add_train_ic`, `create_bigbench_task_prompts`,
`remove_instructions`, `extract_inputs`) runs as they wrote it.
"""
from __future__ import annotations

import contextlib
import importlib.util
import json
import pathlib
import sys
import types
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import datasets
import numpy  # noqa: F401  (imported before their modules, so the fakes never shadow it)
import pandas  # noqa: F401
import tqdm  # noqa: F401

from t5x_like.data import tasks as registry

# Our task name -> theirs (config.bigbench_tasks spells the tracking subsets with a slash).
AUTHORS_NAME = {f"tracking_shuffled_objects_{n}": f"tracking_shuffled_objects/{n}"
                for n in ("three", "five", "seven")}
BIGBENCH_TASKS = [AUTHORS_NAME.get(t, t) for t in registry.BIGBENCH_TEST_TASKS]
# The modules of the copy and the fakes for what it imports but does not contain.
THEIR_MODULES = ("config", "data_utils", "create_prompts", "prompts", "prompts.flan_orig")
FAKED = ("evaluate", "torch", "torch.utils", "torch.utils.data", "bertscore", "gen_response",
         "get_api_response", "model_init", "glue_utils", "t5_metrics", "gm_metrics")


class ScriptedRandom:
    """Stands in for their module-level `random`: `sample` returns the next scripted draw."""

    def __init__(self, draws: Sequence[Sequence[int]]):
        self.draws = [list(d) for d in draws]

    def sample(self, population: Sequence[int], k: int) -> list[int]:
        """The next scripted draw (checked to be a valid draw of k from `population`)."""
        draw = self.draws.pop(0)
        population = list(population)
        assert len(draw) == k and all(d in population for d in draw), (draw, k, population[:10])
        return draw

    def done(self) -> None:
        """Every scripted draw was used (the code drew exactly what the test expected)."""
        assert not self.draws, f"unused scripted draws {self.draws}"


def _fake_modules(root: pathlib.Path) -> dict[str, types.ModuleType]:
    """The `config` module their code reads (the repository's defaults, §Appendix A) and stubs."""
    config = types.ModuleType("config")
    config.config = config  # create_prompts reads `config.x` after `from config import *`
    config.__dict__.update(
        path=f"{root}/", path_manual="", bigbench_tasks=BIGBENCH_TASKS, other_tasks=["gsm8k"],
        translated_tasks=["social_iqa_translated"], test_tasks=list(registry.TEST_TASKS), task_list=[],
        outer_template="outer-template-4", inner_template="gen-inner-template-num2",
        inner_template_main="main-inner-template", test_template="test-template", sys_prompt="sys-prompt",
        no_answer_samplegen=False, num_inner=2, seed=42, use_vllm=False,
        args=types.SimpleNamespace(run_name="base"))
    fakes = {name: types.ModuleType(name) for name in FAKED}
    fakes["torch"].device = lambda name: name
    fakes["torch"].cuda = types.SimpleNamespace(is_available=lambda: False)
    fakes["torch"].utils = fakes["torch.utils"]
    fakes["torch.utils"].data = fakes["torch.utils.data"]
    fakes["torch.utils.data"].Dataset = object
    fakes["torch.utils.data"].DataLoader = object
    fakes["gen_response"].get_response = None
    fakes["get_api_response"].get_api_response = None
    return {"config": config, **fakes}


class FakeHub:
    """`load_dataset` for their loader: serves the rows set by `serving` (in the hub schema)."""

    def __init__(self):
        self.rows: list[dict[str, Any]] | None = None

    def __call__(self, path: str | None = None, name: str | None = None, split: str | None = None,
                 streaming: bool = False, **_: Any) -> Any:
        assert self.rows is not None, "their loader asked the hub outside `serving`"
        rows = [dict(row) for row in self.rows]
        if streaming:  # they take the first 100k rows of a stream and build a pandas frame
            return types.SimpleNamespace(take=lambda n: rows[:n])
        return datasets.Dataset.from_list(rows)

    @contextlib.contextmanager
    def serving(self, rows: Sequence[Mapping[str, Any]]) -> Iterator[None]:
        """Serve `rows` to the next loads."""
        self.rows = list(rows)
        try:
            yield
        finally:
            self.rows = None


class AuthorsCode:
    """Their prompt functions, importable from `root` (../shared/reference/ukplab)."""

    def __init__(self, root: pathlib.Path):
        self.root = root
        self.hub = FakeHub()
        fakes = _fake_modules(root)
        saved = {name: sys.modules.get(name) for name in (*fakes, *THEIR_MODULES)}
        caching = datasets.is_caching_enabled()
        sys.modules.update(fakes)
        sys.path.insert(0, str(root))
        try:
            import create_prompts  # noqa: PLC0415  (their module, on the path only here)
            import data_utils  # noqa: PLC0415
            spec = importlib.util.spec_from_file_location("ukplab_test", root / "test.py")
            test_module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(test_module)
        finally:
            sys.path.remove(str(root))
            for name, module in saved.items():
                if module is None:
                    sys.modules.pop(name, None)
                else:
                    sys.modules[name] = module
            if caching:
                datasets.enable_caching()  # their data_utils disables it at import
        self.config = fakes["config"]
        self.create_prompts = create_prompts
        self.data_utils = data_utils
        self.test = test_module
        data_utils.load_dataset = self.hub
        self.templates = json.loads((root / "prompts" / "templates.json").read_text(encoding="utf-8"))

    # --- plumbing ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def draws(self, *draws: Sequence[int], module: str = "create_prompts") -> Iterator[None]:
        """Script their `random` in `module` for the block; every draw must be used."""
        target = getattr(self, module)
        scripted = ScriptedRandom(draws)
        real, target.random = target.random, scripted
        try:
            yield
        finally:
            target.random = real
        scripted.done()

    @contextlib.contextmanager
    def option(self, **values: Any) -> Iterator[None]:
        """Set config values (e.g. no_answer_samplegen) for the block."""
        saved = {key: getattr(self.config, key) for key in values}
        self.config.__dict__.update(values)
        try:
            yield
        finally:
            self.config.__dict__.update(saved)

    def load(self, task: str, rows: Sequence[Mapping[str, Any]], split: str = "train") -> datasets.Dataset:
        """Their `load_hf_dataset(task, split)` over `rows` (hub schema): renames, maps, filters."""
        with self.hub.serving(rows):
            return self.data_utils.load_hf_dataset(AUTHORS_NAME.get(task, task), split=split, do_partitioning=False)

    # --- FLAN tasks ----------------------------------------------------------------------------

    def flan(self, task: str, item: datasets.Dataset, template: int, *, train: bool) -> str:
        """Their Regular prompt of the one row of `item` (training text includes the answer)."""
        if not train:
            with self.draws([template]):
                out = self.create_prompts.create_flan_format_prompts(
                    item, task, num_datapoints=1, test_size=0, making_test=True, convert_letter_choices=True)
            return out[0]["text"]
        twice = datasets.concatenate_datasets([item, item])  # their 80/20 split needs two rows
        with self.draws([template], [template]):
            out = self.create_prompts.create_flan_format_prompts(
                twice, task, num_datapoints=2, test_size=1, making_test=False, convert_letter_choices=True)
        return out["train"][0]["text"]

    def samplegen_train(self, task: str, item: datasets.Dataset, examples: datasets.Dataset, template: int,
                        *, corrupted: bool = False, unified: bool = False, no_answer: bool = False) -> str:
        """Their SampleGen training text: item in `template`, `examples` as in-context examples."""
        twice = datasets.concatenate_datasets([item, item])
        with self.option(no_answer_samplegen=no_answer), self.draws([template], [0, 1], [template], [0, 1]):
            out = self.create_prompts.create_mix_prompts(
                twice, examples, task, num_datapoints=2, num_inner=2, test_size=1, making_test=False,
                corrupt_samples=corrupted, do_unify=unified, convert_letter_choices=True)
        return out["train"][0]["text"]

    def samplegen_test(self, task: str, item: datasets.Dataset, template: int) -> str:
        """Their SampleGen-D prompt."""
        with self.draws([template]):
            out = self.create_prompts.create_mix_prompts(
                item, None, task, num_datapoints=1, num_inner=2, test_size=0, making_test=True,
                convert_letter_choices=True)
        return out[0]["text"]

    def base_d(self, flan_test_text: str) -> str:
        """Their Base-D input: `remove_instructions` over the Regular test prompt."""
        return self.test.remove_instructions({"text": flan_test_text})["text"]

    def gold_pipeline(self, task: str, item: datasets.Dataset, examples: datasets.Dataset, template: int,
                      *, unified: bool = False) -> str:
        """Their Gold Pipeline prompt: the item's Solution block (create_mix_prompts, gold test) after
        the example block that `add_train_ic` cuts out of a SampleGen training row showing `examples`."""
        with self.draws([template]):
            test_rows = self.create_prompts.create_mix_prompts(
                item, None, task, num_datapoints=1, num_inner=2, test_size=0, making_test=True,
                make_gold_pipeline_test=True, do_unify=unified, convert_letter_choices=True)
        train_text = self.samplegen_train(task, item, examples, template, unified=unified)
        train_rows = datasets.Dataset.from_dict({"text": [train_text]})
        with self.draws([0], module="test"):
            out = self.test.add_train_ic(dict(test_rows[0]), train_data=train_rows, task_source="flan")
        return out["text"]

    def pipeline_input(self, response: str) -> str:
        """Their SampleGen Pipeline input: `extract_inputs` of a SampleGen-D response."""
        return self.test.extract_inputs({"response": response})["response"]

    # --- BIG-bench -----------------------------------------------------------------------------

    def bigbench(self, task: str, item: Mapping[str, Any], style: str, wrapper: str | None) -> str:
        """Their BIG-bench test prompt in `style` (closed, bad-prompt-k, adv); `wrapper` the system
        prompt key (sys-prompt-bigbench-flan, sys-prompt) or None (base model)."""
        sample = self.test.create_bigbench_task_prompts(
            dict(item), template=self.templates[f"bigbench-{style}"], template_name=style,
            sys_prompt=self.templates[wrapper] if wrapper else None, task_name=AUTHORS_NAME.get(task, task),
            translation_type="")
        return sample["text"]

    def bigbench_gold_pipeline(self, task: str, item: Mapping[str, Any], examples: Sequence[Mapping[str, Any]],
                               *, unified: bool = False) -> str:
        """Their BIG-bench Gold Pipeline prompt (base model, closed style, `examples` as gold examples)."""
        name = AUTHORS_NAME.get(task, task)
        sample = self.test.create_bigbench_task_prompts(
            dict(item), template=self.templates["bigbench-closed"], template_name="closed", sys_prompt=None,
            task_name=name, translation_type="")
        formatted = [self.test.create_bigbench_task_prompts(
            dict(example), template=self.templates["bigbench-closed-samplegen"],
            template_name="bigbench-closed-samplegen", sys_prompt=None, task_name=name, add_answer=True,
            translation_type="") for example in examples]
        train = datasets.Dataset.from_list(formatted)
        with self.draws(list(range(len(examples))), module="test"):
            out = self.test.add_train_ic(sample, train_data=train, task_source="bigbench+gsm8k", task_name=name,
                                         unified_prompts=unified, translation_type="")
        return out["text"]
