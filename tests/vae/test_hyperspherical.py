"""Hyperspherical VAEs: closed-form KL to the uniform prior, prior density, IWAE weights."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import special

from weightstats.errors import InputDataError
from weightstats.vae.families import build_model


@pytest.mark.parametrize("family", ["vmf", "power_spherical"])
@pytest.mark.parametrize("d", [2, 5])
def test_spherical_vae_kl_equals_monte_carlo(family, d):
    torch.manual_seed(0)
    model = build_model(family, latent_dim=d)
    x = torch.rand(3, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        q = model.posterior(x)
        z = q.rsample((20_000,), generator=torch.Generator().manual_seed(2))
        mc = (q.log_prob(z) - model.prior_log_prob(z)).double()
        exact = model.kl(q, z).double()
    se = mc.std(0) / math.sqrt(mc.shape[0])
    assert torch.all((mc.mean(0) - exact).abs() < 4 * se + 1e-6)
    assert torch.allclose(z.norm(dim=-1), torch.ones(()), atol=1e-5)


def test_spherical_prior_is_uniform_density():
    model = build_model("vmf", latent_dim=3)
    z = torch.nn.functional.normalize(torch.randn(4, 3, generator=torch.Generator().manual_seed(0)), dim=-1)
    expected = -math.log(4 * math.pi)  # area of S^2
    torch.testing.assert_close(model.prior_log_prob(z), torch.full((4,), expected))
    d = 5  # area of S^{d-1} = 2 pi^{d/2} / Gamma(d/2)
    m5 = build_model("power_spherical", latent_dim=d)
    area = 2 * math.pi ** (d / 2) / special.gamma(d / 2)
    assert float(m5.prior_log_prob(torch.ones(1, d) / math.sqrt(d))) == pytest.approx(-math.log(area), rel=1e-6)


@pytest.mark.parametrize("family", ["vmf", "power_spherical"])
def test_spherical_elbo_weights_and_outputs(family):
    torch.manual_seed(0)
    model = build_model(family, latent_dim=3)
    x = torch.rand(5, 64, generator=torch.Generator().manual_seed(3))
    rec, kl = model.elbo_terms(x, generator=torch.Generator().manual_seed(4))
    (kl - rec).mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    logw = model.log_importance_weights(x, 6, generator=torch.Generator().manual_seed(5))
    assert logw.shape == (6, 5) and torch.isfinite(logw).all()
    out = model.latent_outputs(x)
    assert set(out) == {"mu", "kappa", "z"} and out["kappa"].min() >= 1.0


def test_spherical_latent_dim_iv():
    with pytest.raises(InputDataError, match="`latent_dim` must be at least 2"):
        build_model("vmf", latent_dim=1)
