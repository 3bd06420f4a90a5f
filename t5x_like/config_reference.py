"""The config reference (docs/configs.md), generated from configs/base.py itself so it stays true.

Every leaf key of `base.get_config()` is listed with its default; its meaning is the comment the
config source gives it (the inline `# ...` of its assignment and the comment lines right above it),
read with `ast` + `tokenize` from the file that defines the section (configs/base.py, and
configs/data/default.py for `data`).
"""
from __future__ import annotations

import ast
import io
import os
import tokenize
from typing import Any, Iterator

import ml_collections

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Which function of which file fills which section ("" = the top level of get_config()).
SECTION_SOURCES = (
    ("configs/base.py", "get_config", ""),
    ("configs/base.py", "get_model_config", "model"),
    ("configs/base.py", "get_partitioning_config", "partitioning"),
    ("configs/base.py", "get_train_config", "train"),
    ("configs/base.py", "get_eval_config", "eval"),
    ("configs/base.py", "get_tuning_config", "tuning"),
    ("configs/base.py", "get_analysis_config", "analysis"),
    ("configs/data/default.py", "get_config", "data"),
)


def flatten(config: ml_collections.ConfigDict, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, default) of every leaf, in definition order; sequences are leaves."""
    for key, value in config.items(preserve_field_references=True):
        name = f"{prefix}{key}"
        if isinstance(value, ml_collections.ConfigDict):
            yield from flatten(value, name + ".")
        else:
            yield name, value.get() if hasattr(value, "get") and not isinstance(value, dict) else value


def _comments_by_line(source: str) -> dict[int, str]:
    """Line number -> the text of the comment on that line (without '#')."""
    return {tok.start[0]: tok.string.lstrip("#").strip()
            for tok in tokenize.generate_tokens(io.StringIO(source).readline) if tok.type == tokenize.COMMENT}


def _dotted(node: ast.expr) -> list[str] | None:
    """`a.b.c` -> ["a", "b", "c"]; None for anything else."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return [node.id, *reversed(parts)]


def section_comments(path: str, function: str, section: str) -> dict[str, str]:
    """Dotted key -> its comment, for every `var.key... = value` assignment in `function` of `path`."""
    with open(os.path.join(ROOT, path)) as f:
        source = f.read()
    comments = _comments_by_line(source)
    lines = source.splitlines()
    tree = ast.parse(source)
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == function)
    out = {}
    for node in ast.walk(fn):
        if not isinstance(node, ast.Assign):
            continue
        for target in node.targets:
            parts = _dotted(target)
            if not parts or len(parts) < 2:
                continue
            above, line = [], node.lineno - 1
            while line >= 1 and lines[line - 1].strip().startswith("#"):
                above.insert(0, comments[line])
                line -= 1
            text = " ".join(above + [comments[n] for n in range(node.lineno, node.end_lineno + 1) if n in comments])
            key = ".".join(([section] if section else []) + parts[1:])
            out[key] = text
    return out


def all_comments() -> dict[str, str]:
    """Dotted key -> comment over every section source."""
    out: dict[str, str] = {}
    for path, function, section in SECTION_SOURCES:
        out.update(section_comments(path, function, section))
    return out


def section_docs() -> dict[str, str]:
    """Section -> the docstring of the function that builds it (the file's docstring for data)."""
    out = {}
    for path, function, section in SECTION_SOURCES:
        with open(os.path.join(ROOT, path)) as f:
            tree = ast.parse(f.read())
        fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == function)
        doc = ast.get_docstring(fn) or ast.get_docstring(tree) or ""
        out[section] = " ".join(doc.split())
    return out


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _default(value: Any) -> str:
    return f"`{_cell(repr(value))}`"


def markdown(config: ml_collections.ConfigDict) -> str:
    """docs/configs.md: one table per section with key, default and meaning."""
    comments, docs = all_comments(), section_docs()
    sections: dict[str, list[tuple[str, Any]]] = {section: [] for _, _, section in SECTION_SOURCES}
    for key, value in flatten(config):
        section = key.split(".")[0] if isinstance(config[key.split(".")[0]], ml_collections.ConfigDict) else ""
        if section not in sections:
            raise ValueError(f"config section {section!r} has no entry in SECTION_SOURCES; add its source")
        sections[section].append((key, value))
    out = [
        "# Config reference",
        "",
        "<!-- generated by `python -m launch.config_reference --output=docs/configs.md`; do not edit by hand -->",
        "",
        "Every key of `configs/base.py` (`get_config()`), with its default and the meaning its source",
        "comment gives. Experiment configs (`configs/experiments/*.py`) start from it and override keys;",
        "any key can be set on the command line: `--config.train.learning_rate=1e-4`,",
        "`--config.partitioning.mesh_shape=\"(1,2,4)\"`. The data section is documented in more detail in",
        "[data.md](data.md), evaluation in [evaluation.md](evaluation.md), models in [models.md](models.md).",
        "",
    ]
    for section, items in sections.items():
        out += [f"## `{section}`" if section else "## top level", "", docs[section], "",
                "| key | default | meaning |", "|---|---|---|"]
        out += [f"| `{key}` | {_default(value)} | {_cell(comments.get(key, ''))} |" for key, value in items]
        out.append("")
    return "\n".join(out)
