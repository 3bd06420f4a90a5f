"""Statistics for the analysis: correlations with p-values and bootstrap CIs, Holm, McNemar, binomial.

Coefficients: Spearman rho (mid-ranks for ties), Pearson r, Kendall tau-b. P-values are two-sided.
For n <= EXACT_MAX_N tasks the p-value is an exact permutation test (all n! pairings enumerated,
p = min(1, 2 * min(P(null <= obs), P(null >= obs))), the convention of
``scipy.stats.permutation_test``); above it, scipy's analytic p-value of the coefficient.
A correlation with a constant vector is undefined: it is reported as NaN with a note, never 0.
Partial correlation (Spearman, Pearson) controlling for one covariate: the Pearson r of the residuals
of both variables after least squares on [1, covariate] (ranks of all three first for Spearman), the
definition of pingouin's ``partial_corr``; its p-value is the t test with n - 3 degrees of freedom.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Sequence

import numpy as np
from scipy import stats as sps

METHODS = ("spearman", "pearson", "kendall")
PARTIAL_METHODS = ("spearman", "pearson")
EXACT_MAX_N = 8
MIN_N = 3
# Two statistics closer than this are treated as equal when comparing against the null distribution.
_TIE_TOLERANCE = 1e-12
# A residual this small relative to the centred variable is zero: the variable is a linear function of
# the covariate and its partial correlation is undefined (rounding would otherwise give any value).
_RESIDUAL_TOLERANCE = 1e-9
_SCIPY_FUNCTIONS = {"spearman": sps.spearmanr, "pearson": sps.pearsonr, "kendall": sps.kendalltau}


@dataclasses.dataclass(frozen=True)
class Correlation:
    """One correlation test: coefficient, two-sided p-value, how p was computed, and caveats."""
    coef: float
    p: float
    n: int
    p_method: str   # "exact permutation" | "scipy" | "t, <df> df" (partial) | "" (undefined)
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


def _paired_vectors(*vectors: Sequence[float]) -> list[np.ndarray]:
    """The inputs as float vectors, checked: one-dimensional, of equal length, finite."""
    arrays = [np.asarray(v, float) for v in vectors]
    if any(a.ndim != 1 or a.shape != arrays[0].shape for a in arrays):
        raise ValueError(f"correlation needs vectors of equal length, got {[a.shape for a in arrays]}.")
    if not all(np.isfinite(a).all() for a in arrays):
        raise ValueError("correlation inputs must be finite (drop missing tasks first).")
    return arrays


def correlation(x: Sequence[float], y: Sequence[float], method: str,
                labels: tuple[str, str] = ("x", "y")) -> Correlation:
    """Correlation test of two paired vectors, with the caveats a reader needs in ``note``."""
    if method not in METHODS:
        raise ValueError(f"unknown correlation method {method!r}; expected one of {METHODS}.")
    x, y = _paired_vectors(x, y)
    n = len(x)
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


def _residuals(values_mn: np.ndarray, covariate_mn: np.ndarray) -> np.ndarray:
    """Residuals of each row of ``values`` after least squares on [1, covariate row]; exact zeros
    where they are negligible (the row is a linear function of the covariate)."""
    centred = values_mn - values_mn.mean(axis=1, keepdims=True)
    z = covariate_mn - covariate_mn.mean(axis=1, keepdims=True)
    zz = (z * z).sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = np.where(zz > 0, (centred * z).sum(axis=1, keepdims=True) / zz, 0.0)
    residuals = centred - slope * z
    scale = np.sqrt((centred * centred).sum(axis=1, keepdims=True))
    negligible = np.sqrt((residuals * residuals).sum(axis=1, keepdims=True)) <= _RESIDUAL_TOLERANCE * scale
    return np.where(negligible, 0.0, residuals)


def rowwise_partial(x_mn: np.ndarray, y_mn: np.ndarray, z_mn: np.ndarray, method: str) -> np.ndarray:
    """The partial ``method`` coefficient of each row pair of two (m, n) arrays controlling for the
    covariate rows ``z_mn``: Pearson r of the residuals on [1, z] (ranks first for Spearman); NaN
    where a residual is zero."""
    if method not in PARTIAL_METHODS:
        raise ValueError(f"no partial {method!r} correlation; expected one of {PARTIAL_METHODS}.")
    arrays = [np.asarray(a, float) for a in (x_mn, y_mn, z_mn)]
    if method == "spearman":
        arrays = [sps.rankdata(a, axis=1) for a in arrays]
    x_mn, y_mn, z_mn = arrays
    return _rows_pearson(_residuals(x_mn, z_mn), _residuals(y_mn, z_mn))


def partial_correlation(x: Sequence[float], y: Sequence[float], covariate: Sequence[float], method: str,
                        labels: tuple[str, str] = ("x", "y")) -> Correlation:
    """Partial correlation test of two paired vectors controlling for one covariate (t test, n - 3
    df); Kendall has no partial form here and is reported undefined."""
    x, y, z = _paired_vectors(x, y, covariate)
    n = len(x)
    if method not in PARTIAL_METHODS:
        return Correlation(math.nan, math.nan, n, "", f"no partial {method} (only {', '.join(PARTIAL_METHODS)})")
    if n < MIN_N + 1:
        return Correlation(math.nan, math.nan, n, "",
                           f"undefined: only {n} task(s), a partial correlation needs >= {MIN_N + 1}")
    coef = float(rowwise_partial(x[None], y[None], z[None], method)[0])
    if math.isnan(coef):
        return Correlation(math.nan, math.nan, n, "", f"undefined: {' or '.join(labels)} scores are a "
                           "linear function of the covariate")
    df = n - 3
    t = coef * math.sqrt(df / (1.0 - coef * coef)) if abs(coef) < 1 else math.copysign(math.inf, coef)
    p = float(2.0 * sps.t.sf(abs(t), df))
    notes = [note for note in (_tie_note(x, labels[0]), _tie_note(y, labels[1])) if note] \
        if method == "spearman" else []
    if np.ptp(z) == 0:
        notes.append("covariate constant: the partial is the plain correlation")
    return Correlation(coef, p, n, f"t, {df} df", "; ".join(notes))


def bootstrap_indices(n: int, n_resamples: int, seed: int) -> np.ndarray:
    """(n_resamples, n) task indices drawn with replacement from ``np.random.default_rng(seed)``."""
    return np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))


def bootstrap_ci(x: Sequence[float], y: Sequence[float], method: str, indices: np.ndarray,
                 level: float = 0.95, covariate: Sequence[float] | None = None) -> tuple[float, float, int]:
    """Percentile bootstrap CI of a correlation over tasks (the partial correlation controlling for
    ``covariate`` when given); also returns the resamples used.

    Resamples in which a coefficient is undefined (a constant vector or residual) are dropped; with
    fewer than half of the resamples left the interval is NaN.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    if covariate is None:
        values = rowwise_coefficient(x[indices], y[indices], method)
    else:
        values = rowwise_partial(x[indices], y[indices], np.asarray(covariate, float)[indices], method)
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
