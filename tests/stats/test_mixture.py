"""Gaussian mixture by EM: against scikit-learn, known truth, determinism, warnings, edge cases."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import integrate, stats

from weightstats.errors import ConvergenceWarning, InputDataError
from weightstats.stats.mixture import (
    GaussianMixtureDist,
    MixtureFit,
    fit_gaussian_mixture,
    select_gaussian_mixture,
)


def _two_components(rng, n):
    n1 = int(0.3 * n)
    return np.concatenate([rng.normal(-2.0, 0.5, n1), rng.normal(1.0, 1.0, n - n1)])


def _reference_loglik(x, fit):
    # Independent reference: scipy.stats.norm.logpdf per component, combined by logsumexp.
    comps = [np.log(w) + stats.norm.logpdf(x, m, s)
             for w, m, s in zip(fit.weights, fit.means, fit.sds)]
    from scipy.special import logsumexp
    return float(logsumexp(np.vstack(comps), axis=0).sum())


def test_fit_gaussian_mixture_against_sklearn(rng):
    sklearn_mixture = pytest.importorskip("sklearn.mixture")
    x = _two_components(rng, 4000)
    ours = fit_gaussian_mixture(x, 2, rng=0)
    # Reference: sklearn GaussianMixture with a tight tolerance and three starts;
    # its total log-likelihood is score(X) * n.
    gm = sklearn_mixture.GaussianMixture(2, tol=1e-9, n_init=3, max_iter=2000,
                                         reg_covar=0.0, random_state=0).fit(x[:, None])
    ll_sklearn = gm.score(x[:, None]) * x.size
    assert ours.loglik >= ll_sklearn - 1e-6 * x.size
    np.testing.assert_allclose(ours.means, np.sort(gm.means_.ravel()), atol=1e-3)
    # The reported log-likelihood is exactly that of the reported parameters.
    assert ours.loglik == pytest.approx(_reference_loglik(x, ours), rel=1e-10)
    assert ours.loglik == pytest.approx(ours.logpdf(x).sum(), rel=1e-10)


def test_fit_gaussian_mixture_information_criteria(rng):
    x = _two_components(rng, 600)
    f = fit_gaussian_mixture(x, 2, rng=1)
    p = 3 * 2 - 1
    assert f.n_params == p and f.k == 2 and f.n == 600
    assert f.aic == pytest.approx(-2 * f.loglik + 2 * p)
    assert f.bic == pytest.approx(-2 * f.loglik + p * np.log(600))
    assert f.weights.sum() == pytest.approx(1.0)
    assert np.all(np.diff(f.means) > 0)


def test_fit_gaussian_mixture_recovers_params(rng):
    # n = 30000 > the 20000-value screening subsample, so the screened path is exercised.
    x = _two_components(rng, 30_000)
    f = fit_gaussian_mixture(x, 2, rng=3)
    assert f.converged
    np.testing.assert_allclose(f.weights, [0.3, 0.7], atol=0.01)
    np.testing.assert_allclose(f.means, [-2.0, 1.0], atol=0.03)
    np.testing.assert_allclose(f.sds, [0.5, 1.0], atol=0.03)


def test_fit_gaussian_mixture_k1_is_normal_mle(rng):
    x = rng.normal(3.0, 2.0, 500)
    f = fit_gaussian_mixture(x, 1)
    # Reference: scipy.stats.norm.fit gives the closed-form MLE (mean, biased sd).
    loc, scale = stats.norm.fit(x)
    assert f.means[0] == pytest.approx(loc) and f.sds[0] == pytest.approx(scale)
    assert f.loglik == pytest.approx(stats.norm.logpdf(x, loc, scale).sum(), rel=1e-12)


def test_fit_gaussian_mixture_deterministic_for_seed(rng):
    x = _two_components(rng, 25_000)
    a = fit_gaussian_mixture(x, 3, rng=7)
    b = fit_gaussian_mixture(x, 3, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(a.means, b.means)
    np.testing.assert_array_equal(a.sds, b.sds)
    assert a.loglik == b.loglik


def test_fit_gaussian_mixture_warns_when_not_converged(rng):
    x = _two_components(rng, 2000)
    with pytest.warns(ConvergenceWarning, match="max_iter=2"):
        f = fit_gaussian_mixture(x, 3, rng=0, max_iter=2)
    assert not f.converged and f.n_iter == 2
    assert np.isfinite(f.loglik)


def test_fit_gaussian_mixture_variance_floor(rng):
    # A spike of identical values would let an unguarded component collapse (loglik -> inf).
    x = np.concatenate([np.zeros(300), rng.normal(0, 1, 1000)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        f = fit_gaussian_mixture(x, 2, rng=0)
    assert np.isfinite(f.loglik)
    assert f.sds.min() >= np.sqrt(1e-6) * x.std() * (1 - 1e-9)


def test_select_gaussian_mixture_picks_k_by_bic(rng):
    normal = rng.normal(0, 1, 3000)
    f1 = select_gaussian_mixture(normal, rng=0)
    assert f1.k == 1
    assert set(f1.bic_by_k) == {1, 2, 3, 4}
    assert f1.bic == min(f1.bic_by_k.values())
    f2 = select_gaussian_mixture(_two_components(rng, 3000), k_max=3, rng=0)
    assert f2.k == 2 and set(f2.bic_by_k) == {1, 2, 3}


def test_select_gaussian_mixture_small_sample_limits_k():
    f = select_gaussian_mixture([0.1, 0.5, 0.2, 3.0, 3.1, 2.9, 0.3], rng=0)
    assert set(f.bic_by_k) == {1, 2}


def test_fit_gaussian_mixture_iv():
    with pytest.raises(InputDataError, match="constant"):
        fit_gaussian_mixture(np.ones(50), 2)
    with pytest.raises(InputDataError, match="non-finite"):
        fit_gaussian_mixture([1.0, np.nan, 2.0, 3.0, 4.0, 5.0], 1)
    with pytest.raises(InputDataError, match="at least 6"):
        fit_gaussian_mixture([1.0, 2.0, 3.0], 2)
    with pytest.raises(InputDataError, match="empty"):
        fit_gaussian_mixture([], 1)
    with pytest.raises(InputDataError, match="n_components"):
        fit_gaussian_mixture([1.0, 2.0, 3.0], 0)
    with pytest.raises(InputDataError, match="tol"):
        fit_gaussian_mixture([1.0, 2.0, 3.0], 1, tol=-1)
    with pytest.raises(InputDataError, match="rng"):
        fit_gaussian_mixture([1.0, 2.0, 3.0], 1, rng="seed")
    with pytest.raises(InputDataError, match="k_max"):
        select_gaussian_mixture([1.0, 2.0, 3.0], k_max=0)


def test_fit_gaussian_mixture_nan_omit_float16_int(rng):
    x = _two_components(rng, 900)
    f = fit_gaussian_mixture(np.append(x, np.nan), 2, rng=0, nan_policy="omit")
    assert f.n == 900
    f16 = fit_gaussian_mixture(x.astype(np.float16), 2, rng=0)
    assert f16.n == 900 and np.isfinite(f16.loglik)
    ints = fit_gaussian_mixture(np.round(x * 10).astype(np.int32), 2, rng=0)
    assert ints.n == 900 and np.isfinite(ints.loglik)


def test_gaussian_mixture_dist_methods(rng):
    d = GaussianMixtureDist([0.25, 0.75], [-1.0, 2.0], [0.5, 1.5])
    # pdf integrates to one and cdf is its integral (scipy.integrate.quad as reference).
    assert integrate.quad(d.pdf, -20, 20)[0] == pytest.approx(1.0, abs=1e-8)
    assert d.cdf(0.7) == pytest.approx(integrate.quad(d.pdf, -20, 0.7)[0], abs=1e-8)
    assert d.sf(0.7) == pytest.approx(1 - d.cdf(0.7))
    q = np.array([0.01, 0.3, 0.5, 0.99])
    np.testing.assert_allclose(d.cdf(d.ppf(q)), q, atol=1e-10)
    assert d.mean() == pytest.approx(0.25 * -1 + 0.75 * 2)
    draws = d.rvs(size=200_000, random_state=0)
    assert draws.mean() == pytest.approx(d.mean(), abs=0.02)
    assert draws.var() == pytest.approx(d.var(), rel=0.02)
    np.testing.assert_array_equal(draws[:10], d.rvs(size=200_000, random_state=0)[:10])


def test_mixture_fit_repr_and_to_dict(rng):
    f = fit_gaussian_mixture(_two_components(rng, 500), 2, rng=0)
    text = repr(f)
    assert text.startswith("MixtureFit(k=2, weights=[") and "loglik=" in text
    assert len(text) < 300
    d = f.to_dict()
    assert d["k"] == 2 and len(d["means"]) == 2 and d["bic_by_k"] is None
    assert isinstance(f, MixtureFit)
    with pytest.raises(ValueError):
        f.means[0] = 1.0  # read-only arrays: the frozen result cannot be mutated in place


def test_squarem_reaches_plain_em_optimum_in_fewer_steps(rng):
    from weightstats.stats.mixture import _EM, _VAR_FLOOR, _quantile_start, _standardise

    x = np.concatenate([rng.normal(-1.0, 1.0, 3000), rng.normal(1.5, 0.7, 2000)])
    z, _, _ = _standardise(x)
    em = _EM(z, 2, _VAR_FLOOR)
    plain = em.run(*_quantile_start(z, 2), max_iter=20_000, tol=1e-13)
    fast = em.run_squarem(*_quantile_start(z, 2), max_iter=20_000, tol=1e-13)
    assert plain[4] and fast[4]
    assert fast[3] >= plain[3] - 1e-8 * z.size
    assert fast[5] < plain[5]
    np.testing.assert_allclose(np.sort(fast[1]), np.sort(plain[1]), atol=1e-5)


def test_select_gaussian_mixture_warns_only_for_selected_k(rng):
    x = _two_components(rng, 2000)
    with pytest.warns(ConvergenceWarning, match="selected k="):
        f = select_gaussian_mixture(x, k_max=2, rng=0, max_iter=3)
    assert not f.converged


def test_select_gaussian_mixture_loglik_never_decreases_with_k(rng):
    # Each K is also started from the K - 1 fit split in two, so on heavy-tailed data (long flat
    # likelihood ridges) a larger K cannot end below a smaller one.
    x = 0.02 * rng.standard_t(5, 30_000)
    f = select_gaussian_mixture(x, k_max=4, rng=0)
    n = x.size
    ll = {k: -0.5 * (bic - (3 * k - 1) * np.log(n)) for k, bic in f.bic_by_k.items()}
    for k in range(2, 5):
        assert ll[k] >= ll[k - 1] - 1e-8 * n, (k, ll)
