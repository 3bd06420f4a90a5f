"""Build a prepared data directory from a data config: tasks x formats x splits, mixtures, manifest.

Layout written under `output_dir`:
  <format>/<task>/<split>.jsonl        split = "train" (training formats) or "test"
  mixtures/<format>_<setup>/{train,validation}.jsonl
  manifest.json                       config, seeds, per-task sources/counts/pools, mixtures, files

Every random choice is derived from `config.seed` with a string key naming what it is for, so a
rerun writes identical bytes, and the test items of a task are the same in every format (paired).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import pathlib
import random
import sys
from typing import Any, Iterable, Mapping, Sequence

from absl import logging
import tqdm

from t5x_like import io_utils
from t5x_like.data import formats as prompt_formats
from t5x_like.data.format_specs import FORMATS, TEST, TRAIN, FormatSpec
from t5x_like.data import mixtures
from t5x_like.data import sources
from t5x_like.data import tasks as registry
from t5x_like.data import templates
from t5x_like.data.examples import Example
from t5x_like.errors import UserError

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
NUM_EXAMPLES = 2  # in-context examples per prompt (original `num_inner`)


class DataConfigError(UserError, ValueError):
    """The data config cannot be prepared; raised before any file is written."""




# --- per-task data and its seeded carving ----------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TaskPlan:
    """The seeded split of one task's data into training items, example pool and test items."""

    task: str
    train_items: tuple[Example, ...]  # Regular (FLAN) training items: the train split, seeded order
    samplegen_items: tuple[Example, ...]  # SampleGen training items: one half of the train split
    pool: tuple[Example, ...]  # in-context example source: the other half, or carved from eval
    pool_origin: str | None  # "train_half", "carved_from_eval" or None (no pool)
    test_items: tuple[Example, ...]  # sampled evaluation items, the same for every format
    has_train: bool
    has_eval: bool


def _rng(seed: int, *key: object) -> random.Random:
    """A private random stream for one purpose (string-seeded: independent of PYTHONHASHSEED)."""
    return random.Random(":".join(str(part) for part in (seed, *key)))


def _check_unique_ids(task: str, split: str, examples: Sequence[Example]) -> None:
    """Ids key every seeded draw and every output line, so they must be unique within a split."""
    seen: set[str] = set()
    for example in examples:
        if example.id in seen:
            raise DataConfigError(f"task {task!r} split {split!r} has duplicate example id {example.id!r}")
        seen.add(example.id)


