"""Per-family exact maximum likelihood, against scipy.stats and against known truth."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from weightstats.stats._fit_t import _grad_hess, t_loglik
from weightstats.stats.families import FAMILIES, FAMILY_NAMES


def _datasets(rng):
    return {
        "t5": 0.02 * rng.standard_t(5, 2000) + 1e-3,
        "normal": rng.normal(0.5, 2.0, 2000),
        "laplace": rng.laplace(-1.0, 0.3, 2000),
        "logistic": rng.logistic(0.0, 1.5, 2000),
    }


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_family_fit_against_scipy(family, rng):
    fam = FAMILIES[family]
    dist = getattr(stats, fam.scipy_name)
    for label, x in _datasets(rng).items():
        ours = fam.fit(x)
        theta = [ours.params[p] for p in fam.param_names]
        # The reported log-likelihood is scipy's log-likelihood at the reported parameters.
        ref_at_ours = dist.logpdf(x, *theta).sum()
        assert ours.loglik == pytest.approx(ref_at_ours, rel=1e-9, abs=1e-6), label
        # Reference: scipy.stats.<dist>.fit(x) (generic optimiser or scipy's own closed form);
        # the engine's maximum is at least as high, to 1e-6 per value.
        ref = dist.logpdf(x, *dist.fit(x)).sum()
        assert ours.loglik >= ref - 1e-6 * x.size, (label, ours.loglik, ref)
        assert ours.converged, label


def test_closed_forms_against_scipy(rng):
    x = rng.normal(0, 1, 1001)
    # scipy.stats.norm.fit: mean and biased sd; laplace.fit: median and mean |x - median|;
    # uniform.fit: min and range. All closed forms in scipy too.
    for name in ("normal", "laplace", "uniform"):
        fam = FAMILIES[name]
        ours = fam.fit(x).params
        ref = getattr(stats, fam.scipy_name).fit(x)
        np.testing.assert_allclose([ours["loc"], ours["scale"]], ref, rtol=1e-12, err_msg=name)


@pytest.mark.parametrize(
    ("family", "truth", "draw", "rtol"),
    [
        ("t", {"df": 4.0, "loc": 0.1, "scale": 0.05},
         lambda g, n: 0.1 + 0.05 * g.standard_t(4.0, n), 0.10),
        ("gennorm", {"beta": 1.5, "loc": -0.2, "scale": 2.0},
         lambda g, n: stats.gennorm.rvs(1.5, -0.2, 2.0, size=n, random_state=g), 0.03),
        ("logistic", {"loc": 3.0, "scale": 0.5},
         lambda g, n: g.logistic(3.0, 0.5, n), 0.02),
        ("laplace", {"loc": 0.0, "scale": 1.0}, lambda g, n: g.laplace(0.0, 1.0, n), 0.02),
        ("uniform", {"loc": -0.1, "scale": 0.2}, lambda g, n: g.uniform(-0.1, 0.1, n), 0.001),
        ("normal", {"loc": 1.0, "scale": 3.0}, lambda g, n: g.normal(1.0, 3.0, n), 0.02),
    ],
)
def test_family_fit_recovers_params(family, truth, draw, rtol, rng):
    # Known truth at n = 10^5: shapes within `rtol` (t's df within 10%), scale likewise, and
    # loc within rtol * scale.
    x = draw(rng, 100_000)
    est = FAMILIES[family].fit(x).params
    scale = truth["scale"]
    for key, value in truth.items():
        if key == "loc":
            assert abs(est[key] - value) <= rtol * scale, (key, est[key])
        else:
            assert est[key] == pytest.approx(value, rel=rtol), (key, est[key])


def test_t_gradient_and_hessian_match_finite_differences(rng):
    x = 0.3 * rng.standard_t(3.0, 500) + 0.05
    df, loc, scale = 3.3, 0.04, 0.31
    g, h = _grad_hess(x, df, loc, scale)

    def ll(theta):
        return t_loglik(x, theta[2], theta[0], math.exp(theta[1]))

    theta = np.array([loc, math.log(scale), df])
    eps = 1e-6
    num_g = np.empty(3)
    num_h = np.empty((3, 3))
    for i in range(3):
        e = np.zeros(3)
        e[i] = eps
        num_g[i] = (ll(theta + e) - ll(theta - e)) / (2 * eps)
        gp = _grad_hess(x, *(theta + e)[[2, 0]], math.exp((theta + e)[1]))[0]
        gm = _grad_hess(x, *(theta - e)[[2, 0]], math.exp((theta - e)[1]))[0]
        num_h[:, i] = (gp - gm) / (2 * eps)
    np.testing.assert_allclose(g, num_g, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(h, num_h, rtol=1e-4, atol=1e-4)


def test_t_on_normal_data_hits_df_bound(rng):
    out = FAMILIES["t"].fit(rng.normal(0, 1, 3000))
    assert out.params["df"] > 50
    assert "upper bound" in out.message or out.params["df"] < 1e6


def test_gennorm_on_uniform_data_says_so(rng):
    out = FAMILIES["gennorm"].fit(rng.uniform(-1, 1, 2000))
    assert out.params["beta"] > 20
    assert "uniform-like" in out.message or out.params["beta"] > 100


def test_family_fits_float32_rounded_data(rng):
    # Weights stored as float32 (many ties after rounding) still give finite, converged fits.
    x = (0.02 * rng.standard_t(5, 5000)).astype(np.float32).astype(np.float64)
    for fam in FAMILIES.values():
        out = fam.fit(x)
        assert math.isfinite(out.loglik) and out.converged, fam.name


def test_gennorm_newton_and_profile_paths_agree(rng):
    # The joint Newton on (loc, log beta) and the coordinate-ascent profile root are two routes
    # to the same maximum; both must land on it.
    from weightstats.stats import _fit_gennorm as g

    x = stats.gennorm.rvs(1.6, 0.3, 2.0, size=5000, random_state=rng)
    center = float(np.median(x))
    spread = float(np.max(np.abs(x - center)))
    z = (x - center) / spread
    beta_n, mu_n, ok, _ = g._newton(z, 2.0, float(np.median(z)))
    assert ok
    prof = g._Profile(z)
    beta_p = 2.0
    for _ in range(6):
        prof.fixed_mu = prof.optimal_loc(beta_p)
        beta_p, _ = g._profile_root(prof, beta_p)
    assert beta_p == pytest.approx(beta_n, rel=1e-6)
    assert prof.optimal_loc(beta_p) == pytest.approx(mu_n, abs=1e-7)
    ll_n = g._profile_ll(z, beta_n, mu_n)
    ll_p = g._profile_ll(z, beta_p, prof.optimal_loc(beta_p))
    assert ll_n == pytest.approx(ll_p, abs=1e-7)


def test_gennorm_near_laplace_against_scipy(rng):
    # beta close to 1, where the profile is rough in loc (Newton's hardest case).
    x = stats.gennorm.rvs(1.02, size=20_000, random_state=rng)
    ours = FAMILIES["gennorm"].fit(x)
    # Reference: scipy.stats.gennorm.fit (generic Nelder-Mead from scipy's start).
    ref = stats.gennorm.logpdf(x, *stats.gennorm.fit(x)).sum()
    assert ours.loglik >= ref - 1e-6 * x.size


def test_t_large_sample_ends_at_full_data_stationary_point(rng):
    # Above 80,000 values the start comes from a subsample; the answer must still be the
    # maximum on the full sample: the score there is ~0 (sums over 10^5 values).
    x = 0.03 * rng.standard_t(3.5, 100_000)
    p = FAMILIES["t"].fit(x).params
    g, h = _grad_hess(x, p["df"], p["loc"], p["scale"])
    scaled = g * np.array([p["scale"], 1.0, p["df"]])
    assert np.all(np.abs(scaled) < 1e-4), scaled
    assert np.all(np.linalg.eigvalsh(h) < 0)  # a maximum, not a saddle


def test_normal_fit_exact_when_mean_dwarfs_spread(rng):
    # The one-pass variance would cancel catastrophically here; the fitter must fall back to the
    # centred form. Reference: numpy's two-pass mean/std (what scipy.stats.norm.fit returns).
    from scipy import stats

    from weightstats.stats.fit import fit

    x = 1e6 + rng.normal(0.0, 1e-3, size=10_000)
    res = fit(x, "normal")
    loc, scale = stats.norm.fit(x)
    assert res.params["loc"] == pytest.approx(loc, rel=1e-15)
    assert res.params["scale"] == pytest.approx(scale, rel=1e-9)
