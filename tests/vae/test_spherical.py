"""Tests for weightstats.vae.spherical (vMF, Power Spherical, uniform) and its Bessel functions.

References: mpmath (arbitrary precision, a torch dependency) for I_v; scipy.stats.vonmises_fisher
for the vMF density and entropy; scipy.integrate.quad for the implicit derivative and for the
normalisation of the Power Spherical density; Monte Carlo with z-score bounds (|err| < 4 SE) for
everything defined as an expectation.
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import torch
from scipy import integrate, special, stats

from weightstats.errors import InputDataError
from weightstats.vae._bessel import log_bessel_ive
from weightstats.vae._wood import _dtheta_dkappa, _wood_angle, _wood_eps
from weightstats.vae.spherical import (
    HypersphericalUniform,
    PowerSpherical,
    VonMisesFisher,
    bessel_ratio,
    log_bessel_iv,
)

F64 = torch.float64
mpmath.mp.dps = 40


def t64(x):
    return torch.as_tensor(x, dtype=F64)


def unit(rng, d, n=None):
    x = rng.standard_normal(d if n is None else (n, d))
    return t64(x / np.linalg.norm(x, axis=-1, keepdims=True))


def zscore(samples: torch.Tensor, truth: float) -> float:
    s = samples.detach().to(F64)
    return float((s.mean() - truth) / (s.std() / math.sqrt(s.numel())))


# --------------------------------------------------------------------------------------------
# Bessel functions
# --------------------------------------------------------------------------------------------

# (v, kappa) including where scipy.special.ive underflows: ive(100, 1e-3) == 0 and
# ive(1000, 500) == 0 (checked with scipy 1.17), which take the series / Debye branches.
BESSEL_GRID = [
    (v, x)
    for v in (0.0, 0.5, 1.5, 6.5, 31.0, 32.0, 100.0, 1000.0)
    for x in (1e-300, 1e-3, 0.7, 30.0, 500.0, 1e4, 1e5)
]


def test_log_bessel_iv_against_mpmath():
    v = t64([g[0] for g in BESSEL_GRID])
    x = t64([g[1] for g in BESSEL_GRID])
    got = log_bessel_iv(v, x)
    # reference: mpmath.log(mpmath.besseli(v, x)) at 40 significant digits
    ref = t64([float(mpmath.log(mpmath.besseli(a, b))) for a, b in BESSEL_GRID])
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, ref, rtol=1e-13, atol=1e-13)


def test_log_bessel_ive_is_log_iv_minus_kappa():
    x = t64([1e-3, 1.0, 1e4])
    torch.testing.assert_close(log_bessel_ive(31, x), log_bessel_iv(31, x) - x, rtol=0, atol=1e-9)


def test_bessel_ratio_against_mpmath():
    v = t64([g[0] for g in BESSEL_GRID])
    x = t64([g[1] for g in BESSEL_GRID])
    got = bessel_ratio(v, x)
    ref = t64([float(mpmath.besseli(a + 1, b) / mpmath.besseli(a, b)) for a, b in BESSEL_GRID])
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=0)


def test_bessel_against_scipy_iv_moderate_range():
    v, x = np.meshgrid([0.0, 1.5, 10.0], [0.1, 1.0, 20.0, 200.0])
    # reference: scipy.special.iv, finite and accurate in this range
    torch.testing.assert_close(log_bessel_iv(t64(v), t64(x)), t64(np.log(special.iv(v, x))))
    torch.testing.assert_close(
        bessel_ratio(t64(v), t64(x)), t64(special.iv(v + 1, x) / special.iv(v, x))
    )


@pytest.mark.parametrize("v", [0.0, 1.5, 31.0, 200.0])
def test_bessel_gradients_gradcheck(v):
    # (kappa = 1e4 is checked against mpmath below: finite differences lose digits there)
    x = t64([1e-3, 0.3, 4.0, 80.0, 900.0]).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda k: log_bessel_iv(v, k), (x,), eps=1e-7, atol=1e-6, rtol=1e-5
    )
    assert torch.autograd.gradcheck(
        lambda k: bessel_ratio(v, k), (x,), eps=1e-7, atol=1e-6, rtol=1e-5
    )
    assert torch.autograd.gradgradcheck(
        lambda k: log_bessel_iv(v, k), (x,), eps=1e-7, atol=1e-5, rtol=1e-4
    )


def test_bessel_derivative_identity_against_mpmath():
    # d/dk log I_v(k) = I_{v+1}/I_v + v/k; reference: mpmath.diff of log besseli.
    for v, k in [(0.0, 0.5), (31.0, 1e-3), (31.0, 1e4), (1.5, 50.0)]:
        x = t64(k).requires_grad_()
        (g,) = torch.autograd.grad(log_bessel_iv(v, x), x)
        ref = float(mpmath.diff(lambda t, v=v: mpmath.log(mpmath.besseli(v, t)), k))
        assert float(g) == pytest.approx(ref, rel=1e-10)


def test_bessel_float32_in_float32_out_and_broadcast():
    k = torch.tensor([[1e-3], [1e4]], dtype=torch.float32, requires_grad=True)
    out = log_bessel_iv(torch.tensor([0.0, 31.0]), k)
    assert out.dtype == torch.float32 and out.shape == (2, 2) and torch.isfinite(out).all()
    out.sum().backward()
    assert k.grad.shape == (2, 1) and torch.isfinite(k.grad).all()


def test_bessel_iv():
    with pytest.raises(InputDataError, match="`kappa` must be finite and >= 0"):
        log_bessel_iv(1.0, t64([-1.0]))
    with pytest.raises(InputDataError, match="`kappa`"):
        bessel_ratio(1.0, t64([float("nan")]))
    with pytest.raises(InputDataError, match="order `v` must be finite and >= 0"):
        log_bessel_iv(-2.0, t64([1.0]))
    with pytest.raises(InputDataError, match="cannot require grad"):
        log_bessel_iv(t64(1.0).requires_grad_(), t64([1.0]))


# --------------------------------------------------------------------------------------------
# von Mises-Fisher: density, moments, KL
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "d, kappa", [(2, 0.3), (3, 2.0), (5, 2.0), (10, 40.0), (64, 1e-3), (64, 500.0)]
)
def test_vmf_log_prob_against_scipy_vonmises_fisher(rng, d, kappa):
    mu = unit(rng, d)
    x = unit(rng, d, 7)
    got = VonMisesFisher(mu, kappa).log_prob(x)
    # reference: scipy.stats.vonmises_fisher(mu, kappa).logpdf (scipy >= 1.11)
    ref = stats.vonmises_fisher(mu.numpy(), kappa).logpdf(x.numpy())
    torch.testing.assert_close(got, t64(ref), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("d, kappa", [(3, 2.0), (5, 0.1), (16, 30.0), (64, 800.0)])
def test_vmf_entropy_against_scipy_vonmises_fisher(rng, d, kappa):
    mu = unit(rng, d)
    ref = stats.vonmises_fisher(mu.numpy(), kappa).entropy()  # scipy's closed form
    assert float(VonMisesFisher(mu, kappa).entropy()) == pytest.approx(ref, rel=1e-10, abs=1e-10)


@pytest.mark.parametrize(
    "d, kappa", [(2, 1.0), (3, 1e4), (5, 2.0), (16, 30.0), (64, 1e-3), (64, 1e4)]
)
def test_vmf_mean_resultant_length_matches_bessel_ratio(rng, d, kappa):
    mu = unit(rng, d)
    q = VonMisesFisher(mu, kappa)
    z = q.sample((4000,), generator=torch.Generator().manual_seed(d))
    assert torch.allclose(z.norm(dim=-1), t64(1.0), atol=1e-12)
    A = float(bessel_ratio(d / 2 - 1, t64(kappa)))  # A_d(kappa) = I_{d/2}/I_{d/2-1}
    assert abs(zscore(z @ mu, A)) < 4
    torch.testing.assert_close(q.mean, A * mu)


@pytest.mark.parametrize("kappa", [0.5, 50.0])
def test_vmf_samples_against_exact_cdf_on_s2(rng, kappa):
    # on S^2, w = loc^T z has CDF (e^{kappa w} - e^{-kappa}) / (e^{kappa} - e^{-kappa})
    mu = unit(rng, 3)
    w = (
        VonMisesFisher(mu, kappa).sample((4000,), generator=torch.Generator().manual_seed(8)) @ mu
    ).numpy()
    cdf = lambda x: np.expm1(kappa * (x + 1)) / np.expm1(2 * kappa)
    assert stats.kstest(w, cdf).pvalue > 1e-3


def test_vmf_samples_against_scipy_vonmises_on_s1(rng):
    # on S^1 the angle to loc follows scipy.stats.vonmises(kappa)
    mu = unit(rng, 2)
    z = VonMisesFisher(mu, 3.0).sample((4000,), generator=torch.Generator().manual_seed(9))
    angle = torch.atan2(mu[0] * z[:, 1] - mu[1] * z[:, 0], z @ mu).numpy()
    assert stats.kstest(angle, stats.vonmises(3.0).cdf).pvalue > 1e-3


@pytest.mark.parametrize("pole", [1.0, -1.0])
def test_vmf_rotation_at_the_poles(pole):
    # loc = +-e1 are the cases where the textbook Householder reflection divides by zero
    mu = t64([pole, 0.0, 0.0, 0.0]).requires_grad_()
    z = VonMisesFisher(mu, 5.0).rsample((3000,), generator=torch.Generator().manual_seed(0))
    assert abs(zscore(z.detach() @ mu.detach(), float(bessel_ratio(1.0, t64(5.0))))) < 4
    z.sum().backward()
    assert torch.isfinite(mu.grad).all()


@pytest.mark.parametrize("d, kappa", [(2, 0.5), (3, 5.0), (10, 1e-2), (64, 300.0)])
def test_vmf_kl_to_uniform_against_monte_carlo(rng, d, kappa):
    q = VonMisesFisher(unit(rng, d), kappa)
    z = q.sample((20000,), generator=torch.Generator().manual_seed(1))
    log_ratio = q.log_prob(z) - HypersphericalUniform(d, dtype=F64).log_prob(z)
    assert abs(zscore(log_ratio, float(q.kl_to_uniform()))) < 4


@pytest.mark.parametrize("d, kappa", [(3, 1e-3), (5, 2.0), (64, 1e-3), (64, 1e4), (2, 1e4)])
def test_vmf_kl_to_uniform_against_mpmath(d, kappa):
    # KL = log C_d + kappa A_d + log|S^{d-1}| at 40 digits; small-kappa truth: kappa^2 / (2d)
    v, k = mpmath.mpf(d) / 2 - 1, mpmath.mpf(kappa)
    A = mpmath.besseli(v + 1, k) / mpmath.besseli(v, k)
    ref = (
        v * mpmath.log(k)
        - (v + 1) * mpmath.log(2 * mpmath.pi)
        - mpmath.log(mpmath.besseli(v, k))
        + k * A
        + mpmath.log(2)
        + (v + 1) * mpmath.log(mpmath.pi)
        - mpmath.loggamma(v + 1)
    )
    got = float(VonMisesFisher(unit(np.random.default_rng(0), d), kappa).kl_to_uniform())
    assert got == pytest.approx(float(ref), rel=1e-11, abs=0)
    if kappa < 0.01:
        assert got == pytest.approx(kappa**2 / (2 * d), rel=1e-3)


def test_vmf_finite_values_and_gradients_across_range(rng):
    # kappa from 1e-3 to 1e4 and d from 2 to 64: value and gradient of the KL, entropy,
    # log-density and of a function of a reparameterised sample all stay finite, in float32 too.
    for dtype in (F64, torch.float32):
        for d in (2, 3, 5, 16, 64):
            kappa = torch.logspace(-3, 4, 15, dtype=dtype).requires_grad_()
            loc = unit(rng, d).to(dtype).requires_grad_()
            q = VonMisesFisher(loc.expand(15, d), kappa)
            z = q.rsample((4,), generator=torch.Generator().manual_seed(0))
            kl = q.kl_to_uniform()
            total = kl.sum() + q.entropy().sum() + q.log_prob(z.detach()).sum() + (z @ loc).sum()
            assert torch.isfinite(kl).all() and (kl >= 0).all() and (kl.diff() > 0).all()
            assert z.dtype == dtype and torch.isfinite(total)
            total.backward()
            assert torch.isfinite(kappa.grad).all() and torch.isfinite(loc.grad).all()


# --------------------------------------------------------------------------------------------
# von Mises-Fisher: the gradient of rsample
# --------------------------------------------------------------------------------------------


def _quad_dtheta_dkappa(theta, kappa, d):
    # reference: d theta/d kappa = -(dF/dkappa) / p(theta), F(theta) = int_0^theta p,
    # p(s) ~ e^{kappa cos s} sin^{d-2} s, dF/dkappa = int_0^theta (cos s - A) p(s) ds
    # = -int_theta^pi (cos s - A) p(s) ds, by scipy.integrate.quad on the side whose integrand
    # is small (the other side cancels catastrophically in float64).
    A = special.ive(d / 2, kappa) / special.ive(d / 2 - 1, kappa)
    mode = math.acos(2 * kappa / (d - 2 + math.sqrt((d - 2) ** 2 + 4 * kappa**2)))

    def f(s):
        log_ratio = kappa * (math.cos(s) - math.cos(theta))
        if d > 2:
            log_ratio += (d - 2) * math.log(math.sin(s) / math.sin(theta))
        return (math.cos(s) - A) * math.exp(log_ratio)

    if theta <= mode:
        return -integrate.quad(f, 0, theta, epsabs=0, epsrel=1e-12, limit=200)[0]
    return integrate.quad(f, theta, math.pi, epsabs=0, epsrel=1e-12, limit=200)[0]


@pytest.mark.parametrize(
    "d, kappa",
    [(2, 0.5), (3, 2.0), (5, 2.0), (16, 10.0), (64, 1e-3), (64, 300.0), (3, 1e3), (5, 1e4)],
)
def test_vmf_implicit_derivative_against_quad(d, kappa):
    A = float(bessel_ratio(d / 2 - 1, t64(kappa)))
    spread = math.sqrt(1 - A * A)
    # cosines from the far left tail, through the bulk, to close to the pole
    cosines = [A - 3 * spread, A - 0.5 * spread, A, A + 0.3 * (1 - A), A + 0.9 * (1 - A)]
    theta = t64([math.acos(min(max(c, -0.999), 0.999999)) for c in cosines])
    got = _dtheta_dkappa(theta, t64([kappa] * 5), d)
    ref = t64([_quad_dtheta_dkappa(float(t), kappa, d) for t in theta])
    torch.testing.assert_close(got, ref, rtol=1e-8, atol=1e-14)


def _pathwise_grads(d, kappa, n, seed):
    mu = unit(np.random.default_rng(seed), d)
    k = torch.full((n,), kappa, dtype=F64, requires_grad=True)  # one leaf per sample
    z = VonMisesFisher(mu.expand(n, d), k).rsample(generator=torch.Generator().manual_seed(seed))
    (z @ mu).sum().backward()
    return k.grad


def _dA_dkappa(d, kappa):
    k = t64(kappa).requires_grad_()
    (g,) = torch.autograd.grad(bessel_ratio(d / 2 - 1, k), k)
    return float(g)


@pytest.mark.parametrize("d, kappa", [(5, 2.0), (2, 1.0), (3, 0.5), (16, 30.0)])
def test_vmf_rsample_gradient_is_unbiased(d, kappa):
    # pathwise d/dkappa E[mu^T z] must equal d A_d / dkappa (A_d from the Bessel ratio)
    grads = _pathwise_grads(d, kappa, 20000 if (d, kappa) == (5, 2.0) else 8000, seed=d)
    assert abs(zscore(grads, _dA_dkappa(d, kappa))) < 4


def test_vmf_naive_straight_through_gradient_is_biased():
    # Holding Wood's accepted proposal fixed and differentiating w(eps, kappa) ignores that the
    # accepted eps depends on kappa (Naesseth et al., 2017): at d=5, kappa=2 its mean is ~0.128
    # against the true 0.147, tens of standard errors away. The same check as above fails.
    d, kappa, n = 5, 2.0, 20000
    k = torch.full((n,), kappa, dtype=F64, requires_grad=True)
    eps = _wood_eps(k.detach(), d, torch.Generator().manual_seed(3))
    torch.cos(_wood_angle(eps, k, d)).sum().backward()
    assert zscore(k.grad, _dA_dkappa(d, kappa)) < -10


def test_vmf_rsample_gradient_in_loc_is_unbiased():
    # E[a^T z] = A_d(kappa) a^T p/|p| for loc = p/|p|; its gradient in p is
    # A (I - mu mu^T) a / |p|. Check each coordinate's pathwise mean within 4 SE.
    d, kappa, n = 4, 3.0, 8000
    rng = np.random.default_rng(5)
    p0, a = t64(rng.standard_normal(d)) * 1.7, t64(rng.standard_normal(d))
    p = p0.expand(n, d).clone().requires_grad_()
    loc = torch.nn.functional.normalize(p, dim=-1)
    z = VonMisesFisher(loc, kappa).rsample(generator=torch.Generator().manual_seed(7))
    (z @ a).sum().backward()
    mu = p0 / p0.norm()
    truth = float(bessel_ratio(d / 2 - 1, t64(kappa))) * (a - mu * (mu @ a)) / p0.norm()
    for j in range(d):
        assert abs(zscore(p.grad[:, j], float(truth[j]))) < 4


def test_log_bessel_iv_reduced_against_mpmath():
    from weightstats.vae._bessel import log_bessel_iv_reduced

    for v, k in [(0.0, 1e-3), (31.0, 1e-3), (31.0, 11.0), (31.0, 12.0), (0.5, 1e4)]:
        # reference: log(Gamma(v+1) (2/k)^v I_v(k)) at 40 digits
        ref = mpmath.log(mpmath.gamma(v + 1) * (2 / mpmath.mpf(k)) ** v * mpmath.besseli(v, k))
        assert float(log_bessel_iv_reduced(v, t64(k))) == pytest.approx(float(ref), rel=1e-12)
    x = t64([1e-3, 0.5, 11.0, 12.0, 200.0]).requires_grad_()
    (g,) = torch.autograd.grad(log_bessel_iv_reduced(31.0, x).sum(), x)
    torch.testing.assert_close(g, bessel_ratio(31.0, x.detach()))


# --------------------------------------------------------------------------------------------
# Power Spherical
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kappa", [0.5, 3.0, 40.0])
def test_power_spherical_log_prob_normalises_on_s1(kappa):
    mu = t64([0.6, -0.8])
    q = PowerSpherical(mu, kappa)

    def density(phi):
        return float(q.log_prob(t64([[math.cos(phi), math.sin(phi)]])).exp())

    total = integrate.quad(
        density,
        0,
        2 * math.pi,
        epsabs=0,
        epsrel=1e-11,
        limit=200,
        points=[math.atan2(-0.8, 0.6) % (2 * math.pi)],
    )[0]
    assert total == pytest.approx(1.0, rel=1e-9)


@pytest.mark.parametrize("kappa", [0.5, 2.5, 10.0])
def test_power_spherical_log_prob_normalises_on_s2(kappa):
    # integrate over S^2 in polar coordinates about e3, loc elsewhere (no symmetry used):
    # Gauss-Legendre in cos(theta) times the trapezoid rule in phi (exact for periodic functions)
    mu = t64([2.0, -1.0, 2.0]) / 3.0
    c, wc = (t64(a) for a in np.polynomial.legendre.leggauss(300))
    phi = torch.arange(300, dtype=F64) * (2 * math.pi / 300)
    C, P = torch.meshgrid(c, phi, indexing="ij")
    r = torch.sqrt(1 - C**2)
    x = torch.stack([r * torch.cos(P), r * torch.sin(P), C], dim=-1)
    dens = PowerSpherical(mu, kappa).log_prob(x).exp()
    total = float((dens * wc[:, None]).sum() * (2 * math.pi / 300))
    assert total == pytest.approx(1.0, rel=1e-6)


@pytest.mark.parametrize("d, kappa", [(3, 2.0), (10, 0.3), (64, 200.0)])
def test_power_spherical_moments_and_kl_against_monte_carlo(rng, d, kappa):
    mu = unit(rng, d)
    q = PowerSpherical(mu, kappa)
    z = q.sample((20000,), generator=torch.Generator().manual_seed(2))
    assert torch.allclose(z.norm(dim=-1), t64(1.0), atol=1e-12)
    # mean: E[z] = kappa / (kappa + d - 1) loc (De Cao & Aziz 2020, closed form)
    torch.testing.assert_close(q.mean, kappa / (kappa + d - 1) * mu)
    assert abs(zscore(z @ mu, kappa / (kappa + d - 1))) < 4
    # (1 + mu^T z) / 2 ~ Beta(a, b): KS test against scipy.stats.beta
    a, b = (d - 1) / 2 + kappa, (d - 1) / 2
    assert stats.kstest(((1 + z @ mu) / 2).numpy(), stats.beta(a, b).cdf).pvalue > 1e-3
    log_ratio = q.log_prob(z) - HypersphericalUniform(d, dtype=F64).log_prob(z)
    assert abs(zscore(log_ratio, float(q.kl_to_uniform()))) < 4
    assert abs(zscore(-q.log_prob(z), float(q.entropy()))) < 4


def test_power_spherical_rsample_gradient_is_unbiased():
    # d/dkappa E[mu^T z] = d/dkappa kappa / (kappa + d - 1) = (d - 1) / (kappa + d - 1)^2
    d, kappa, n = 5, 2.0, 20000
    mu = unit(np.random.default_rng(1), d)
    k = torch.full((n,), kappa, dtype=F64, requires_grad=True)
    z = PowerSpherical(mu.expand(n, d), k).rsample(generator=torch.Generator().manual_seed(4))
    (z @ mu).sum().backward()
    assert abs(zscore(k.grad, (d - 1) / (kappa + d - 1) ** 2)) < 4


def test_power_spherical_finite_across_range(rng):
    for d in (2, 64):
        kappa = torch.logspace(-3, 4, 8, dtype=torch.float32).requires_grad_()
        loc = unit(rng, d).float().requires_grad_()
        q = PowerSpherical(loc.expand(8, d), kappa)
        z = q.rsample((3,), generator=torch.Generator().manual_seed(0))
        kl = q.kl_to_uniform()
        assert (kl >= 0).all() and (kl.diff() > 0).all() and z.dtype == torch.float32
        (kl.sum() + (z @ loc).sum() + q.log_prob(z.detach()).sum()).backward()
        assert torch.isfinite(kappa.grad).all() and torch.isfinite(loc.grad).all()


# --------------------------------------------------------------------------------------------
# uniform prior, KL registration, reproducibility, validation
# --------------------------------------------------------------------------------------------


def test_hyperspherical_uniform():
    p = HypersphericalUniform(3, dtype=F64)
    z = p.sample((5000,), generator=torch.Generator().manual_seed(0))
    assert z.shape == (5000, 3) and torch.allclose(z.norm(dim=-1), t64(1.0))
    assert (z.mean(0).abs() < 4 / math.sqrt(3 * 5000)).all()  # each coordinate has var 1/3
    torch.testing.assert_close(p.log_prob(z[:2]), t64([-math.log(4 * math.pi)] * 2))
    assert float(p.entropy()) == pytest.approx(math.log(4 * math.pi))
    assert "dim=3" in repr(p)


def test_kl_divergence_is_registered(rng):
    for cls in (VonMisesFisher, PowerSpherical):
        q = cls(unit(rng, 4, 3), t64([0.5, 5.0, 50.0]))
        kl = torch.distributions.kl_divergence(q, HypersphericalUniform(4))
        torch.testing.assert_close(kl, q.kl_to_uniform())
        with pytest.raises(InputDataError, match="S\\^3 but the prior on S\\^4"):
            torch.distributions.kl_divergence(q, HypersphericalUniform(5))


@pytest.mark.parametrize("cls", [VonMisesFisher, PowerSpherical])
def test_seeded_sampling_is_reproducible_and_leaves_the_global_rng_alone(rng, cls):
    q = cls(unit(rng, 6, 2), t64([1.5, 30.0]))
    state = torch.get_rng_state()
    a = q.rsample((50,), generator=torch.Generator().manual_seed(11))
    b = q.rsample((50,), generator=torch.Generator().manual_seed(11))
    c = q.rsample((50,), generator=torch.Generator().manual_seed(12))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == (50, 2, 6)


@pytest.fixture
def default_validation():
    """Turn torch.distributions' default argument validation on for one test.

    Initialising torch._dynamo (any torch.compile in the same process) switches it off
    globally, and our distributions follow torch's default, as torch's own do.
    """
    from torch.distributions import Distribution

    before = Distribution._validate_args
    Distribution.set_default_validate_args(True)
    yield
    Distribution.set_default_validate_args(before)


@pytest.mark.parametrize("cls", [VonMisesFisher, PowerSpherical])
def test_distribution_iv(cls, default_validation):
    loc = t64([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    with pytest.raises(InputDataError, match="`loc` must hold unit vectors.*normalize"):
        cls(loc * 2, 1.0)
    with pytest.raises(InputDataError, match="`concentration` must be finite and > 0"):
        cls(loc, t64([1.0, 0.0]))
    with pytest.raises(InputDataError, match="`concentration` must be finite"):
        cls(loc, float("nan"))
    with pytest.raises(InputDataError, match="d >= 2"):
        cls(t64([1.0]), 1.0)
    with pytest.raises(InputDataError, match="does not broadcast"):
        cls(loc, t64([1.0, 2.0, 3.0]))
    with pytest.raises(InputDataError, match="floating-point torch tensor"):
        cls([1.0, 0.0], 1.0)
    q = cls(loc, t64([[2.0], [3.0]]))  # a (batch, 1) concentration from a Linear head
    assert q.batch_shape == (2,) and q.event_shape == (3,)
    assert f"{cls.__name__}(dim=3, batch_shape=(2,)" in repr(q)
    with pytest.raises(InputDataError, match=r"`x` must have shape \(\.\.\., 3\)"):
        q.log_prob(t64([1.0, 0.0]))
    with pytest.raises(InputDataError, match="`x` must be unit vectors"):
        q.log_prob(t64([2.0, 0.0, 0.0]))
    cls(loc * 2, 1.0, validate_args=False)  # opt-out, as in torch.distributions
    with pytest.raises(InputDataError, match="`dim` must be an integer >= 2"):
        HypersphericalUniform(1)


def test_vmf_second_derivative_through_the_sampler_raises_and_empty_batch_works():
    k = t64(2.0).requires_grad_()
    z = VonMisesFisher(t64([1.0, 0.0, 0.0]), k).rsample((5,))
    (g,) = torch.autograd.grad(z[:, 0].sum(), k, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        g.backward()
    empty = VonMisesFisher(torch.zeros(0, 3), torch.ones(0))
    assert empty.rsample((2,)).shape == (2, 0, 3) and empty.kl_to_uniform().shape == (0,)
