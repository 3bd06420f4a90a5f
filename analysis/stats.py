"""Statistics for the analysis: correlations with p-values and bootstrap CIs, Holm, McNemar, binomial.

Coefficients: Spearman rho (mid-ranks for ties), Pearson r, Kendall tau-b. P-values are two-sided.
For n <= EXACT_MAX_N tasks the p-value is an exact permutation test (all n! pairings enumerated,
p = min(1, 2 * min(P(null <= obs), P(null >= obs))), the convention of
``scipy.stats.permutation_test``); above it, scipy's analytic p-value of the coefficient.
A correlation with a constant vector is undefined: it is reported as NaN with a note, never 0.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Sequence

import numpy as np
from scipy import stats as sps

METHODS = ("spearman", "pearson", "kendall")
EXACT_MAX_N = 8
MIN_N = 3
# Two statistics closer than this are treated as equal when comparing against the null distribution.
_TIE_TOLERANCE = 1e-12
_SCIPY_FUNCTIONS = {"spearman": sps.spearmanr, "pearson": sps.pearsonr, "kendall": sps.kendalltau}


@dataclasses.dataclass(frozen=True)
class Correlation:
    """One correlation test: coefficient, two-sided p-value, how p was computed, and caveats."""
    coef: float
    p: float
    n: int
    p_method: str   # "exact permutation" | "scipy" | "" (undefined)
    note: str       # "" or a human-readable caveat (constant vector, ties, too few tasks)


def _rows_pearson(x_mn: np.ndarray, y_mn: np.ndarray) -> np.ndarray:
    """Pearson r of each row pair of two (m, n) arrays; NaN where a row is constant."""
    xc = x_mn - x_mn.mean(axis=1, keepdims=True)
    yc = y_mn - y_mn.mean(axis=1, keepdims=True)
    denom = np.sqrt((xc * xc).sum(axis=1) * (yc * yc).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (xc * yc).sum(axis=1) / denom
    r[(np.ptp(x_mn, axis=1) == 0) | (np.ptp(y_mn, axis=1) == 0)] = np.nan
    return np.clip(r, -1.0, 1.0)


def _rows_kendall(x_mn: np.ndarray, y_mn: np.ndarray) -> np.ndarray:
    """Kendall tau-b of each row pair of two (m, n) arrays; NaN where a row is constant."""
    i, j = np.triu_indices(x_mn.shape[1], k=1)
    sx = np.sign(x_mn[:, i] - x_mn[:, j])
    sy = np.sign(y_mn[:, i] - y_mn[:, j])
    denom = np.sqrt(np.count_nonzero(sx, axis=1).astype(float) * np.count_nonzero(sy, axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        tau = (sx * sy).sum(axis=1) / denom
    tau[denom == 0] = np.nan
    return np.clip(tau, -1.0, 1.0)


def rowwise_coefficient(x_mn: np.ndarray, y_mn: np.ndarray, method: str) -> np.ndarray:
    """The ``method`` coefficient of each row pair of two (m, n) arrays (vectorised, for resampling)."""
    x_mn, y_mn = np.asarray(x_mn, float), np.asarray(y_mn, float)
    if method == "pearson":
        return _rows_pearson(x_mn, y_mn)
    if method == "spearman":
        return _rows_pearson(sps.rankdata(x_mn, axis=1), sps.rankdata(y_mn, axis=1))
    if method == "kendall":
        return _rows_kendall(x_mn, y_mn)
    raise ValueError(f"unknown correlation method {method!r}; expected one of {METHODS}.")


def exact_permutation_pvalue(x: Sequence[float], y: Sequence[float], method: str) -> float:
    """Two-sided exact permutation p-value of a correlation, enumerating all n! pairings of y."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    n = len(x)
    if n > EXACT_MAX_N:
        raise ValueError(f"exact enumeration needs n <= {EXACT_MAX_N} (n! pairings), got n={n}.")
    permutations = np.array(list(itertools.permutations(range(n))))
    null = rowwise_coefficient(np.broadcast_to(x, permutations.shape), y[permutations], method)
    observed = rowwise_coefficient(x[None], y[None], method)[0]
    if math.isnan(observed):
        return math.nan
    p_less = np.mean(null <= observed + _TIE_TOLERANCE)
    p_greater = np.mean(null >= observed - _TIE_TOLERANCE)
    return float(min(1.0, 2.0 * min(p_less, p_greater)))


