"""FLAN-2021-style instruction templates (written for this project) and the per-example draw.

A template is an instruction with `{field}` placeholders naming the task's `Example` fields and,
for classification tasks, an `{options}` slot filled with the options joined by "; " (the authors'
joining, no "OPTIONS:" header). Generative templates name their target: "label" (the example's
label) or, for translation, the field that becomes the target ("sent1"/"sent2": the direction).

The built-in set lives in `templates/flan_style.json` (at least 5 wordings per task). Its keys are
template groups (`Task.template_group`, e.g. "wmt16" for every wmt16 pair) or task names; an
external file can replace it (`load_template_file`, config key `data.templates_file`): JSON in the
same layout, or the authors' own `prompts/flan_orig.py` (UKPLab/arxiv2025-inherent-limits-plms),
whose `PATTERNS` dict literal is read with `ast.literal_eval` (never imported or executed) and used
as the original used it: the first five templates of each key, double quotes deleted, `{options_}`
as the options slot, the target placeholder naming the answer or the target field.

Draw: `draw_template(task, example_id, seed)` picks index
`int.from_bytes(sha256(f"{seed}:{task}:{example_id}")[:8], "big") % n_templates`, so each example's
template depends only on (seed, task, example id): not on task order, dataset size or other draws.
"""
from __future__ import annotations

import ast
import dataclasses
import difflib
import functools
import hashlib
import json
import pathlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

from t5x_like.data.examples import Example
from t5x_like.data.formats import BIGBENCH_STYLES
from t5x_like.data.tasks import Task, all_tasks, get_task, is_bigbench_style
from t5x_like.errors import UserError

BUILTIN_TEMPLATE_FILE = pathlib.Path(__file__).with_name("templates") / "flan_style.json"
OPTIONS_SLOT = "options"
LABEL_TARGET = "label"
OPTIONS_SEPARATOR = "; "
AUTHORS_OPTIONS_SLOT = "options_"  # the authors' name of the options slot
AUTHORS_TEMPLATES_PER_TASK = 5  # the original drew from the first five templates of each key
BUILTIN = "builtin"  # what a manifest records as the template file of the built-in set
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class TemplateError(UserError, ValueError):
    """A template set names an unknown task/group, or a template an unknown placeholder."""


@dataclasses.dataclass(frozen=True)
class Template:
    """One instruction wording. `target_field`: None (classification answer), "label" (generated
    target) or the field that is the target (translation direction)."""

    id: str
    instruction: str
    target_field: str | None = None

    @property
    def placeholders(self) -> tuple[str, ...]:
        """Names inside `{...}`, in order of appearance."""
        return tuple(_PLACEHOLDER.findall(self.instruction))


def join_options(options: Sequence[str]) -> str:
    """Options as the `{options}` slot shows them: joined by '; '."""
    return OPTIONS_SEPARATOR.join(options)


def shown_fields(template: Template, example: Example) -> tuple[tuple[str, str], ...]:
    """The example's fields a template may show: all but the template's target field."""
    return tuple((k, v) for k, v in example.fields if k != template.target_field)


def render(template: Template, example: Example) -> str:
    """The instruction with every placeholder filled from `example` (KeyError naming what's missing);
    an optional field of the task that the example's source lacks renders empty."""
    values = {name: "" for name in get_task(example.task).optional_fields}
    values.update(shown_fields(template, example))
    if example.options:
        values[OPTIONS_SLOT] = join_options(example.options)

    def fill(match: re.Match) -> str:
        name = match.group(1)
        if name not in values:
            raise KeyError(f"template {template.id!r} needs {{{name}}}, which example "
                           f"{example.id!r} of task {example.task!r} does not have "
                           f"(it has: {', '.join(values) or 'nothing'})")
        return values[name]
    return _PLACEHOLDER.sub(fill, template.instruction)


def template_problems(template: Template, task: Task) -> list[str]:
    """Why `template` cannot be used for `task` (empty list: it can)."""
    problems = []
    target = template.target_field
    if task.generative:
        allowed_targets = (LABEL_TARGET, *task.target_fields)
        if target not in allowed_targets:
            problems.append(f"target_field {target!r} must be one of {allowed_targets}")
    elif target is not None:
        problems.append(f"target_field {target!r} given for a classification task (omit it)")
    usable = [f for f in task.fields if f != target]
    if not task.generative:
        usable.append(OPTIONS_SLOT)
        if OPTIONS_SLOT not in template.placeholders:
            problems.append("classification templates need an {options} slot")
    for name in template.placeholders:
        if not _NAME.fullmatch(name):
            problems.append(f"malformed placeholder {{{name}}}")
        elif name not in usable:
            problems.append(f"unknown placeholder {{{name}}} (usable: {', '.join(usable)})")
    outside = _PLACEHOLDER.sub("", template.instruction)
    if "{" in outside or "}" in outside:
        problems.append("unbalanced brace")
    return problems