def plan_task(
    task: str,
    train: Sequence[Example] | None,
    evaluation: Sequence[Example] | None,
    *,
    seed: int,
    num_test: int,
    size_limit: int = mixtures.SIZE_LIMIT,
    carve_example_pool: bool = False,
    carved_pool_size: int = 100,
) -> TaskPlan:
    """Shuffle and split one task's data with seeds derived from `seed` and the task name.

    The train split is shuffled and halved: the first half are SampleGen items, the second half
    the example pool. Without a train split and with `carve_example_pool`, the pool is a seeded
    sample of the evaluation split (at most half of it) and the test items come from the rest.
    """
    for split, examples in ((TRAIN, train or ()), ("eval", evaluation or ())):
        _check_unique_ids(task, split, examples)
    train_order = list(train or ())
    _rng(seed, "train_order", task).shuffle(train_order)
    halves = list(train or ())
    _rng(seed, "partition", task).shuffle(halves)
    first_half = math.ceil(len(halves) / 2)
    pool: list[Example] = halves[first_half:]
    pool_origin = "train_half" if pool else None
    remaining = list(evaluation or ())
    if not train and carve_example_pool and remaining:
        carved = list(remaining)
        _rng(seed, "carve", task).shuffle(carved)
        size = min(carved_pool_size, len(carved) // 2)
        pool, remaining = carved[:size], carved[size:]
        pool_origin = "carved_from_eval" if pool else None
    sample = _rng(seed, "test_sample", task).sample(range(len(remaining)), min(num_test, len(remaining)))
    return TaskPlan(
        task=task,
        train_items=tuple(train_order[:size_limit]),
        samplegen_items=tuple(halves[:first_half][:size_limit]),
        pool=tuple(pool),
        pool_origin=pool_origin,
        test_items=tuple(remaining[i] for i in sample),
        has_train=bool(train),
        has_eval=bool(evaluation),
    )


class ExamplePool:
    """In-context example candidates, indexed by content so an item's own copies can be excluded fast."""

    def __init__(self, examples: Sequence[Example]):
        self.examples = tuple(examples)
        self._by_fields: dict[tuple, list[int]] = {}
        for i, example in enumerate(self.examples):
            self._by_fields.setdefault(example.fields, []).append(i)

    def __len__(self) -> int:
        return len(self.examples)

    def copies_of(self, item: Example) -> set[int]:
        """Indices of pool examples showing exactly the item's fields (the item itself, duplicates)."""
        return set(self._by_fields.get(item.fields, ()))


def draw_examples(pool: ExamplePool, item: Example, rng: random.Random, k: int = NUM_EXAMPLES) -> list[Example]:
    """k distinct pool examples drawn uniformly, never one with the item's own fields (no self-example)."""
    banned = pool.copies_of(item)
    if len(pool) - len(banned) < k:
        raise DataConfigError(
            f"task {item.task!r}: the example pool holds {len(pool) - len(banned)} usable examples, "
            f"{k} are needed per prompt"
        )
    drawn = rng.sample(range(len(pool)), k + len(banned))
    return [pool.examples[i] for i in drawn if i not in banned][:k]


# --- rows ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Shown:
    """An item under its drawn template: instruction text, field view and the template (None: BIG-bench)."""

    instruction: str
    view: prompt_formats.View
    template_id: str
    template: templates.Template | None


def _task_view(example: Example, *, faithful: bool = False, solution: bool = False) -> prompt_formats.View:
    """The field-block view of an example whose label is already its template's target.

    Default: the options line is left out only where the registry says the options are already
    shown as fields and they really are among the field texts; otherwise they are listed as
    "options". Faithful: the original's blocks, which show no options line where the registry says
    so (except the Solution block of copa) and, in a `solution` block, what its second formatting
    of that item left: the quoted fields quoted again, and hellaswag's endings (the source's texts,
    joined by "; ") split again at every ";", so the block lists the pieces (trailing "." cut) and
    answers with the piece at the answer's index, period and leading space kept.
    """
    task = registry.get_task(example.task)
    options_field = task.options_field
    if faithful and solution:
        options_field = options_field or task.solution_options_field
        example = dataclasses.replace(example, fields=registry.quote_fields(example.fields, task.quoted_fields))
        if example.raw_options:
            pieces = "; ".join(example.raw_options).split(";")
            shown = "; ".join(piece.rstrip(".") for piece in pieces)
            return prompt_formats.View(example, example.fields + ((options_field, shown),),
                                       pieces[example.options.index(example.label)])
    elif not faithful and options_field is None and not set(example.options) <= {text for _, text in example.fields}:
        options_field = "options"
    return prompt_formats.view(example, options_field=options_field)


def targeted(template: templates.Template, example: Example) -> Example:
    """The example with its template's target as label (translation direction); others unchanged."""
    target = template.target_field
    if target in (None, templates.LABEL_TARGET) or target not in dict(example.fields):
        return example
    answer = example.field(target)
    return dataclasses.replace(example, fields=templates.shown_fields(template, example), label=answer,
                               references=(answer,))


def show(item: Example, ctx: Context, bigbench_style: str = "closed") -> Shown:
    """Draw the item's template from the context's template set, seeded by task, id and seed, and
    render it (BIG-bench/GSM8K: the style's instruction); the view is the item as an in-context
    example shows it."""
    if registry.is_bigbench_style(item.task):
        instruction = prompt_formats.bigbench_instruction(prompt_formats.bigbench_question(item), item.options,
                                                          bigbench_style, ctx.bigbench_wordings)
        return Shown(instruction, prompt_formats.bigbench_view(item), f"bigbench_{bigbench_style}", None)
    template = templates.draw_template(item.task, item.id, ctx.seed, ctx.template_set)
    return Shown(templates.render(template, item), _task_view(targeted(template, item), faithful=ctx.faithful),
                 template.id, template)


def example_view(example: Example, shown: Shown, ctx: Context) -> prompt_formats.View:
    """An in-context example under the item's template (same task) or its own seeded template."""
    if registry.is_bigbench_style(example.task):
        return prompt_formats.bigbench_view(example)
    if shown.template is not None and example.task == shown.view.example.task:
        return _task_view(targeted(shown.template, example), faithful=ctx.faithful)
    return show(example, ctx).view


@dataclasses.dataclass(frozen=True)
class Context:
    """What a row builder needs beyond the item: seed, switches and the other tasks' pools."""

    seed: int
    faithful: bool
    pools: Mapping[str, ExamplePool]
    relevance_partners: Mapping[str, str] = dataclasses.field(default_factory=dict)
    ablation_pool: ExamplePool = ExamplePool(())  # "Example 1" of each row of the ablation mixture
    num_samples_ablation: int = NUM_EXAMPLES
    template_set: Mapping[str, Sequence[templates.Template]] | None = None  # None: the built-in set
    bigbench_wordings: Mapping[str, str] | None = None  # BIG-bench style -> text; None: the own wordings


def in_context_examples(item: Example, spec: FormatSpec, split: str, ctx: Context) -> list[Example]:
    """The item's in-context examples for `spec`, drawn with a seed keyed by source task, split and id."""
    if spec.kind not in ("samplegen", "gold_pipeline") or (spec.kind == "samplegen" and split == TEST):
        return []
    if spec.ablation:
        rng = _rng(ctx.seed, "ablation", item.task, item.id)
        return draw_examples(ctx.ablation_pool, item, rng, ctx.num_samples_ablation)
    source = ctx.relevance_partners[item.task] if spec.relevance else item.task
    return draw_examples(ctx.pools[source], item, _rng(ctx.seed, "examples", source, item.task, split, item.id))


def format_item(item: Example, spec: FormatSpec, split: str, ctx: Context) -> dict[str, Any]:
    """One output line: the item formatted in `spec`, with its template and in-context example ids."""
    shown = show(item, ctx, spec.bigbench_style)
    examples = in_context_examples(item, spec, split, ctx)
    views = [example_view(example, shown, ctx) for example in examples]
    solution = shown.view if shown.template is None else _task_view(shown.view.example, faithful=ctx.faithful,
                                                                      solution=True)
    bigbench = registry.is_bigbench_style(item.task)
    numbered = bigbench or registry.get_task(item.task).cluster != "translation_nlg"
    # the original's newline quirks of Base-D and SampleGen-D belong to its FLAN-task prompts only
    flan_quirks = ctx.faithful and not bigbench
    if spec.kind == "flan":
        formatted = (prompt_formats.flan_train(shown.instruction, shown.view.answer, faithful=ctx.faithful)
                     if split == TRAIN else prompt_formats.flan_test(shown.instruction, faithful=ctx.faithful))
    elif spec.kind == "base_d":
        formatted = prompt_formats.base_d(shown.instruction, leading_newline=flan_quirks)
    elif spec.kind == "samplegen" and split == TEST:
        formatted = prompt_formats.samplegen_test(shown.instruction, faithful=ctx.faithful,
                                                  newline_before_close=flan_quirks)
    elif spec.kind == "gold_pipeline" and bigbench and ctx.faithful:
        formatted = prompt_formats.bigbench_gold_pipeline_faithful(
            shown.instruction, [(show(example, ctx).instruction, example.label) for example in examples],
            options_at_line_start=item.task == "strange_stories", unified=spec.unified)
    elif spec.kind == "samplegen":
        formatted = prompt_formats.samplegen_train(
            shown.instruction, solution, views, faithful=ctx.faithful, number_fields=numbered,
            unified=spec.unified, corrupted=spec.corrupted, show_answer=spec.show_answer,
        )
    else:
        formatted = prompt_formats.gold_pipeline(
            solution, views, unified=spec.unified, number_fields=numbered,
            renumber_fields=not (ctx.faithful and spec.ablation),
        )
    return {
        "id": item.id,
        "task": item.task,
        "format": spec.name,
        "split": split,
        "prompt": formatted.prompt,
        "target": formatted.target,
        "label": shown.view.answer,
        "options": list(item.options),
        "references": list(shown.view.example.references) or [shown.view.answer],
        "template_id": shown.template_id,
        "ic_ids": [example.id for example in examples],
        "ic_tasks": [example.task for example in examples],
    }


# --- loading and checks ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LoadedTask:
    """One task's examples as loaded (None for a split its sources lack) and where each split came from."""

    name: str
    train: list[Example] | None
    evaluation: list[Example] | None
    origins: dict[str, str]  # split -> source description, or why it is missing


def parse_names(value: str | Sequence[str]) -> list[str]:
    """A comma-separated config value (or a sequence) as a list of non-empty names."""
    parts = value.split(",") if isinstance(value, str) else list(value)
    return [part.strip() for part in parts if part.strip()]


def load_task(name: str, *, data_dir: str | None, cache_dir: str | None, faithful: bool) -> LoadedTask:
    """Load both splits of a task; a split its sources lack becomes None (the reason is kept)."""
    examples: dict[str, list[Example] | None] = {}
    origins: dict[str, str] = {}
    for split in ("train", "eval"):
        try:
            loaded = sources.load_split(name, split, data_dir=data_dir, cache_dir=cache_dir, faithful=faithful)
        except sources.MissingSplitError:
            examples[split], origins[split] = None, "the source has no such split"
        except sources.TaskDataNotFoundError as error:
            examples[split], origins[split] = None, str(error)
        else:
            examples[split], origins[split] = loaded.examples, loaded.origin
    return LoadedTask(name, examples["train"], examples["eval"], origins)


def requirement_problems(task: LoadedTask, formats: Sequence[FormatSpec], carve_example_pool: bool) -> list[str]:
    """Why `task` cannot be prepared in `formats` (empty when it can)."""
    if task.train is None and task.evaluation is None:
        return [f"{task.name}: no data for either split:\n{task.origins['train']}\n{task.origins['eval']}"]
    problems = []
    wants_test_pool = any(spec.needs_pool(TEST) for spec in formats if TEST in spec.splits)
    if task.evaluation and wants_test_pool and not task.train and not carve_example_pool:
        users = sorted(spec.name for spec in formats if spec.needs_pool(TEST))
        problems.append(
            f"{task.name}: formats {users} need in-context examples from the train split, which is "
            f"missing; set --config.carve_example_pool=True to carve a seeded example pool out of "
            f"the evaluation split (disjoint from the test items)"
        )
    return problems


def relevance_partners(plans: Mapping[str, TaskPlan], seed: int) -> dict[str, str]:
    """For each task with a train split, one such task of another cluster in the same category (seeded)."""
    partners = {}
    with_pool = sorted(name for name, plan in plans.items() if plan.pool_origin == "train_half")
    for name in with_pool:
        task = registry.get_task(name)
        candidates = [other for other in with_pool
                      if registry.get_task(other).category == task.category
                      and registry.get_task(other).cluster != task.cluster]
        if not candidates:
            raise DataConfigError(
                f"samplegen_relevance: no prepared task of category {task.category!r} outside cluster "
                f"{task.cluster!r} has training examples to lend to {name!r}; add one to --config.tasks"
            )
        partners[name] = _rng(seed, "relevance", name).choice(candidates)
    return partners


# --- writing ---------------------------------------------------------------------------------


def split_path(output_dir: str | os.PathLike, format_name: str, task: str, split: str) -> pathlib.Path:
    """Where the rows of (format, task, split) live: `<output_dir>/<format>/<task>/<split>.jsonl`."""
    return pathlib.Path(output_dir) / format_name / task / f"{split}.jsonl"


def mixture_path(output_dir: str | os.PathLike, name: str, split: str) -> pathlib.Path:
    """Where a mixture split lives: `<output_dir>/mixtures/<name>/<split>.jsonl` (split train|validation)."""
    return pathlib.Path(output_dir) / "mixtures" / name / f"{split}.jsonl"


def mixture_name(format_name: str, setup: str) -> str:
    """The name of the mixture of `format_name` rows over the tasks of `setup`, e.g. samplegen_default."""
    return f"{format_name}_{setup}"


def read_manifest(output_dir: str | os.PathLike) -> dict[str, Any]:
    """The manifest of a prepared directory (FileNotFoundError naming the command that writes it)."""
    path = pathlib.Path(output_dir) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {output_dir} is not a (finished) prepared data dir; "
                                f"run python -m launch.prepare_data --output_dir={output_dir}")
    return json.loads(path.read_text(encoding="utf-8"))


