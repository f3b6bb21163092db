"""Likelihood-ratio and Vuong tests, and held-out log-likelihood."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from weightstats.errors import InputDataError
from weightstats.stats.compare import ComparisonResult, compare_fits, heldout_loglik
from weightstats.stats.fit import FitResult, fit


@pytest.fixture
def t4(rng):
    return 0.05 * rng.standard_t(4, 5000)


def test_vuong_t_beats_normal_on_t_data(t4):
    a, b = fit(t4, "t"), fit(t4, "normal")
    r = compare_fits(t4, a, b, nested=False)
    assert isinstance(r, ComparisonResult) and r.method == "vuong"
    assert r.preferred == "t" and r.statistic > 3 and r.pvalue < 1e-3
    # Reference: Vuong's z by hand from scipy's pointwise logpdfs, with the BIC correction.
    m = stats.t.logpdf(t4, *a.params.values()) - stats.norm.logpdf(t4, *b.params.values())
    z = (m.sum() - 0.5 * (3 - 2) * math.log(t4.size)) / (math.sqrt(t4.size) * m.std())
    assert r.statistic == pytest.approx(z, rel=1e-9)
    assert r.pvalue == pytest.approx(2 * stats.norm.sf(abs(z)), rel=1e-9)
    swapped = compare_fits(t4, b, a, nested=False)
    assert swapped.statistic == pytest.approx(-z, rel=1e-9) and swapped.preferred == "t"
    plain = compare_fits(t4, a, b, nested=False, correction="none")
    assert plain.statistic == pytest.approx(m.sum() / (math.sqrt(t4.size) * m.std()), rel=1e-9)


def test_vuong_laplace_vs_logistic_on_laplace_data(rng):
    # Two non-nested two-parameter models; the true one should not lose.
    x = rng.laplace(0, 1, 400)
    r = compare_fits(x, fit(x, "laplace"), fit(x, "logistic"), nested=False)
    assert math.isfinite(r.statistic) and 0 < r.pvalue <= 1
    assert r.statistic > 0 and r.preferred in {"laplace", None}


def test_lr_normal_in_gennorm_chi2(rng):
    x = rng.normal(0, 1, 3000)
    restricted, full = fit(x, "normal"), fit(x, "gennorm")
    r = compare_fits(x, restricted, full, nested=True)
    stat = 2 * (full.loglik - restricted.loglik)
    assert r.method == "likelihood-ratio" and r.null_distribution == "chi2(1)"
    assert r.statistic == pytest.approx(stat, rel=1e-12)
    assert r.pvalue == pytest.approx(stats.chi2.sf(stat, 1), rel=1e-12)
    assert r.loglik_ratio == pytest.approx(restricted.loglik - full.loglik)
    assert r.pvalue > 0.01 and r.preferred == "normal"  # the data are normal


def test_lr_normal_in_t_boundary_mixture(t4):
    restricted, full = fit(t4, "normal"), fit(t4, "t")
    r = compare_fits(t4, full, restricted, nested=True)
    stat = 2 * (full.loglik - restricted.loglik)
    assert r.statistic == pytest.approx(stat, rel=1e-12)
    # Self & Liang: 0.5 chi2(0) + 0.5 chi2(1) => p = 0.5 * chi2(1).sf(stat) for stat > 0.
    assert r.pvalue == pytest.approx(0.5 * stats.chi2.sf(stat, 1), rel=1e-12, abs=1e-300)
    assert r.preferred == "t"


def test_lr_boundary_pvalue_small_statistic(rng):
    x = rng.normal(0, 1, 200)
    r = compare_fits(x, fit(x, "normal"), fit(x, "t"), nested=True)
    stat = r.statistic
    expected = 1.0 if stat == 0 else 0.5 * stats.chi2.sf(stat, 1)
    assert r.pvalue == pytest.approx(expected)


def test_compare_fits_iv(t4):
    a, b, c = fit(t4, "t"), fit(t4, "normal"), fit(t4, "logistic")
    with pytest.raises(InputDataError, match="not a nested pair"):
        compare_fits(t4, c, b, nested=True)
    with pytest.raises(InputDataError, match="`nested` must be True or False"):
        compare_fits(t4, a, b, nested="yes")
    with pytest.raises(InputDataError, match="both 't' fits"):
        compare_fits(t4, a, a, nested=False)
    with pytest.raises(InputDataError, match="pass the sample the fits were made on"):
        compare_fits(t4[:100], a, b, nested=False)
    with pytest.raises(InputDataError, match="correction"):
        compare_fits(t4, a, b, nested=False, correction="hq")
    with pytest.raises(InputDataError, match="FitResult"):
        compare_fits(t4, a, {"family": "normal"}, nested=False)


def test_vuong_zero_density_value(rng):
    # A (hand-made) uniform fit that excludes some observed values has zero density there, so
    # the other model wins outright and the normal approximation is not used.
    x = rng.normal(0, 1, 300)
    n = fit(x, "normal")
    narrow = FitResult("uniform", {"loc": -1.0, "scale": 2.0}, -300 * math.log(2.0), 300,
                       0.0, 0.0, True, "hand-made")
    r = compare_fits(x, narrow, n, nested=False)
    assert r.statistic == -math.inf and r.pvalue == 0.0 and r.preferred == "normal"
    assert "not applicable" in r.null_distribution


def test_heldout_loglik(t4):
    frame = heldout_loglik(t4, ["normal", "t", "laplace"], rng=1)
    assert list(frame.columns) == ["family", "n_params", "n_train", "n_test", "train_loglik",
                                   "test_loglik", "test_loglik_per_value", "delta_test_loglik"]
    assert frame["family"].iloc[0] == "t" and frame["family"].iloc[-1] == "normal"
    assert (frame["n_train"] + frame["n_test"] == t4.size).all()
    assert frame["n_test"].iloc[0] == 2500
    assert frame["delta_test_loglik"].iloc[0] == 0.0
    again = heldout_loglik(t4, ["normal", "t", "laplace"], rng=1)
    assert again.equals(frame)
    # The held-out score is the fitted density on the held-out part (scipy reference).
    row = frame.set_index("family").loc["normal"]
    assert row["test_loglik_per_value"] == pytest.approx(row["test_loglik"] / row["n_test"])


def test_heldout_loglik_iv(t4):
    with pytest.raises(InputDataError, match="test_fraction"):
        heldout_loglik(t4, ["normal"], test_fraction=1.5)
    with pytest.raises(InputDataError, match="at least 16"):
        heldout_loglik(t4[:10], ["normal"])
    with pytest.raises(InputDataError, match="`family` must be one of"):
        heldout_loglik(t4, ["cauchy"])


def test_vuong_and_heldout_accept_the_mixture(t4):
    x = t4[:2000]
    a, g = fit(x, "t"), fit(x, "gmm", rng=0)
    r = compare_fits(x, a, g, nested=False)
    # Reference: z by hand from the two fits' pointwise log-densities, BIC-corrected.
    m = a.logpdf(x) - g.logpdf(x)
    z = (m.sum() - 0.5 * (3 - g.n_params) * math.log(x.size)) / (math.sqrt(x.size) * m.std())
    assert r.statistic == pytest.approx(z, rel=1e-9)
    frame = heldout_loglik(x, ["normal", "gmm"], rng=0)
    assert set(frame["family"]) == {"normal", "gmm"}
    assert frame.set_index("family").loc["gmm", "test_loglik"] > frame.set_index(
        "family").loc["normal", "test_loglik"]
