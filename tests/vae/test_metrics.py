"""Latent-space kernels against closed forms, brute force and calibration on simulated data."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats

from weightstats.errors import InputDataError
from weightstats.vae.metrics import (
    active_units,
    clustering_accuracy,
    covariance_summary,
    gaussian_kl_to_standard,
    knn_kl_divergence,
    log_sphere_area,
    mmd_test,
    rayleigh_test,
    uniform_sphere_sample,
)


def test_clustering_accuracy_against_brute_force(rng):
    for _ in range(5):
        t = rng.integers(0, 4, 60)
        p = rng.integers(0, 4, 60)
        best = max(np.mean(np.array(perm)[p] == t) for perm in itertools.permutations(range(4)))
        assert clustering_accuracy(t, p) == pytest.approx(best)
    assert clustering_accuracy([0, 0, 1, 1], [5, 5, 3, 3]) == 1.0
    # more clusters than classes: the unmatched cluster counts as wrong
    assert clustering_accuracy([0, 0, 1, 1], [0, 1, 2, 2]) == 0.75


def test_mmd_statistic_matches_closed_form_for_gaussians(rng):
    # E k(a, b) for a ~ N(m1, s1^2 I), b ~ N(m2, s2^2 I), k = exp(-|a-b|^2 / (2 h^2)):
    # (h^2 / (h^2 + s1^2 + s2^2))^{d/2} exp(-|m1-m2|^2 / (2 (h^2 + s1^2 + s2^2))).
    d, h, s1, s2 = 2, 1.0, 1.0, 0.7
    m = np.array([0.8, 0.0])

    def ek(mu, sa, sb):
        v = h * h + sa * sa + sb * sb
        return (h * h / v) ** (d / 2) * np.exp(-mu @ mu / (2 * v))

    exact = ek(np.zeros(d), s1, s1) + ek(np.zeros(d), s2, s2) - 2 * ek(m, s1, s2)
    values = [
        mmd_test(rng.normal(0, s1, (300, d)), rng.normal(m, s2, (300, d)), bandwidth=h,
                 n_permutations=0).statistic
        for _ in range(30)
    ]
    se = np.std(values, ddof=1) / np.sqrt(len(values))
    assert abs(np.mean(values) - exact) < 4 * se  # unbiased estimator


def test_mmd_test_calibrated_under_null_and_powerful_under_shift(rng):
    pvalues = [mmd_test(rng.normal(size=(60, 2)), rng.normal(size=(60, 2)), n_permutations=99,
                        rng=rng).pvalue for _ in range(60)]
    # uniform p-values: P(p <= 0.1) ~ 0.1; 60 draws give 6 +- 2.3
    assert np.mean(np.array(pvalues) <= 0.1) < 0.25
    assert stats.kstest(pvalues, "uniform").pvalue > 1e-3
    shifted = mmd_test(rng.normal(size=(100, 2)), rng.normal(0.8, 1.0, (100, 2)), rng=rng)
    assert shifted.pvalue < 0.01 and shifted.statistic > 0


def test_knn_kl_divergence_recovers_gaussian_kl(rng):
    # KL(N(m, s^2 I) || N(0, I)) = d/2 (s^2 + |m|^2/d - 1 - log s^2)
    d, s = 2, 0.6
    m = np.array([0.5, -0.5])
    exact = 0.5 * (d * s * s + m @ m - d - d * np.log(s * s))
    # n = 16,000: the estimator's sd is ~0.016 here (20 seeded repeats), so 0.06 is ~4 sd
    est = knn_kl_divergence(rng.normal(m, s, (16_000, d)), rng.normal(size=(16_000, d)))
    assert est == pytest.approx(exact, abs=0.06)  # exact = 0.632
    assert abs(knn_kl_divergence(rng.normal(size=(16_000, d)), rng.normal(size=(16_000, d)))) < 0.06


def test_gaussian_kl_to_standard_recovers_closed_form(rng):
    cov = np.array([[2.0, 0.5], [0.5, 1.0]])
    m = np.array([1.0, -0.5])
    exact = 0.5 * (np.trace(cov) + m @ m - 2 - np.log(np.linalg.det(cov)))
    z = rng.multivariate_normal(m, cov, size=200_000)
    assert gaussian_kl_to_standard(z) == pytest.approx(exact, rel=0.02)


def test_covariance_summary_against_numpy(rng):
    z = rng.normal(size=(5000, 3)) @ np.array([[1, 0.5, 0], [0, 1, 0], [0, 0, 2.0]])
    s = covariance_summary(z)
    cov = np.cov(z, rowvar=False)
    assert s["max_abs_offdiag"] == pytest.approx(np.abs(cov - np.diag(np.diag(cov))).max())
    eig = np.linalg.eigvalsh(cov)
    assert s["eig_spread"] == pytest.approx(eig[-1] / eig[0])
    assert s["eig_max"] == pytest.approx(4.0, rel=0.1)


def test_rayleigh_calibrated_on_uniform_and_rejects_concentrated(rng):
    pvalues = [rayleigh_test(uniform_sphere_sample(200, 3, rng=rng)).pvalue for _ in range(200)]
    assert stats.kstest(pvalues, "uniform").pvalue > 1e-3
    concentrated = uniform_sphere_sample(200, 3, rng=rng) + np.array([1.0, 0.0, 0.0])
    assert rayleigh_test(concentrated).pvalue < 1e-6


def test_rayleigh_circle_matches_classical_form(rng):
    # On the circle, R = 2 n Rbar^2 = 2 Z with Z = n Rbar^2 (Zar 1999, eq. 27.2); P ~ exp(-Z).
    theta = rng.vonmises(0.0, 0.3, 50)
    z = np.c_[np.cos(theta), np.sin(theta)]
    big_z = 50 * (np.mean(np.cos(theta)) ** 2 + np.mean(np.sin(theta)) ** 2)
    res = rayleigh_test(z)
    assert res.statistic == pytest.approx(2 * big_z)
    assert res.pvalue == pytest.approx(np.exp(-big_z))  # chi2(2).sf(2Z) = exp(-Z) exactly


def test_active_units_counts_variance_above_threshold(rng):
    means = np.c_[rng.normal(0, 1, 500), rng.normal(0, 0.05, 500), rng.normal(0, 0.5, 500)]
    n, var = active_units(means)
    assert n == 2 and var[1] < 0.01 < var[2]


def test_log_sphere_area():
    assert log_sphere_area(2) == pytest.approx(np.log(2 * np.pi))
    assert log_sphere_area(3) == pytest.approx(np.log(4 * np.pi))


def test_metrics_iv():
    with pytest.raises(InputDataError, match="`x` and `y` must have the same number of columns"):
        mmd_test(np.zeros((5, 2)), np.zeros((5, 3)))
    with pytest.raises(InputDataError, match="non-finite"):
        knn_kl_divergence(np.array([[np.nan], [1.0]]), np.zeros((3, 1)))
    with pytest.raises(InputDataError, match="zero row"):
        rayleigh_test(np.zeros((3, 2)))
    with pytest.raises(InputDataError, match="same non-zero length"):
        clustering_accuracy([0, 1], [0])


def test_knn_kl_on_the_circle_with_intrinsic_dimension(rng):
    # vMF(kappa) on S^1 against uniform: KL = kappa A(kappa) - log I0(kappa) (closed form,
    # A = I1/I0; the von Mises entropy from Mardia & Jupp 2000, sec. 3.5.4).
    from scipy import special

    kappa = 2.0
    exact = kappa * special.i1(kappa) / special.i0(kappa) - np.log(special.i0(kappa))
    theta = rng.vonmises(0.0, kappa, 20_000)
    x = np.c_[np.cos(theta), np.sin(theta)]
    est = knn_kl_divergence(x, uniform_sphere_sample(20_000, 2, rng=rng), intrinsic_dim=1)
    assert est == pytest.approx(exact, abs=0.05)  # exact = 0.596
