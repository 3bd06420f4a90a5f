"""Imports point down: launch -> t5x_like / analysis; analysis -> JAX-free parts of t5x_like;
t5x_like never imports the analysis package or the entry points; models/ never imports the
checkpoint formats above it."""
from __future__ import annotations

import ast
import pathlib

REPO = pathlib.Path(__file__).resolve().parents[1]


def imported_modules(path: pathlib.Path) -> set[str]:
    """Every module a file imports (absolute names; inside functions too)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def test_the_library_imports_neither_analysis_nor_launch():
    for path in sorted((REPO / "t5x_like").rglob("*.py")):
        up = {m for m in imported_modules(path) if m.split(".")[0] in ("analysis", "launch")}
        assert not up, f"{path.relative_to(REPO)} imports {sorted(up)}"


def test_models_do_not_import_the_checkpoint_formats_above_them():
    above = ("t5x_like.hf_io", "t5x_like.gguf", "t5x_like.model_dirs", "t5x_like.engine", "t5x_like.trainer")
    for path in sorted((REPO / "t5x_like" / "models").rglob("*.py")):
        up = {m for m in imported_modules(path) if m.startswith(above)}
        assert not up, f"{path.relative_to(REPO)} imports {sorted(up)}"


def test_only_the_lm_eval_backend_imports_lm_eval():
    """lm-eval is an optional extra (requirements-lm-eval.txt): no other library module imports it or the
    backend, so t5x_like runs without it installed."""
    for path in sorted((REPO / "t5x_like").rglob("*.py")):
        if path.name == "lm_eval_backend.py":
            continue
        extra = {m for m in imported_modules(path) if m.split(".")[0] == "lm_eval" or m.startswith("t5x_like.lm_eval")}
        assert not extra, f"{path.relative_to(REPO)} imports {sorted(extra)}"
