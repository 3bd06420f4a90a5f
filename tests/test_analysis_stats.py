"""analysis.stats against scipy / statsmodels and hand-computed values."""
import itertools
import math
import warnings

import numpy as np
import pytest
import statsmodels.api as sm
from scipy import stats as sps
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests

from analysis import stats

SCIPY = {"spearman": sps.spearmanr, "pearson": sps.pearsonr, "kendall": sps.kendalltau}
# A fixed table of 12 tasks with ties in both columns.
X12 = np.array([12.0, 55.5, 31.0, 31.0, 78.2, 64.0, 5.0, 49.9, 90.1, 22.2, 64.0, 40.0])
Y12 = np.array([20.0, 61.0, 25.5, 44.0, 70.0, 70.0, 9.5, 38.0, 88.0, 35.0, 52.0, 41.0])


@pytest.mark.parametrize("method", stats.METHODS)
def test_coefficient_and_p_equal_scipy_above_exact_limit(method):
    result = stats.correlation(X12, Y12, method)
    reference = SCIPY[method](X12, Y12)
    assert result.coef == pytest.approx(reference.statistic, abs=1e-12)
    assert result.p == pytest.approx(reference.pvalue, rel=1e-10)
    assert result.p_method == "scipy" and result.n == 12
    assert "tied" in result.note


def test_hand_computed_coefficients():
    x, y = [1, 2, 3, 4, 5], [2, 1, 4, 3, 5]
    # Spearman: sum d^2 = 4 -> 1 - 6*4 / (5*24) = 0.8; Kendall: 8 concordant, 2 discordant -> 0.6.
    assert stats.correlation(x, y, "spearman").coef == pytest.approx(0.8)
    assert stats.correlation(x, y, "pearson").coef == pytest.approx(0.8)
    assert stats.correlation(x, y, "kendall").coef == pytest.approx(0.6)


def _scipy_exact_p(x, y, method):
    """scipy.stats.permutation_test over all pairings (only x permuted, y fixed)."""
    def statistic(a, axis=-1):
        return stats.rowwise_coefficient(np.atleast_2d(a), np.broadcast_to(y, np.shape(np.atleast_2d(a))),
                                         method)
    return sps.permutation_test((x,), statistic, permutation_type="pairings", n_resamples=np.inf,
                                vectorized=True, axis=-1).pvalue


@pytest.mark.parametrize("method", stats.METHODS)
@pytest.mark.parametrize("n", [5, 7])
def test_exact_permutation_p_equals_scipy_permutation_test(method, n):
    rng = np.random.default_rng(n)
    x = np.round(rng.uniform(0, 100, n), 0)
    y = x * 0.5 + rng.normal(0, 20, n)
    y[1] = y[2]  # a tie
    result = stats.correlation(x, y, method)
    assert result.p_method == "exact permutation"
    assert result.p == pytest.approx(_scipy_exact_p(x, y, method), abs=1e-12)


def test_exact_permutation_p_equals_hand_enumeration():
    x, y = np.array([3.0, 1.0, 4.0, 1.5]), np.array([2.0, 7.0, 1.0, 8.0])
    observed = sps.spearmanr(x, y).statistic
    null = [sps.spearmanr(x, y[list(p)]).statistic for p in itertools.permutations(range(4))]
    less = sum(v <= observed + 1e-12 for v in null) / 24
    greater = sum(v >= observed - 1e-12 for v in null) / 24
    assert stats.exact_permutation_pvalue(x, y, "spearman") == pytest.approx(min(1, 2 * min(less, greater)))


def test_kendall_tau_b_rowwise_equals_scipy_with_ties():
    rng = np.random.default_rng(1)
    xs, ys = rng.integers(0, 4, (20, 9)).astype(float), rng.integers(0, 4, (20, 9)).astype(float)
    got = stats.rowwise_coefficient(xs, ys, "kendall")
    want = [sps.kendalltau(a, b).statistic for a, b in zip(xs, ys)]
    np.testing.assert_allclose(got, want, atol=1e-12)


