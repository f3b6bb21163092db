"""Posteriors, priors and KL terms of the Euclidean-latent VAEs, against closed forms and scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from weightstats.errors import InputDataError
from weightstats.vae.families import FAMILIES, build_model
from weightstats.vae.m2 import M2VAE
from weightstats.vae.models import (
    DiagonalNormal,
    DiagonalStudentT,
    GaussianVAE,
    MixturePriorVAE,
    StudentTVAE,
)


def _mc_mean_and_se(values: torch.Tensor) -> tuple[float, float]:
    v = values.double()
    return float(v.mean()), float(v.std() / math.sqrt(v.numel()))


def test_gaussian_kl_equals_monte_carlo_estimate():
    gen = torch.Generator().manual_seed(1)
    loc = torch.tensor([[0.5, -1.0, 2.0]])
    scale = torch.tensor([[0.3, 1.5, 0.8]])
    q = DiagonalNormal(loc, scale)
    model = GaussianVAE(latent_dim=3)
    z = q.rsample((200_000,), generator=gen)
    mc, se = _mc_mean_and_se(q.log_prob(z) - model.prior_log_prob(z))
    exact = float(q.kl_to_standard_normal())
    # reference: torch.distributions' own closed form for KL(Normal || Normal)
    ref = torch.distributions.kl_divergence(
        torch.distributions.Normal(loc, scale), torch.distributions.Normal(0.0, 1.0)
    ).sum()
    assert exact == pytest.approx(float(ref), rel=1e-6)
    assert abs(mc - exact) < 4 * se


def test_diagonal_normal_log_prob_against_scipy():
    q = DiagonalNormal(torch.tensor([0.2, -0.3]), torch.tensor([0.5, 2.0]))
    z = torch.tensor([[1.0, 0.0], [-2.0, 3.0]])
    ref = stats.norm.logpdf(z.numpy(), [0.2, -0.3], [0.5, 2.0]).sum(1)
    np.testing.assert_allclose(q.log_prob(z).numpy(), ref, rtol=1e-6)


@pytest.mark.parametrize("n_components", [1, 3])
def test_mixture_prior_kl_estimate_is_unbiased(n_components):
    # With K=1, or K identical components, p(z) = N(m, diag s^2) and the KL has a closed form.
    model = MixturePriorVAE(latent_dim=2, n_components=n_components)
    with torch.no_grad():
        model.prior_means.copy_(torch.tensor([0.7, -0.4]).expand(n_components, 2))
        model.prior_log_scales.copy_(torch.log(torch.tensor([1.3, 0.6])).expand(n_components, 2))
        model.prior_logits.copy_(torch.linspace(-1, 1, n_components))
    q = DiagonalNormal(torch.tensor([[0.1, 0.3]]), torch.tensor([[0.5, 0.9]]))
    gen = torch.Generator().manual_seed(2)
    z = q.rsample((200_000,), generator=gen)
    with torch.no_grad():
        mc, se = _mc_mean_and_se(model.kl(q, z))
    exact = torch.distributions.kl_divergence(
        torch.distributions.Normal(q.loc, q.scale),
        torch.distributions.Normal(torch.tensor([0.7, -0.4]), torch.tensor([1.3, 0.6])),
    ).sum()
    assert abs(mc - float(exact)) < 4 * se


def test_mixture_prior_log_prob_against_scipy():
    model = MixturePriorVAE(latent_dim=2, n_components=3)
    z = torch.tensor([[0.0, 0.0], [1.0, -2.0]])
    with torch.no_grad():
        got = model.prior_log_prob(z).numpy()
        w = torch.softmax(model.prior_logits, -1).numpy()
        m, s = model.prior_means.numpy(), model.prior_scales.numpy()
    ref = np.log(
        sum(w[k] * stats.multivariate_normal(m[k], np.diag(s[k] ** 2)).pdf(z.numpy()) for k in range(3))
    )
    np.testing.assert_allclose(got, ref, rtol=1e-5)


def test_student_t_log_prob_and_sampler_against_scipy():
    q = DiagonalStudentT(torch.tensor([0.5]), torch.tensor([2.0]), df=3.0)
    z = torch.linspace(-10, 10, 7).unsqueeze(1)
    ref = stats.t.logpdf(z.numpy().ravel(), 3.0, loc=0.5, scale=2.0)
    np.testing.assert_allclose(q.log_prob(z).numpy(), ref, rtol=1e-5)
    draws = q.rsample((20_000,), generator=torch.Generator().manual_seed(3)).numpy().ravel()
    # KS against scipy's t(3, loc=0.5, scale=2): seeded, p ~ 0.5 here; a wrong sampler gives ~0
    assert stats.kstest(draws, stats.t(3.0, loc=0.5, scale=2.0).cdf).pvalue > 1e-3


def test_student_t_kl_monte_carlo_matches_quadrature():
    model = StudentTVAE(latent_dim=2, df=4.0)
    loc, scale = torch.tensor([[0.8, -0.2]]), torch.tensor([[0.4, 1.7]])
    q = DiagonalStudentT(loc, scale, df=4.0)
    z = q.rsample((200_000,), generator=torch.Generator().manual_seed(4))
    mc, se = _mc_mean_and_se(model.kl(q, z))
    exact = 0.0
    for m, s in zip(loc.ravel().tolist(), scale.ravel().tolist()):
        qd, pd_ = stats.t(4.0, loc=m, scale=s), stats.t(4.0)
        def integrand(u, qd=qd, pd_=pd_):
            return qd.pdf(u) * (qd.logpdf(u) - pd_.logpdf(u))

        exact += integrate.quad(integrand, -np.inf, np.inf)[0]
    assert abs(mc - exact) < 4 * se


def test_likelihoods_against_torch_distributions():
    x = torch.rand(5, 64, generator=torch.Generator().manual_seed(5))
    logits = torch.randn(5, 64, generator=torch.Generator().manual_seed(6))
    cb = GaussianVAE(latent_dim=2, likelihood="continuous_bernoulli")
    ref = torch.distributions.ContinuousBernoulli(logits=logits).log_prob(x).sum(-1)
    torch.testing.assert_close(cb.log_likelihood(x, logits), ref, rtol=1e-5, atol=1e-4)
    xb = (x > 0.5).float()
    ber = GaussianVAE(latent_dim=2)
    ref = torch.distributions.Bernoulli(logits=logits).log_prob(xb).sum(-1)
    torch.testing.assert_close(ber.log_likelihood(xb, logits), ref, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("family", sorted(set(FAMILIES) - {"vmf", "power_spherical"}))
def test_every_family_has_finite_elbo_and_weights(family):
    torch.manual_seed(0)
    model = build_model(family, latent_dim=3)
    x = torch.rand(7, 64, generator=torch.Generator().manual_seed(7))
    gen = torch.Generator().manual_seed(8)
    rec, kl = model.elbo_terms(x, generator=gen)
    assert rec.shape == kl.shape == (7,)
    assert torch.isfinite(rec).all() and torch.isfinite(kl).all()
    logw = model.log_importance_weights(x, 4, generator=gen)
    assert logw.shape == (4, 7) and torch.isfinite(logw).all()
    assert model.posterior_mean(x).shape == (7, 3)
    assert model.prior_sample(11, generator=gen).shape == (11, 3)


def test_m2_unlabelled_bound_enumerates_classes():
    torch.manual_seed(0)
    model = M2VAE(latent_dim=2, n_classes=3)
    x = torch.rand(4, 64, generator=torch.Generator().manual_seed(9))
    # With the same noise for every class the bound is sum_y q(y|x) L(x,y) + H(q(y|x)).
    rec, kl = model.elbo_terms(x, generator=torch.Generator().manual_seed(10))
    log_qy = torch.log_softmax(model.class_logits(x), -1)
    g = torch.Generator().manual_seed(10)
    ys = torch.arange(3).unsqueeze(1).expand(3, 4)
    rec_y, kl_y = model.labelled_terms(x, ys, generator=g)
    labelled = rec_y - kl_y - math.log(3)  # L(x, y), shape (3, 4)
    expected = (log_qy.exp().T * labelled).sum(0) - (log_qy.exp() * log_qy).sum(-1)
    torch.testing.assert_close(rec - kl, expected)


def test_build_model_iv():
    with pytest.raises(InputDataError, match="`family` must be one of"):
        build_model("cauchy")
    with pytest.raises(InputDataError, match="bad option"):
        build_model("gaussian", n_components=3)
    with pytest.raises(InputDataError, match="`likelihood`"):
        build_model("gaussian", likelihood="poisson")
    with pytest.raises(InputDataError, match="`df`"):
        build_model("student_t", df=0)


def test_mixture_prior_fixed_weights_stay_uniform():
    torch.manual_seed(0)
    model = MixturePriorVAE(latent_dim=2, n_components=4, learn_weights=False)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.1)
    x = torch.rand(16, 64, generator=torch.Generator().manual_seed(1))
    for _ in range(3):
        opt.zero_grad()
        model.loss(x, generator=torch.Generator().manual_seed(2)).backward()
        opt.step()
    torch.testing.assert_close(torch.softmax(model.prior_logits, -1), torch.full((4,), 0.25))
    assert model.cluster(x).shape == (16,)
