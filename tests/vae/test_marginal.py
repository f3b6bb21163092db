"""aggregate_kl: exact when every posterior is the same, ~0 when q(z) is the prior."""

from __future__ import annotations

import math

import pytest
import torch

from weightstats.errors import InputDataError
from weightstats.vae.families import build_model
from weightstats.vae.marginal import aggregate_kl
from weightstats.vae.models import DiagonalNormal


def _constant_encoder(model, loc, scale_raw):
    with torch.no_grad():
        last = model.encoder[-1]
        last.weight.zero_()
        last.bias.copy_(torch.tensor([*loc, *scale_raw]))


def test_aggregate_kl_exact_case_identical_posteriors():
    # q(z|x) = N(m, s^2) for every x => q(z) = N(m, s^2); KL to N(0, I) in closed form.
    torch.manual_seed(0)
    model = build_model("gaussian", latent_dim=2)
    m, s = [0.5, -1.0], [0.6, 1.4]
    raw = [math.log(math.expm1(v - 1e-4)) for v in s]  # softplus(raw) + 1e-4 = s
    _constant_encoder(model, m, raw)
    x = torch.rand(400, 64, generator=torch.Generator().manual_seed(1))
    exact = sum(0.5 * (mi**2 + si**2 - 1 - math.log(si**2)) for mi, si in zip(m, s))
    # with identical posteriors the estimator is a plain MC average: sd ~ 0.05 / sqrt(400 * 40)
    est = aggregate_kl(model, x, n_draws=40, seed=2)
    assert est == pytest.approx(exact, abs=0.03)


def test_aggregate_kl_near_zero_when_aggregate_matches_prior():
    # posterior means spread N(0, 0.8) and posterior variance 0.2: q(z) -> N(0, 1) = prior.
    torch.manual_seed(0)
    model = build_model("gaussian", latent_dim=2)
    n = 1500
    loc = torch.randn(n, 2, generator=torch.Generator().manual_seed(3)) * math.sqrt(0.8)

    q = DiagonalNormal(loc, torch.full((n, 2), math.sqrt(0.2)))
    model.posterior = lambda x: q  # type: ignore[method-assign]
    est = aggregate_kl(model, torch.rand(n, 64), seed=4)
    # finite-N upward bias of the own term is small here; the truth is 0
    assert -0.05 < est < 0.1


def test_aggregate_kl_iv():
    with pytest.raises(InputDataError, match="M2"):
        aggregate_kl(build_model("m2", latent_dim=2), torch.rand(5, 64))
    with pytest.raises(InputDataError, match="`n_draws`"):
        aggregate_kl(build_model("gaussian", latent_dim=2), torch.rand(5, 64), n_draws=0)