def _tasks_of_key(key: str) -> list[Task]:
    """The tasks a template-set key covers: every task of a template group, or one task."""
    group = [t for t in all_tasks() if t.template_group == key]
    return group or [t for t in all_tasks() if t.name == key]


def parse_template_set(data: Mapping[str, Any], origin: str,
                       id_prefix: str = "") -> dict[str, tuple[Template, ...]]:
    """Validate a template set (the JSON layout of flan_style.json) into task name -> templates.

    Task-name keys override group keys for that task. Every problem of the whole set is collected
    into one TemplateError naming `origin`.
    """
    entries = data.get("templates") if isinstance(data, Mapping) else None
    if not isinstance(entries, Mapping):
        raise TemplateError(f"{origin}: expected a JSON object with a 'templates' object")
    problems: list[str] = []
    by_task: dict[str, tuple[Template, ...]] = {}
    task_names = {t.name for t in all_tasks()}
    known_keys = task_names | {t.template_group for t in all_tasks()}
    groups = {t.template_group for t in all_tasks()}
    # group keys first, so keys naming a single task override them
    for key in sorted(entries, key=lambda k: k not in groups):
        tasks = _tasks_of_key(key)
        if not tasks:
            close = difflib.get_close_matches(key, sorted(known_keys), n=3, cutoff=0.5)
            problems.append(f"unknown task or template group {key!r}"
                            + (f" (did you mean {', '.join(close)}?)" if close else ""))
            continue
        items = entries[key]
        if not isinstance(items, list) or not items:
            problems.append(f"{key}: expected a non-empty list of templates")
            continue
        templates = []
        for k, item in enumerate(items):
            if not isinstance(item, Mapping) or not isinstance(item.get("instruction"), str):
                problems.append(f"{key}[{k}]: expected {{'instruction': str, 'target_field'?: str}}")
                continue
            templates.append(Template(f"{id_prefix}{key}/{k}", item["instruction"],
                                      item.get("target_field")))
        for task in tasks:
            for template in templates:
                problems += [f"{template.id} for task {task.name!r}: {p}"
                             for p in template_problems(template, task)]
            by_task[task.name] = tuple(templates)
    if problems:
        raise TemplateError(f"{origin}: {len(problems)} problem(s): " + "; ".join(problems))
    return by_task


def load_template_file(path: str | pathlib.Path) -> dict[str, tuple[Template, ...]]:
    """An external template set, validated; ids get the file stem ("flan_orig:rte/2").

    `.py`: the authors' `flan_orig.py` (`authors_template_data`); every task that uses instruction
    templates must then have its five. Otherwise JSON in the layout of flan_style.json.
    """
    path = pathlib.Path(path)
    if path.suffix == ".py":
        by_task = parse_template_set(authors_template_data(path), str(path), id_prefix=f"{path.stem}:")
        missing = [f"task {task.name!r} has {len(by_task.get(task.name, ()))} templates "
                   f"(needs the first {AUTHORS_TEMPLATES_PER_TASK} of key {task.template_group!r})"
                   for task in all_tasks() if not is_bigbench_style(task.name)
                   and len(by_task.get(task.name, ())) < AUTHORS_TEMPLATES_PER_TASK]
        if missing:
            raise TemplateError(f"{path}: {len(missing)} problem(s): " + "; ".join(missing))
        return by_task
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise TemplateError(f"{path}: cannot read template file ({exc})") from exc
    return parse_template_set(data, str(path), id_prefix=f"{path.stem}:")