@pytest.mark.parametrize("method", stats.METHODS)
def test_constant_vector_is_undefined_not_zero(method):
    result = stats.correlation([50.0] * 6, [1, 2, 3, 4, 5, 6], method, labels=("flan_d", "base_d"))
    assert math.isnan(result.coef) and math.isnan(result.p)
    assert "flan_d scores are constant" in result.note


def test_too_few_tasks_is_undefined():
    result = stats.correlation([1.0, 2.0], [2.0, 1.0], "spearman")
    assert math.isnan(result.coef) and "need >= 3" in result.note


def test_known_monotone_relation_gives_rho_one():
    x = np.linspace(1, 90, 12)
    y = np.exp(x / 10)  # strictly increasing, far from linear
    assert stats.correlation(x, y, "spearman").coef == pytest.approx(1.0)
    assert stats.correlation(x, y, "kendall").coef == pytest.approx(1.0)
    assert stats.correlation(x, y, "pearson").coef < 0.9
    assert stats.correlation(x, y, "spearman").p < 1e-6


@pytest.mark.parametrize("method", stats.METHODS)
def test_p_values_of_independent_tables_are_uniform(method):
    """Calibration: 500 draws of independent 40-task tables; KS test against U(0, 1).

    (At n = 40 every p-value is continuous; scipy's Kendall p is exact, hence discrete, up to 33.)
    """
    rng = np.random.default_rng(2024)
    p = [stats.correlation(rng.normal(size=40), rng.normal(size=40), method).p for _ in range(500)]
    assert sps.kstest(p, "uniform").pvalue > 0.01


def test_exact_permutation_p_values_are_valid_under_independence():
    """Small n (exact, discrete p): P(p <= a) must not exceed a beyond binomial noise."""
    rng = np.random.default_rng(7)
    p = np.array([stats.correlation(rng.normal(size=6), rng.normal(size=6), "spearman").p
                  for _ in range(500)])
    for a in (0.05, 0.1, 0.25, 0.5):
        assert np.mean(p <= a) <= a + 3 * math.sqrt(a * (1 - a) / 500)
    assert np.mean(p <= 0.5) > 0.3  # and not degenerate (always 1)


