"""Tables as CSV (full precision, machine-readable), Markdown and LaTeX (formatted for reading).

Every file is written to a temporary name in the same directory and then renamed, so an
interrupted run never leaves a half-written table that looks complete.
"""
from __future__ import annotations

import math
import os

import numpy as np
import pandas as pd

from t5x_like.io_utils import atomic_write_text

MISSING = "–"
_LATEX_SPECIALS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                   "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                   "^": r"\textasciicircum{}", "–": "--", "±": r"$\pm$", "ρ": r"$\rho$",
                   "τ": r"$\tau$"}


def format_p(p: float) -> str:
    """A p-value for reading: 3 decimals, scientific below 0.001, '–' when undefined."""
    if p is None or not np.isfinite(p):
        return MISSING
    return f"{p:.1e}" if p < 1e-3 else f"{p:.3f}"


def format_number(x: float, digits: int = 2) -> str:
    """A float with fixed decimals, '–' when undefined."""
    if x is None or not np.isfinite(x):
        return MISSING
    return f"{x:.{digits}f}"


def format_mean_std(mean: float, std: float, digits: int = 1) -> str:
    """'mean ± std', or just the mean when the std is undefined (one seed)."""
    if not np.isfinite(mean):
        return MISSING
    if std is None or not np.isfinite(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def format_cell(value: object) -> str:
    """The display text of one cell (floats get 3 decimals; booleans yes/no; NaN '–')."""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        return MISSING if math.isnan(value) else f"{value:.3f}"
    return str(value)


def _is_number_column(column: pd.Series) -> bool:
    """Right-align numbers (not booleans)."""
    return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)


def to_markdown(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (pipes in cells escaped)."""
    def row(cells):
        return "| " + " | ".join(format_cell(c).replace("|", r"\|") for c in cells) + " |"
    numeric = [_is_number_column(frame[c]) for c in frame.columns]
    lines = [row(frame.columns), "|" + "|".join("---:" if n else "---" for n in numeric) + "|"]
    lines += [row(values) for values in frame.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def latex_escape(text: str) -> str:
    """Escapes LaTeX special characters (and maps –, ±, ρ, τ to LaTeX)."""
    return "".join(_LATEX_SPECIALS.get(ch, ch) for ch in text)


def to_latex(frame: pd.DataFrame, caption: str, label: str) -> str:
    """A booktabs ``table`` environment (needs \\usepackage{booktabs})."""
    align = "".join("r" if _is_number_column(frame[c]) else "l" for c in frame.columns)
    lines = [r"\begin{table}[t]", r"\centering", r"\small", rf"\begin{{tabular}}{{{align}}}",
             r"\toprule", " & ".join(latex_escape(str(c)) for c in frame.columns) + r" \\",
             r"\midrule"]
    lines += [" & ".join(latex_escape(format_cell(v)) for v in values) + r" \\"
              for values in frame.itertuples(index=False)]
    lines += [r"\bottomrule", r"\end{tabular}", rf"\caption{{{latex_escape(caption)}}}",
              rf"\label{{tab:{label}}}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def write_table(frame: pd.DataFrame, output_dir: str, name: str, caption: str,
                display: pd.DataFrame | None = None) -> list[str]:
    """Writes ``name``.csv (``frame``) and ``name``.md / ``name``.tex (``display``, default frame)."""
    display = frame if display is None else display
    paths = [os.path.join(output_dir, f"{name}.{ext}") for ext in ("csv", "md", "tex")]
    atomic_write_text(paths[0], frame.to_csv(index=False))
    atomic_write_text(paths[1], to_markdown(display))
    atomic_write_text(paths[2], to_latex(display, caption, name))
    return paths