def read_patterns(path: pathlib.Path) -> Any:
    """The value of the `PATTERNS = {...}` literal of a Python file, by `ast.literal_eval` (the file
    is parsed, never imported or executed)."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, SyntaxError, ValueError) as exc:
        raise TemplateError(f"{path}: cannot read template file ({exc})") from exc
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "PATTERNS"
                                                for t in node.targets):
            try:
                return ast.literal_eval(node.value)
            except ValueError as exc:
                raise TemplateError(f"{path}: PATTERNS is not a plain literal ({exc})") from exc
    raise TemplateError(f"{path}: no `PATTERNS = {{...}}` literal; expected the authors' prompts/flan_orig.py")


def authors_template_data(path: pathlib.Path) -> dict[str, Any]:
    """The authors' templates as a template set in the layout of flan_style.json.

    As the original's `create_prompts` used them: the first five of each key, double quotes deleted
    from the text, `{options_}` -> `{options}`; the target placeholder becomes the classification
    answer (None), the target field of a translation pair, or "label". Keys naming no task or
    template group of the registry (tasks this project does not register) are left out.
    """
    patterns = read_patterns(path)
    if not isinstance(patterns, Mapping):
        raise TemplateError(f"{path}: PATTERNS is not a dict")
    known = {t.name for t in all_tasks()} | {t.template_group for t in all_tasks()}
    entries: dict[str, Any] = {}
    for key, items in patterns.items():
        if key not in known:
            continue
        task = _tasks_of_key(key)[0]
        entries[key] = [_authors_template(task, item) for item in list(items)[:AUTHORS_TEMPLATES_PER_TASK]]
    return {"templates": entries}


def _authors_template(task: Task, item: Any) -> Any:
    """One (instruction, target placeholder) pair of the authors' file in the JSON layout."""
    if not (isinstance(item, tuple) and len(item) == 2 and all(isinstance(x, str) for x in item)):
        return item  # parse_template_set names the malformed entry
    instruction, target = item
    instruction = instruction.replace('"', "").replace(f"{{{AUTHORS_OPTIONS_SLOT}}}", f"{{{OPTIONS_SLOT}}}")
    entry: dict[str, str] = {"instruction": instruction}
    if task.generative:
        name = target.strip("{}")
        entry["target_field"] = name if name in task.target_fields else LABEL_TARGET
    return entry


def load_bigbench_wordings(path: str | pathlib.Path) -> dict[str, str]:
    """The BIG-bench prompt styles of the authors' `prompts/templates.json` (style -> text), validated.

    Keys `bigbench-closed`, `bigbench-bad-prompt-1` ... `-6` and `bigbench-adv` (the texts their
    test.py used); placeholders `{question}` (required), `{options}`, `{numbered_options}`.
    """
    path = pathlib.Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise TemplateError(f"{path}: cannot read template file ({exc})") from exc
    wordings, problems = {}, []
    for style in BIGBENCH_STYLES:
        key = "bigbench-" + style.replace("_", "-")
        text = data.get(key) if isinstance(data, Mapping) else None
        if not isinstance(text, str):
            problems.append(f"no string {key!r} (BIG-bench style {style})")
            continue
        unknown = set(_PLACEHOLDER.findall(text)) - {"question", "options", "numbered_options"}
        if unknown or "{question}" not in text:
            problems.append(f"{key}: placeholders must be {{question}}, {{options}}, {{numbered_options}} "
                            f"with {{question}} among them (found {sorted(set(_PLACEHOLDER.findall(text)))})")
        wordings[style] = text
    if problems:
        raise TemplateError(f"{path}: {len(problems)} problem(s): " + "; ".join(problems))
    return wordings


def template_file_record(path: str | pathlib.Path | None,
                         builtin: pathlib.Path | None = BUILTIN_TEMPLATE_FILE) -> dict[str, str]:
    """What a manifest records about the templates used: the file (or "builtin") and its sha256
    (none for built-in wordings that live in code, `builtin=None`)."""
    if path is None:
        return {"file": BUILTIN} | ({"sha256": hashlib.sha256(builtin.read_bytes()).hexdigest()} if builtin else {})
    return {"file": str(path), "sha256": hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()}


@functools.lru_cache(maxsize=1)
def builtin_templates() -> Mapping[str, tuple[Template, ...]]:
    """The project's own template set, task name -> templates (every registered task)."""
    data = json.loads(BUILTIN_TEMPLATE_FILE.read_text(encoding="utf-8"))
    return parse_template_set(data, str(BUILTIN_TEMPLATE_FILE))


def templates_for(task: str | Task,
                  template_set: Mapping[str, Sequence[Template]] | None = None) -> list[Template]:
    """The task's templates from `template_set` (default: the built-in set)."""
    task = get_task(task)
    templates = (builtin_templates() if template_set is None else template_set).get(task.name)
    if not templates:
        raise TemplateError(f"no templates for task {task.name!r} in the template set")
    return list(templates)


def draw_index(seed: int, task: str, example_id: str, n: int) -> int:
    """Deterministic index in [0, n) from sha256 of (seed, task, example id)."""
    digest = hashlib.sha256(f"{seed}:{task}:{example_id}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % n


def draw_template(task: str | Task, example_id: str, seed: int,
                  template_set: Mapping[str, Sequence[Template]] | None = None) -> Template:
    """The template used for one example: a function of (seed, task, example id) only."""
    templates = templates_for(task, template_set)
    name = get_task(task).name
    return templates[draw_index(seed, name, example_id, len(templates))]
