"""Tests for weightstats.stats.normality: every statistic against scipy/statsmodels."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from weightstats.errors import DegenerateDataWarning, InputDataError
from weightstats.stats import _norm_kernels as K
from weightstats.stats.normality import (
    SHAPIRO_MAX,
    TESTS,
    EffectSizes,
    effect_sizes,
    normality,
    normality_with_effects,
)

statsmodels_diag = pytest.importorskip("statsmodels.stats.diagnostic")


def _samples(rng):
    return {
        "normal": rng.normal(3.0, 2.0, size=400),
        "t5": rng.standard_t(5, size=2500),
        "uniform": rng.uniform(-1, 1, size=60),
        "lognormal": rng.lognormal(0, 0.7, size=1500),
    }


def _by_test(table: pd.DataFrame) -> dict[str, pd.Series]:
    return {row.test: row for row in table.itertuples(index=False)}


@pytest.mark.parametrize("kind", ["normal", "t5", "uniform", "lognormal"])
def test_normality_against_scipy_and_statsmodels(rng, kind):
    x = _samples(rng)[kind]
    rows = _by_test(normality(x, rng=0))
    mean, sd = x.mean(), x.std(ddof=1)
    # scipy.stats.shapiro (n <= 5000: the whole sample)
    ref = stats.shapiro(x)
    assert rows["shapiro"].statistic == pytest.approx(ref.statistic, rel=1e-12)
    assert rows["shapiro"].pvalue == pytest.approx(ref.pvalue, rel=1e-10)
    # scipy.stats.normaltest (D'Agostino-Pearson K2)
    ref = stats.normaltest(x)
    assert rows["dagostino"].statistic == pytest.approx(ref.statistic, rel=1e-9)
    assert rows["dagostino"].pvalue == pytest.approx(ref.pvalue, rel=1e-8, abs=1e-300)
    # scipy.stats.jarque_bera
    ref = stats.jarque_bera(x)
    assert rows["jarque_bera"].statistic == pytest.approx(ref.statistic, rel=1e-9)
    assert rows["jarque_bera"].pvalue == pytest.approx(ref.pvalue, rel=1e-8, abs=1e-300)
    # scipy.stats.anderson, new API of scipy 1.17 (method=...); only the statistic is compared,
    # its interpolated p-value is a coarse table look-up.
    ref = stats.anderson(x, dist="norm", method="interpolate")
    assert rows["anderson"].statistic == pytest.approx(ref.statistic, rel=1e-9)
    # statsmodels' Lilliefors (statistic and table p-value)
    d_ref, p_ref = statsmodels_diag.lilliefors(x, dist="norm", pvalmethod="table")
    assert rows["lilliefors"].statistic == pytest.approx(d_ref, rel=1e-10)
    assert rows["lilliefors"].pvalue == pytest.approx(p_ref, rel=1e-10)
    # scipy.stats.cramervonmises against the fitted normal (statistic only: scipy's p-value
    # assumes known parameters)
    ref = stats.cramervonmises(x, "norm", args=(mean, sd))
    assert rows["cramervonmises"].statistic == pytest.approx(ref.statistic, rel=1e-9)
    # scipy.stats.kstest against the fitted normal: statistic and its (anti-conservative) p-value
    ref = stats.kstest(x, "norm", args=(mean, sd))
    assert rows["ks"].statistic == pytest.approx(ref.statistic, rel=1e-10)
    assert rows["ks"].pvalue == pytest.approx(ref.pvalue, rel=1e-8)
    assert "anti-conservative" in rows["ks"].note
    assert rows["lilliefors"].statistic == rows["ks"].statistic


def test_normality_anderson_pvalue_against_statsmodels_normal_ad(rng):
    # statsmodels.stats.diagnostic.normal_ad implements the same Stephens case-3 formula; compare
    # p-values across all four pieces of the formula (A*2 < 0.2, < 0.34, < 0.6, larger).
    seen = set()
    for scale in (0.0, 0.3, 0.6, 1.0, 1.5):
        for n in (20, 200):
            x = rng.normal(size=n) + scale * rng.exponential(size=n)
            a2, p_ref = statsmodels_diag.normal_ad(x)
            row = _by_test(normality(x, "anderson"))["anderson"]
            assert row.statistic == pytest.approx(a2, rel=1e-9)
            assert row.pvalue == pytest.approx(p_ref, rel=1e-9)
            a_star = a2 * (1 + 0.75 / n + 2.25 / n**2)
            seen.add(int(np.searchsorted([0.2, 0.34, 0.6], a_star)))
    # normal quantiles plus a little noise: A*2 < 0.2 (the first piece)
    x = stats.norm.ppf((np.arange(50) + 0.5) / 50) + 0.05 * rng.normal(size=50)
    a2, p_ref = statsmodels_diag.normal_ad(x)
    assert a2 * (1 + 0.75 / 50 + 2.25 / 50**2) < 0.2
    assert _by_test(normality(x, "anderson"))["anderson"].pvalue == pytest.approx(p_ref, rel=1e-9)
    seen.add(0)
    assert seen == {0, 1, 2, 3}


def test_cramervonmises_pvalue_case3_known_values():
    # R nortest::cvm.test formula, D'Agostino & Stephens (1986) Table 4.9; the upper-tail
    # critical values of W*2 for the case-3 test are 0.091 (15 %), 0.104 (10 %), 0.126 (5 %),
    # 0.178 (1 %).
    n = 10**6  # W*2 = W2 here
    assert K.cramervonmises_pvalue_case3(0.126, n) == pytest.approx(0.05, abs=0.003)
    assert K.cramervonmises_pvalue_case3(0.178, n) == pytest.approx(0.01, abs=0.002)
    assert K.cramervonmises_pvalue_case3(0.104, n) == pytest.approx(0.10, abs=0.01)
    assert K.cramervonmises_pvalue_case3(0.091, n) == pytest.approx(0.15, abs=0.01)
    assert K.cramervonmises_pvalue_case3(5.0, n) == K.CVM_PVALUE_FLOOR


def test_anderson_pvalue_case3_known_values():
    # Stephens (1974) case-3 critical values of A*2: 0.631 (10 %), 0.752 (5 %), 1.035 (1 %).
    n = 10**6
    assert K.anderson_pvalue_case3(0.752, n) == pytest.approx(0.05, abs=0.003)
    assert K.anderson_pvalue_case3(1.035, n) == pytest.approx(0.01, abs=0.001)
    assert K.anderson_pvalue_case3(0.631, n) == pytest.approx(0.10, abs=0.005)


def test_normality_shapiro_subsample(rng):
    x = rng.standard_t(6, size=SHAPIRO_MAX + 3000)
    row = _by_test(normality(x, "shapiro", rng=7))["shapiro"]
    # the documented subsample: rng.choice on the sorted values
    sub = np.sort(x)[np.random.default_rng(7).choice(x.size, SHAPIRO_MAX, replace=False)]
    ref = stats.shapiro(sub)
    assert row.n_used == SHAPIRO_MAX
    assert row.statistic == pytest.approx(ref.statistic, rel=1e-12)
    assert "subsample" in row.note
    # seeded: the same rng gives the same row
    again = _by_test(normality(x, "shapiro", rng=7))["shapiro"]
    assert again.statistic == row.statistic


def test_normality_large_n_float32_matches_scipy(rng):
    # the float32 path sorts in float32 first; the statistics must still be scipy's
    x = rng.laplace(size=60_000).astype(np.float32)
    x64 = x.astype(np.float64)
    rows = _by_test(normality(x, ("anderson", "cramervonmises", "ks", "dagostino")))
    mean, sd = x64.mean(), x64.std(ddof=1)
    assert rows["anderson"].statistic == pytest.approx(
        stats.anderson(x64, "norm", method="interpolate").statistic, rel=1e-8
    )
    assert rows["cramervonmises"].statistic == pytest.approx(
        stats.cramervonmises(x64, "norm", args=(mean, sd)).statistic, rel=1e-8
    )
    assert rows["ks"].statistic == pytest.approx(
        stats.kstest(x64, "norm", args=(mean, sd)).statistic, rel=1e-9
    )
    assert rows["dagostino"].statistic == pytest.approx(stats.normaltest(x64).statistic, rel=1e-8)


def test_normality_gaussian_pvalues_are_calibrated():
    # known truth: under H0 the level-5 % rejection rate of each valid test is near 5 %
    gen = np.random.default_rng(11)
    reject = {t: 0 for t in TESTS}
    reps = 300
    for _ in range(reps):
        rows = _by_test(normality(gen.normal(size=200), rng=gen))
        for t in TESTS:
            reject[t] += rows[t].pvalue < 0.05
    for t in ("shapiro", "dagostino", "anderson", "lilliefors", "cramervonmises"):
        assert 0.02 <= reject[t] / reps <= 0.09, (t, reject[t])
    # the known-parameter KS p-value is anti-conservative: it almost never rejects
    assert reject["ks"] / reps < 0.01


def test_normality_rejects_heavy_tails(rng):
    rows = _by_test(normality(rng.standard_t(3, size=3000), rng=0))
    for t in ("shapiro", "dagostino", "jarque_bera", "anderson", "lilliefors", "cramervonmises"):
        assert rows[t].pvalue < 1e-3, t


def test_normality_too_few_values_gives_nan_rows():
    table = normality([0.1, 0.5, 0.2, 0.9, 0.3])
    assert list(table.columns) == ["test", "statistic", "pvalue", "n_used", "note"]
    rows = _by_test(table)
    for t in ("dagostino", "anderson", "cramervonmises"):
        assert math.isnan(rows[t].statistic) and math.isnan(rows[t].pvalue)
        assert "at least 8" in rows[t].note
    assert np.isfinite(rows["shapiro"].statistic)
    one = normality([1.5])
    assert one["statistic"].isna().all() and (one["n_used"] == 1).all()


def test_normality_constant_gives_nan_rows():
    with pytest.warns(DegenerateDataWarning):
        table = normality(np.full(50, 2.0))
    assert table["statistic"].isna().all()
    assert table["note"].str.contains("constant").all()


def test_normality_iv():
    with pytest.raises(InputDataError, match="`tests` has unknown"):
        normality([1.0, 2.0, 3.0], tests=["shapiro", "nope"])
    with pytest.raises(InputDataError, match="`tests` is empty"):
        normality([1.0, 2.0, 3.0], tests=[])
    with pytest.raises(InputDataError, match="`x` is empty"):
        normality([])
    with pytest.raises(InputDataError, match="non-finite"):
        normality([1.0, np.nan, 2.0])
    table = normality([1.0, np.nan, 2.0, 4.0, 3.5], "shapiro", nan_policy="omit")
    assert table["n_used"].iloc[0] == 4
    with pytest.raises(InputDataError, match="`confidence`"):
        effect_sizes([1.0, 2.0, 3.0], confidence=1.5)


def test_normality_accepts_torch_int_and_float16(rng):
    torch = pytest.importorskip("torch")
    x = rng.normal(size=300)
    ref = normality(x, "anderson")["statistic"].iloc[0]
    got = normality(torch.from_numpy(x), "anderson")["statistic"].iloc[0]
    assert got == pytest.approx(ref, rel=1e-12)
    x16 = x.astype(np.float16)
    got16 = normality(x16, "anderson")["statistic"].iloc[0]
    ref16 = stats.anderson(x16.astype(np.float64), "norm", method="interpolate").statistic
    assert got16 == pytest.approx(ref16, rel=1e-9)
    ints = rng.integers(-50, 50, size=300)
    assert np.isfinite(normality(ints, "ks")["statistic"].iloc[0])


def test_normality_does_not_modify_input(rng):
    x = rng.normal(size=500).astype(np.float32)
    before = x.copy()
    normality_with_effects(x)
    np.testing.assert_array_equal(x, before)


# --------------------------------------------------------------------------- effect sizes


def test_effect_sizes_against_scipy_skew_kurtosis(rng):
    x = rng.gamma(3.0, size=2000)
    e = effect_sizes(x)
    n = x.size
    # bias-corrected, as scipy.stats.skew/kurtosis(bias=False)
    assert e.skewness == pytest.approx(stats.skew(x, bias=False), rel=1e-10)
    assert e.excess_kurtosis == pytest.approx(stats.kurtosis(x, bias=False), rel=1e-10)
    se_s = math.sqrt(6 * n * (n - 1) / ((n - 2) * (n + 1) * (n + 3)))
    se_k = 2 * se_s * math.sqrt((n * n - 1) / ((n - 3) * (n + 5)))
    assert e.skewness_se == pytest.approx(se_s)
    assert e.excess_kurtosis_se == pytest.approx(se_k)
    assert e.skewness_ci_low == pytest.approx(e.skewness - 1.959963984540054 * se_s)
    assert e.excess_kurtosis_ci_high == pytest.approx(e.excess_kurtosis + 1.959963984540054 * se_k)
    assert e.mean == pytest.approx(x.mean()) and e.sd == pytest.approx(x.std(ddof=1))


def test_effect_sizes_against_direct_computations(rng):
    x = rng.standard_t(4, size=5000) * 3.0 + 1.0
    e = effect_sizes(x)
    z = (x - x.mean()) / x.std(ddof=1)
    assert e.tail_mass_ratio == pytest.approx(np.mean(np.abs(z) > 3) / (2 * stats.norm.sf(3)))
    probs = np.linspace(0.005, 0.995, 1001)
    qq = np.max(np.abs(np.quantile(z, probs) - stats.norm.ppf(probs)))
    assert e.max_qq_deviation == pytest.approx(qq, rel=1e-10)
    q05, q50, q95 = np.quantile(x, [0.05, 0.5, 0.95])
    assert e.quantile_skewness == pytest.approx((q95 + q05 - 2 * q50) / (q95 - q05), rel=1e-10)


@pytest.mark.parametrize("kind", ["normal", "t5", "uniform", "lognormal"])
def test_effect_sizes_wasserstein_against_scipy(rng, kind):
    x = _samples(rng)[kind]
    z = (x - x.mean()) / x.std(ddof=1)
    m = 400_000
    grid = stats.norm.ppf((np.arange(m) + 0.5) / m)  # N(0,1) quantile grid
    ref = stats.wasserstein_distance(z, grid)
    assert effect_sizes(x).wasserstein1 == pytest.approx(ref, rel=2e-4, abs=2e-5)


def test_wasserstein_exact_on_tiny_sample():
    # against adaptive quadrature of |F_n - Phi| between the jumps of F_n
    from scipy.integrate import quad

    z = np.array([-1.3, -0.2, 0.1, 1.7])
    prep = K.prepare(np.sort(z * 2.0 + 5.0))  # standardised inside
    zz = prep.z
    edges = np.r_[-40.0, zz, 40.0]
    ref = 0.0
    for i in range(edges.size - 1):
        level = i / zz.size
        ref += quad(
            lambda t, lv=level: abs(lv - stats.norm.cdf(t)),
            edges[i],
            edges[i + 1],
            epsabs=1e-13,
            epsrel=1e-12,
            limit=200,
        )[0]
    assert K.wasserstein1_to_normal(prep) == pytest.approx(ref, rel=1e-9)


def test_effect_sizes_known_truth():
    gen = np.random.default_rng(5)
    g = effect_sizes(gen.normal(size=200_000))
    assert abs(g.skewness) < 0.02 and abs(g.excess_kurtosis) < 0.05
    assert g.skewness_ci_low < 0 < g.skewness_ci_high
    assert g.wasserstein1 < 0.01 and 0.9 < g.tail_mass_ratio < 1.1 and g.max_qq_deviation < 0.05
    lap = effect_sizes(gen.laplace(size=200_000))
    assert lap.excess_kurtosis == pytest.approx(3.0, abs=0.3)
    # Laplace: P(|x| > 3 sqrt(2) b) = exp(-3 sqrt 2) = 0.01437 -> ratio 5.32
    assert lap.tail_mass_ratio == pytest.approx(math.exp(-3 * math.sqrt(2)) / 0.0026998, rel=0.05)
    uni = effect_sizes(gen.uniform(size=200_000))
    assert uni.excess_kurtosis == pytest.approx(-1.2, abs=0.02) and uni.tail_mass_ratio == 0.0


def test_effect_sizes_repr_and_to_dict(rng):
    e = effect_sizes(rng.normal(size=100))
    assert isinstance(e, EffectSizes)
    text = repr(e)
    assert text.startswith("EffectSizes(n=100, skewness=") and "wasserstein1=" in text
    d = e.to_dict()
    assert d["n"] == 100 and set(d) >= {"skewness", "excess_kurtosis", "tail_mass_ratio"}
    with pytest.raises(AttributeError):
        e.n = 5  # frozen


def test_effect_sizes_degenerate():
    with pytest.warns(DegenerateDataWarning):
        e = effect_sizes(np.ones(10))
    assert e.sd == 0.0 and math.isnan(e.skewness) and math.isnan(e.wasserstein1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tiny = effect_sizes([1.0, 2.0, 4.0])
    assert np.isfinite(tiny.skewness) and math.isnan(tiny.excess_kurtosis)


def test_normality_with_effects_equals_separate_calls(rng):
    x = rng.logistic(size=7000)
    table, eff = normality_with_effects(x, rng=3)
    pd.testing.assert_frame_equal(table, normality(x, rng=3))
    assert eff == effect_sizes(x)


# --------------------------------------------------------------------------- blocked kernels


def _w1_per_gap(z: np.ndarray) -> float:
    """Reference W1 to N(0, 1): the exact integral over every gap of the sorted sample.

    On ``[z_i, z_{i+1}]`` the empirical CDF is ``i/n`` and ``int Phi = G(t) = t Phi + phi``; a gap
    where ``i/n - Phi`` changes sign is split at ``Phi^{-1}(i/n)``.
    """
    n = z.size

    def g(t):
        return t * stats.norm.cdf(t) + stats.norm.pdf(t)

    level = np.arange(1, n) / n
    lo, hi = z[:-1], z[1:]
    whole = level * (hi - lo) - (g(hi) - g(lo))
    cross = (level > stats.norm.cdf(lo)) & (level < stats.norm.cdf(hi))
    t = np.clip(stats.norm.ppf(level), lo, hi)
    split = np.abs(level * (t - lo) - (g(t) - g(lo))) + np.abs(level * (hi - t) - (g(hi) - g(t)))
    inner = np.where(cross, split, np.abs(whole)).sum()
    return float(inner + g(z[0]) + (stats.norm.pdf(z[-1]) - z[-1] * stats.norm.sf(z[-1])))


@pytest.mark.parametrize("block", [7, 64, 1 << 16])
@pytest.mark.parametrize("kind", ["normal", "ties", "skewed"])
def test_blocked_scan_against_scipy(rng, monkeypatch, block, kind):
    # small blocks put block edges everywhere, including at the split between z < 0 and z >= 0
    monkeypatch.setattr(K, "BLOCK", block)
    if kind == "normal":
        x = rng.normal(size=1501)
    elif kind == "ties":  # float32 values on a coarse grid: many exact ties
        x = np.round(rng.laplace(size=2000), 2).astype(np.float32).astype(np.float64)
    else:
        x = rng.lognormal(0.0, 0.8, size=1200)
    mean, sd = x.mean(), x.std(ddof=1)
    prep = K.prepare(np.sort(x))
    a2 = stats.anderson(x, dist="norm", method="interpolate").statistic
    assert K.anderson_statistic(prep) == pytest.approx(a2, rel=1e-10)
    ks = stats.kstest(x, "norm", args=(mean, sd)).statistic
    assert K.ks_statistic(prep) == pytest.approx(ks, rel=1e-12)
    cvm = stats.cramervonmises(x, "norm", args=(mean, sd)).statistic
    assert K.cramervonmises_statistic(prep) == pytest.approx(cvm, rel=1e-10)
    assert K.wasserstein1_to_normal(prep) == pytest.approx(_w1_per_gap(prep.z), rel=1e-10)


def test_anderson_far_tails_against_scipy(rng):
    # values beyond |z| = 40, where Phi(-|z|) underflows to 0: the log tail stays exact
    x = np.concatenate([rng.normal(size=3000), [-1e3, 2e3, 5e3]])
    z = np.sort((x - x.mean()) / x.std(ddof=1))
    assert z[-1] > 40
    a2 = stats.anderson(x, dist="norm", method="interpolate").statistic
    assert np.isfinite(a2)
    row = _by_test(normality(x, "anderson"))["anderson"]
    assert row.statistic == pytest.approx(a2, rel=1e-10)


def test_battery_large_n_against_scipy():
    # 2 x 10^5 values (several blocks of 2^16): every statistic still scipy's
    x = np.random.default_rng(3).standard_t(5, size=200_000).astype(np.float32)
    x64 = x.astype(np.float64)
    mean, sd = x64.mean(), x64.std(ddof=1)
    rows = _by_test(normality(x, ("anderson", "cramervonmises", "ks"), rng=0))
    a2 = stats.anderson(x64, dist="norm", method="interpolate").statistic
    # the sums behind A2 are of order n^2: scipy's own rounding is about 1e-16 n absolute
    assert rows["anderson"].statistic == pytest.approx(a2, rel=1e-9)
    cvm = stats.cramervonmises(x64, "norm", args=(mean, sd)).statistic
    assert rows["cramervonmises"].statistic == pytest.approx(cvm, rel=1e-9)
    ks = stats.kstest(x64, "norm", args=(mean, sd)).statistic
    assert rows["ks"].statistic == pytest.approx(ks, rel=1e-10)
    prep = K.prepare(np.sort(x64))
    assert K.wasserstein1_to_normal(prep) == pytest.approx(_w1_per_gap(prep.z), rel=1e-9)


def test_scan_caches_and_parts_agree(rng):
    x = np.sort(rng.standard_t(4, size=5000))
    whole = K.prepare(x.copy())
    K.scan(whole)
    parts = K.prepare(x.copy())
    K.scan(parts, anderson=True, gap=False)
    assert "gap_sums" not in parts.cache
    K.scan(parts, anderson=False, gap=True)
    assert K.anderson_statistic(whole) == K.anderson_statistic(parts)
    assert K.ks_statistic(whole) == K.ks_statistic(parts)
    assert K.wasserstein1_to_normal(whole) == K.wasserstein1_to_normal(parts)
    # prepare leaves its input alone unless told to overwrite it
    before = x.copy()
    K.prepare(x)
    np.testing.assert_array_equal(x, before)
    K.prepare(x, overwrite_input=True)
    assert not np.array_equal(x, before)


@pytest.mark.parametrize("d", [0.009, 0.02, 0.05])
def test_ks_pvalue_known_against_scipy_kstwo(d):
    # the log-space Birnbaum-Tingey sum used for large n against scipy's double-double sum
    n = 30_000
    assert K.ks_pvalue_known(d, n) == pytest.approx(stats.kstwo.sf(d, n), rel=1e-9)
    # outside the slow range scipy itself is called
    assert K.ks_pvalue_known(0.3, 50) == stats.kstwo.sf(0.3, 50)
    assert K.ks_pvalue_known(0.001, n) == stats.kstwo.sf(0.001, n)
    for n_far, d_far in [(2000, 0.45), (30_000, 0.12), (10**6, 0.05)]:  # n d^2 >= 370: exactly 0
        assert K.ks_pvalue_known(d_far, n_far) == stats.kstwo.sf(d_far, n_far) == 0.0


@pytest.mark.parametrize("n", [2, 3, 5, 9])
def test_blocked_scan_tiny_samples(rng, monkeypatch, n):
    # blocks of 2 values: every block edge case (single-value last block, split on an edge)
    monkeypatch.setattr(K, "BLOCK", 2)
    x = rng.normal(size=n)
    prep = K.prepare(np.sort(x))
    mean, sd = x.mean(), x.std(ddof=1)
    assert K.ks_statistic(prep) == pytest.approx(
        stats.kstest(x, "norm", args=(mean, sd)).statistic, rel=1e-12
    )
    assert K.cramervonmises_statistic(prep) == pytest.approx(
        stats.cramervonmises(x, "norm", args=(mean, sd)).statistic, rel=1e-10
    )
    assert K.wasserstein1_to_normal(prep) == pytest.approx(_w1_per_gap(prep.z), rel=1e-10)
    if n >= 3:  # scipy.stats.anderson needs a few values
        a2 = stats.anderson(x, dist="norm", method="interpolate").statistic
        assert K.anderson_statistic(prep) == pytest.approx(a2, rel=1e-10)