@pytest.mark.parametrize("method", stats.METHODS)
def test_bootstrap_ci_reproducible_and_equal_to_loop_reference(method):
    indices = stats.bootstrap_indices(len(X12), 300, seed=11)
    low, high, used = stats.bootstrap_ci(X12, Y12, method, indices)
    again = stats.bootstrap_ci(X12, Y12, method, stats.bootstrap_indices(len(X12), 300, seed=11))
    assert (low, high, used) == again
    other = stats.bootstrap_ci(X12, Y12, method, stats.bootstrap_indices(len(X12), 300, seed=12))
    assert (low, high) != other[:2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns on constant resamples (NaN, dropped below)
        reference = np.array([SCIPY[method](X12[i], Y12[i]).statistic for i in indices])
    reference = reference[np.isfinite(reference)]
    assert used == len(reference)
    np.testing.assert_allclose((low, high), np.quantile(reference, [0.025, 0.975]), atol=1e-12)
    assert low <= stats.correlation(X12, Y12, method).coef <= high


def test_holm_equals_statsmodels_and_skips_nan():
    p = np.array([0.01, 0.04, 0.03, 0.5, 0.0001, 0.04, 0.2])
    expected = multipletests(p, method="holm")[1]
    np.testing.assert_allclose(stats.holm(p), expected, atol=1e-15)
    with_nan = np.insert(p, 2, np.nan)
    adjusted = stats.holm(with_nan)
    assert math.isnan(adjusted[2])
    np.testing.assert_allclose(np.delete(adjusted, 2), expected, atol=1e-15)


@pytest.mark.parametrize("b,c", [(0, 0), (0, 5), (7, 2), (3, 3), (40, 61), (1, 0)])
def test_mcnemar_exact_equals_statsmodels(b, c):
    table = [[10, b], [c, 12]]
    assert stats.mcnemar_exact(b, c) == pytest.approx(mcnemar(table, exact=True).pvalue, abs=1e-14)


def test_binomial_above_chance_equals_hand_tail_sum():
    n, k, p = 20, 9, 0.25
    tail = sum(math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(k, n + 1))
    assert stats.binomial_above_chance(k, n, 25.0) == pytest.approx(tail, rel=1e-10)


def test_paired_bootstrap_mean_reproducible():
    d = np.random.default_rng(0).normal(1.0, 3.0, 200)
    mean, low, high = stats.paired_bootstrap_mean(d, 500, seed=3)
    assert mean == pytest.approx(d.mean())
    assert (mean, low, high) == stats.paired_bootstrap_mean(d, 500, seed=3)
    assert low < mean < high


def residualised_partial(x, y, z):
    """Partial r as pingouin / statsmodels define it: Pearson r of the OLS residuals of x and y on
    [1, z] (NaN when a residual vanishes: that variable is a linear function of z); p from
    t = r * sqrt(df / (1 - r^2)) with df = n - 3."""
    exog = sm.add_constant(np.asarray(z, float), has_constant="add")
    residuals = [sm.OLS(v, exog).fit().resid for v in (x, y)]
    if any(np.linalg.norm(e) <= 1e-9 * np.linalg.norm(v - np.mean(v)) for e, v in zip(residuals, (x, y))):
        return math.nan, math.nan
    r = sps.pearsonr(*residuals).statistic
    df = len(x) - 3
    return r, 2 * sps.t.sf(abs(r * math.sqrt(df / (1 - r * r))), df)


def _partial_inputs(n=15, seed=3):
    rng = np.random.default_rng(seed)
    z = rng.uniform(15, 50, n)
    x = z + rng.normal(0, 5, n)
    return x, 0.6 * z + 0.3 * x + rng.normal(0, 4, n), z


@pytest.mark.parametrize("method", stats.PARTIAL_METHODS)
def test_partial_correlation_equals_residualised_ols_and_t_with_n_minus_3_df(method):
    x, y, z = _partial_inputs()
    result = stats.partial_correlation(x, y, z, method)
    if method == "spearman":  # pingouin's partial Spearman: the partial Pearson of the ranks
        x, y, z = (sps.rankdata(v) for v in (x, y, z))
    r, p = residualised_partial(x, y, z)
    assert result.coef == pytest.approx(r, abs=1e-12)
    assert result.p == pytest.approx(p, rel=1e-10)
    assert result.p_method == "t, 12 df" and result.n == 15
    r_xy, r_xz, r_yz = (sps.pearsonr(a, b).statistic for a, b in ((x, y), (x, z), (y, z)))
    assert result.coef == pytest.approx((r_xy - r_xz * r_yz) / math.sqrt((1 - r_xz ** 2) * (1 - r_yz ** 2)))


def test_partial_correlation_undefined_cases():
    x, y, z = _partial_inputs()
    linear = stats.partial_correlation(2 * z + 1, y, z, "pearson", labels=("flan_d", "base_d"))
    assert math.isnan(linear.coef) and "linear function of the covariate" in linear.note
    assert math.isnan(stats.partial_correlation(x, y, z, "kendall").coef)
    assert "needs >= 4" in stats.partial_correlation(x[:3], y[:3], z[:3], "pearson").note
    constant = stats.partial_correlation(x, y, np.full(15, 50.0), "pearson")
    assert constant.coef == pytest.approx(sps.pearsonr(x, y).statistic)
    assert "covariate constant" in constant.note


@pytest.mark.parametrize("method", stats.PARTIAL_METHODS)
def test_partial_bootstrap_ci_equals_loop_reference(method):
    x, y, z = _partial_inputs()
    indices = stats.bootstrap_indices(len(x), 200, seed=5)
    low, high, used = stats.bootstrap_ci(x, y, method, indices, covariate=z)
    reference = []
    for i in indices:
        a, b, c = x[i], y[i], z[i]
        if method == "spearman":
            a, b, c = (sps.rankdata(v) for v in (a, b, c))
        reference.append(residualised_partial(a, b, c)[0])
    reference = np.array(reference)[np.isfinite(reference)]
    assert used == len(reference) > 150
    np.testing.assert_allclose((low, high), np.quantile(reference, [0.025, 0.975]), atol=1e-10)