def _read_listed(output_dir: str | os.PathLike, path: pathlib.Path, what: str) -> list[dict[str, Any]]:
    """Rows of a file the manifest lists (a stale file of an earlier run with another config is refused)."""
    relative = path.relative_to(pathlib.Path(output_dir)).as_posix()
    if relative not in read_manifest(output_dir)["files"]:
        raise FileNotFoundError(f"{what} was not prepared in {output_dir} (no {relative} in its manifest); "
                                f"add it to --config.tasks / --config.formats / --config.mixture and rerun")
    return io_utils.read_jsonl(str(path))


def read_split(output_dir: str | os.PathLike, format_name: str, task: str, split: str = TEST) -> list[dict[str, Any]]:
    """The prepared rows of (format, task, split): what evaluation (split "test") and training read."""
    return _read_listed(output_dir, split_path(output_dir, format_name, task, split),
                        f"{format_name}/{task}/{split}")


def read_mixture(output_dir: str | os.PathLike, name: str, split: str = TRAIN) -> list[dict[str, Any]]:
    """The prepared rows of a mixture split ("train" or "validation"), e.g. name "samplegen_default"."""
    return _read_listed(output_dir, mixture_path(output_dir, name, split), f"mixture {name}/{split}")


def _write_rows(path: pathlib.Path, rows: Iterable[Mapping[str, Any]], root: pathlib.Path,
                files: dict[str, Any]) -> None:
    """Write rows as key-sorted jsonl atomically and record the file's row count and sha256."""
    text = "".join(json.dumps(row, sort_keys=True, ensure_ascii=False) + "\n" for row in rows)
    io_utils.atomic_write_text(str(path), text)
    files[path.relative_to(root).as_posix()] = {
        "rows": text.count("\n"), "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()}


def _versions() -> dict[str, str]:
    """Code and library versions that determine the prepared bytes (no timestamps)."""
    import importlib.metadata as md

    return {
        "manifest_version": str(MANIFEST_VERSION),
        "python": sys.version.split()[0],
        "datasets": md.version("datasets"),
        "git_commit": io_utils.git_commit(),
    }


# --- the whole preparation -------------------------------------------------------------------


def _selected_tasks(value: str | Sequence[str]) -> tuple[list[str], bool]:
    """(task names, strict): "all" means every registry task that has data (missing ones skipped)."""
    if isinstance(value, str) and value.strip() == "all":
        return [task.name for task in registry.all_tasks()], False
    names = parse_names(value)
    known = {task.name for task in registry.all_tasks()}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise DataConfigError(f"unknown task names {unknown} in --config.tasks; known tasks: {sorted(known)}")
    if not names:
        raise DataConfigError("--config.tasks is empty; give comma-separated task names or 'all'")
    return names, True


def _selected_formats(value: str | Sequence[str]) -> list[FormatSpec]:
    """The FormatSpecs named in the config (unknown names raise, listing the known ones)."""
    names = parse_names(value)
    unknown = [name for name in names if name not in FORMATS]
    if unknown or not names:
        raise DataConfigError(f"unknown or no formats {unknown} in --config.formats; known: {sorted(FORMATS)}")
    return [FORMATS[name] for name in names]


def _items(plan: TaskPlan, spec: FormatSpec, split: str) -> tuple[Example, ...]:
    """The items a (format, split) file of a task holds."""
    if split == TEST:
        return plan.test_items
    return plan.train_items if spec.kind == "flan" else plan.samplegen_items


def _applies(spec: FormatSpec, plan: TaskPlan, split: str) -> bool:
    """Whether (format, task, split) is written: BIG-bench tasks are test-only, style variants BIG-bench-only."""
    bigbench = registry.is_bigbench_style(plan.task)
    if spec.bigbench_only and not bigbench:
        return False
    if split == TRAIN:
        return not bigbench and bool(plan.train_items)
    return bool(plan.test_items)


def _check_setups(config: Any, specs: Sequence[FormatSpec]) -> None:
    """The mixture and ablation setups must exist, and a given mixture size must be positive."""
    if config.mixture and config.mixture_size is not None and config.mixture_size < 1:
        raise DataConfigError(f"mixture_size={config.mixture_size}: a mixture needs at least one row; give a "
                              "positive size, or leave it unset for sum_i min(n_i, rate_cap)")
    wanted = [config.mixture] + [config.ablation_setup] * any(spec.ablation for spec in specs)
    for setup in filter(None, wanted):
        try:
            mixtures.mixture_tasks(setup)
        except ValueError as error:
            raise DataConfigError(str(error)) from None


def _load_all(names: Sequence[str], strict: bool, data_dir: str | None, config: Any,
              specs: Sequence[FormatSpec]) -> tuple[dict[str, LoadedTask], dict[str, str]]:
    """Load every selected task; collect every problem into one DataConfigError.

    With `tasks=all` (not strict) a task without any data is skipped and returned as missing.
    """
    loaded: dict[str, LoadedTask] = {}
    missing: dict[str, str] = {}
    for name in tqdm.tqdm(names, desc="loading tasks", unit="task", file=sys.stderr):
        task = load_task(name, data_dir=data_dir, cache_dir=config.cache_dir, faithful=config.faithful)
        if task.train is None and task.evaluation is None and not strict:
            missing[name] = "no data found"
        else:
            loaded[name] = task
    problems = [p for task in loaded.values() for p in requirement_problems(task, specs, config.carve_example_pool)]
    if problems:
        raise DataConfigError("cannot prepare the data config:\n  " + "\n  ".join(problems))
    if not loaded:
        raise DataConfigError(f"none of the selected tasks has data (data_dir={data_dir!r}); "
                              f"set --config.data_dir or T5X_LIKE_DATA_DIR")
    if missing:
        logging.warning("skipping %d tasks without data: %s", len(missing), ", ".join(sorted(missing)))
    return loaded, missing


def _check_pools(plans: Mapping[str, TaskPlan], specs: Sequence[FormatSpec]) -> None:
    """Every task whose rows draw in-context examples needs at least NUM_EXAMPLES in its pool."""
    small = [f"{name}: its example pool ({plan.pool_origin}) holds {len(plan.pool)} examples, "
             f"{NUM_EXAMPLES} are needed per prompt" for name, plan in sorted(plans.items())
             if len(plan.pool) < NUM_EXAMPLES and any(
                 spec.needs_pool(split) and _applies(spec, plan, split) for spec in specs for split in spec.splits)]
    if small:
        raise DataConfigError("cannot prepare the data config:\n  " + "\n  ".join(small))


def prepare(config: Any, output_dir: str | os.PathLike) -> dict[str, Any]:
    """Prepare every (format, task, split) file, the mixtures and the manifest under `output_dir`.

    All config problems (unknown names, missing data or splits, empty mixtures, too small example
    pools) raise one DataConfigError, a bad template file one TemplateError, before anything is
    written. Returns the manifest.
    """
    root = pathlib.Path(output_dir)
    names, strict = _selected_tasks(config.tasks)
    specs = _selected_formats(config.formats)
    _check_setups(config, specs)
    setup = config.mixture or ""
    template_set = templates.load_template_file(config.templates_file) if config.templates_file else None
    wordings = templates.load_bigbench_wordings(config.bigbench_templates_file) if config.bigbench_templates_file else None
    data_dir = sources.resolve_data_dir(config.data_dir)
    loaded, missing = _load_all(names, strict, data_dir, config, specs)
    plans = {name: _plan(name, task, config) for name, task in loaded.items()}
    _check_pools(plans, specs)
    ctx = Context(
        seed=config.seed, faithful=config.faithful,
        pools={name: ExamplePool(plan.pool) for name, plan in plans.items()},
        relevance_partners=relevance_partners(plans, config.seed) if any(s.relevance for s in specs) else {},
        num_samples_ablation=config.num_samples_ablation, template_set=template_set, bigbench_wordings=wordings,
    )
    train_specs = [spec for spec in specs if TRAIN in spec.splits]
    planned_mixtures = {mixture_name(spec.name, setup): (spec, *_mixture_refs(spec, setup, plans, config))
                        for spec in train_specs if setup}
    ablation: dict[str, Any] = {}
    if any(spec.ablation for spec in specs):
        ablation_mixture, absent = _mixture_refs(FORMATS["samplegen"], config.ablation_setup, plans, config)
        ctx = dataclasses.replace(ctx, ablation_pool=ExamplePool(_ablation_examples(ablation_mixture, plans, ctx)))
        ablation = {"setup": config.ablation_setup, "mixture_format": "samplegen",
                    "counts": ablation_mixture.counts, "missing_tasks": absent,
                    "pool_size": len(ctx.ablation_pool), "examples_per_prompt": config.num_samples_ablation}
    (root / MANIFEST).unlink(missing_ok=True)  # until the new manifest lands, the dir reads as unfinished
    files: dict[str, Any] = {}
    for spec in train_specs:
        _write_format(root, spec, TRAIN, plans, ctx, files)
    manifest_mixtures = {name: _write_mixture(root, name, spec, mixture, absent, plans, ctx, config, files)
                         for name, (spec, mixture, absent) in planned_mixtures.items()}
    for spec in specs:
        if TEST in spec.splits:
            _write_format(root, spec, TEST, plans, ctx, files)
    manifest = {
        "config": {key: value for key, value in sorted(config.to_dict().items())},
        "data_dir": data_dir,
        "versions": _versions(),
        "formats": [spec.name for spec in specs],
        "templates": templates.template_file_record(config.templates_file),
        "bigbench_templates": templates.template_file_record(config.bigbench_templates_file, builtin=None),
        "missing_tasks": missing,
        "tasks": {name: _task_manifest(plans[name], loaded[name], ctx) for name in sorted(plans)},
        "mixtures": manifest_mixtures,
        "gold_pipeline_ablation": ablation,
        "files": dict(sorted(files.items())),
    }
    io_utils.atomic_write_json(str(root / MANIFEST), manifest)
    return manifest


def _plan(name: str, task: LoadedTask, config: Any) -> TaskPlan:
    """A task's plan; BIG-bench/GSM8K are test-only and take gold examples from their whole train split."""
    bigbench = registry.is_bigbench_style(name)
    plan = plan_task(
        name, None if bigbench else task.train, task.evaluation, seed=config.seed, num_test=config.num_test,
        size_limit=config.train_size_limit, carve_example_pool=config.carve_example_pool and not task.train,
        carved_pool_size=config.carved_pool_size,
    )
    if bigbench and task.train:
        plan = dataclasses.replace(plan, pool=tuple(task.train), pool_origin="train_split")
    return plan


def _write_format(root: pathlib.Path, spec: FormatSpec, split: str, plans: Mapping[str, TaskPlan],
                  ctx: Context, files: dict[str, Any]) -> None:
    """Write `<format>/<task>/<split>.jsonl` for every task the format applies to."""
    for name in tqdm.tqdm(sorted(plans), desc=f"{spec.name}/{split}", unit="task", file=sys.stderr):
        plan = plans[name]
        if _applies(spec, plan, split):
            rows = (format_item(item, spec, split, ctx) for item in _items(plan, spec, split))
            _write_rows(split_path(root, spec.name, name, split), rows, root, files)


def _mixture_refs(spec: FormatSpec, setup: str, plans: Mapping[str, TaskPlan], config: Any):
    """The seeded mixture of (task, item index) references over the setup's tasks that have train rows."""
    wanted = mixtures.mixture_tasks(setup)
    available = [name for name in wanted if name in plans and _applies(spec, plans[name], TRAIN)]
    absent = {name: "not selected or no data" if name not in plans else "no train split"
              for name in wanted if name not in available}
    if not available:
        raise DataConfigError(f"mixture {mixture_name(spec.name, setup)}: none of its tasks {wanted} has "
                              f"training data here")
    if absent:
        logging.warning("mixture %s: %d of %d tasks missing (%s)", mixture_name(spec.name, setup),
                        len(absent), len(wanted), ", ".join(sorted(absent)))
    refs = {name: [(name, i) for i in range(len(_items(plans[name], spec, TRAIN)))] for name in available}
    mixture = mixtures.build_mixture(refs, seed=config.seed, size=config.mixture_size, cap=config.rate_cap,
                                     size_limit=config.train_size_limit,
                                     validation_fraction=config.validation_fraction)
    return mixture, absent


def _write_mixture(root: pathlib.Path, name: str, spec: FormatSpec, mixture: mixtures.Mixture,
                   absent: Mapping[str, str], plans: Mapping[str, TaskPlan], ctx: Context, config: Any,
                   files: dict[str, Any]) -> dict[str, Any]:
    """Write `mixtures/<name>/{train,validation}.jsonl` from its references; return its manifest entry."""
    for split, refs in (("train", mixture.train), ("validation", mixture.validation)):
        rows = (format_item(_items(plans[task], spec, TRAIN)[i], spec, TRAIN, ctx)
                for task, i in tqdm.tqdm(refs, desc=f"mixture {name}/{split}", unit="row", file=sys.stderr))
        _write_rows(mixture_path(root, name, split), rows, root, files)
    return {
        "setup": config.mixture, "format": spec.name, "tasks": sorted(mixture.counts),
        "missing_tasks": dict(absent), "rates": mixture.rates, "counts": mixture.counts,
        "sizes": mixture.sizes, "train": len(mixture.train), "validation": len(mixture.validation),
        "rate_cap": config.rate_cap, "size_limit": config.train_size_limit, "seed": config.seed,
    }


def _ablation_examples(mixture: mixtures.Mixture, plans: Mapping[str, TaskPlan], ctx: Context) -> list[Example]:
    """The first in-context example of every training row of the ablation setup's SampleGen mixture."""
    spec = FORMATS["samplegen"]
    return [in_context_examples(_items(plans[task], spec, TRAIN)[i], spec, TRAIN, ctx)[0]
            for task, i in mixture.train]


def _task_manifest(plan: TaskPlan, loaded: LoadedTask, ctx: Context) -> dict[str, Any]:
    """A task's manifest entry: registry facts, sources, sizes, example pool (ids when carved), partner."""
    task = registry.get_task(plan.task)
    entry = {
        "source": {split: origin.splitlines()[0] for split, origin in sorted(loaded.origins.items())},
        "cluster": task.cluster, "category": task.category, "metric": task.metric,
        "has_train_split": plan.has_train, "has_eval_split": plan.has_eval,
        "train_items": len(plan.train_items), "samplegen_items": len(plan.samplegen_items),
        "test_items": len(plan.test_items),
        "example_pool": {"origin": plan.pool_origin, "size": len(plan.pool)},
    }
    if plan.pool_origin == "carved_from_eval":
        entry["example_pool"]["ids"] = [example.id for example in plan.pool]
    if plan.task in ctx.relevance_partners:
        entry["relevance_partner"] = ctx.relevance_partners[plan.task]
    return entry