def _tie_note(values: np.ndarray, label: str) -> str:
    """Describes ties in one vector ("" if none): how many values share a rank."""
    _, counts = np.unique(values, return_counts=True)
    tied = int(counts[counts > 1].sum())
    return f"{tied} of {len(values)} {label} scores tied (mid-ranks; Kendall tau-b)" if tied else ""


def correlation(x: Sequence[float], y: Sequence[float], method: str,
                labels: tuple[str, str] = ("x", "y")) -> Correlation:
    """Correlation test of two paired vectors, with the caveats a reader needs in ``note``."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"correlation needs two vectors of equal length, got {x.shape} and {y.shape}.")
    if method not in METHODS:
        raise ValueError(f"unknown correlation method {method!r}; expected one of {METHODS}.")
    n = len(x)
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("correlation inputs must be finite (drop missing tasks first).")
    if n < MIN_N:
        return Correlation(math.nan, math.nan, n, "", f"undefined: only {n} task(s), need >= {MIN_N}")
    constant = [label for label, v in zip(labels, (x, y)) if np.ptp(v) == 0]
    if constant:
        return Correlation(math.nan, math.nan, n, "",
                           f"undefined: {' and '.join(constant)} scores are constant across tasks")
    notes = [note for note in (_tie_note(x, labels[0]), _tie_note(y, labels[1])) if note]
    result = _SCIPY_FUNCTIONS[method](x, y)
    coef = float(result.statistic)
    if n <= EXACT_MAX_N:
        p, p_method = exact_permutation_pvalue(x, y, method), "exact permutation"
    else:
        p, p_method = float(result.pvalue), "scipy"
    return Correlation(coef, p, n, p_method, "; ".join(notes))


def bootstrap_indices(n: int, n_resamples: int, seed: int) -> np.ndarray:
    """(n_resamples, n) task indices drawn with replacement from ``np.random.default_rng(seed)``."""
    return np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))


def bootstrap_ci(x: Sequence[float], y: Sequence[float], method: str, indices: np.ndarray,
                 level: float = 0.95) -> tuple[float, float, int]:
    """Percentile bootstrap CI of a correlation over tasks; also returns the resamples used.

    Resamples in which a vector is constant (coefficient undefined) are dropped; with fewer than
    half of the resamples left the interval is NaN.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    values = rowwise_coefficient(x[indices], y[indices], method)
    valid = values[np.isfinite(values)]
    if len(valid) < max(1, len(values) // 2):
        return math.nan, math.nan, len(valid)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(valid, [alpha, 1.0 - alpha])
    return float(lo), float(hi), len(valid)


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm step-down adjusted p-values; NaN entries are outside the family and stay NaN."""
    p = np.asarray(pvalues, float)
    adjusted = np.full_like(p, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    m = len(finite)
    if m == 0:
        return adjusted
    order = finite[np.argsort(p[finite], kind="stable")]
    steps = p[order] * (m - np.arange(m))
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(steps))
    return adjusted


def mcnemar_exact(b: int, c: int) -> float:
    """Exact two-sided McNemar p-value from the discordant counts b and c (binomial, p = 1/2)."""
    if b + c == 0:
        return 1.0
    return float(min(1.0, 2.0 * sps.binom.cdf(min(b, c), b + c, 0.5)))


def binomial_above_chance(k: int, n: int, chance_percent: float) -> float:
    """One-sided p-value that accuracy k/n exceeds the chance rate (exact binomial test)."""
    if n <= 0 or not np.isfinite(chance_percent):
        return math.nan
    return float(sps.binomtest(int(k), int(n), chance_percent / 100.0, alternative="greater").pvalue)


def paired_bootstrap_mean(differences: Sequence[float], n_resamples: int, seed: int,
                          level: float = 0.95) -> tuple[float, float, float]:
    """Mean of per-item differences and its percentile bootstrap CI (items resampled, seeded)."""
    d = np.asarray(differences, float)
    means = d[bootstrap_indices(len(d), n_resamples, seed)].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return float(d.mean()), float(lo), float(hi)
