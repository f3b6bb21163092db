"""Seeded, reproducible training; the IWAE bound tightens with k on a trained model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from weightstats.datasets import load_digits
from weightstats.errors import InputDataError
from weightstats.vae.iwae import iwae_bound, iwae_nll
from weightstats.vae.train import labelled_subset, train_vae


@pytest.fixture(scope="module")
def digits():
    return load_digits()


@pytest.mark.parametrize("family", ["gaussian", "m2"])
def test_train_vae_is_reproducible_on_cpu(digits, family):
    state = torch.random.get_rng_state()
    x, y = digits.x_train[:400], digits.y_train[:400]
    kwargs = dict(latent_dim=2, epochs=2, y_train=y, labels_per_class=5, seed=3)
    a = train_vae(family, x, **kwargs)
    b = train_vae(family, x, **kwargs)
    c = train_vae(family, x, **{**kwargs, "seed": 4})
    pa, pb, pc = (dict(r.model.named_parameters()) for r in (a, b, c))
    assert all(torch.equal(pa[name], pb[name]) for name in pa)
    assert not all(torch.equal(pa[name], pc[name]) for name in pa)
    assert a.history.equals(b.history)
    # the caller's global generator is left untouched
    assert torch.equal(torch.random.get_rng_state(), state)


def test_callbacks_do_not_change_training(digits):
    seen = []
    plain = train_vae("gaussian", digits.x_train[:300], epochs=2, seed=1)
    watched = train_vae(
        "gaussian",
        digits.x_train[:300],
        epochs=2,
        seed=1,
        callbacks=[lambda epoch, model: seen.append((epoch, model.posterior_mean(digits.x_test[:5])))],
    )
    assert [e for e, _ in seen] == [0, 1, 2]
    for (name, p), q in zip(plain.model.named_parameters(), watched.model.parameters()):
        assert torch.equal(p, q), name


def test_training_lowers_the_loss(digits):
    result = train_vae("gaussian", digits.x_train, epochs=8, seed=0)
    assert result.history["loss"].iloc[-1] < result.history["loss"].iloc[0] - 2.0


def test_iwae_bound_tightens_with_k(digits):
    model = train_vae("gaussian", digits.x_train, latent_dim=5, epochs=10, seed=0).model
    x = digits.x_test[:200]
    b1, b10, b100 = (iwae_bound(model, x, k=k, seed=k) for k in (1, 10, 100))
    # Differences are paired over examples; allow 3 standard errors of MC error.
    for lo, hi in ((b1, b10), (b10, b100)):
        diff = hi - lo
        assert diff.mean() > -3 * diff.std(ddof=1) / np.sqrt(diff.size)
    assert b100.mean() > b1.mean()  # strictly tighter on a trained model (~0.2 nats here)
    assert iwae_nll(model, x, k=10, seed=10) == pytest.approx(-b10.mean())


def test_iwae_bound_is_exact_when_posterior_equals_prior_and_decoder_ignores_z():
    # p(x|z) independent of z and q = p  =>  log w = log p(x) for every draw, L_k = log p(x).
    torch.manual_seed(0)
    from weightstats.vae.models import GaussianVAE

    model = GaussianVAE(latent_dim=2)
    with torch.no_grad():
        model.decoder[0].weight.zero_()
        last = model.encoder[-1]
        last.weight.zero_()
        raw = math.log(math.expm1(1.0 - 1e-4))  # softplus(raw) + 1e-4 == 1: q(z|x) = N(0, I)
        last.bias.copy_(torch.tensor([0.0, 0.0, raw, raw]))
    x = torch.rand(3, 64, generator=torch.Generator().manual_seed(1))
    bound = iwae_bound(model, x, k=50, seed=0)
    logits = model.decoder(torch.zeros(3, 2))
    exact = model.log_likelihood(x, logits).detach().numpy()
    np.testing.assert_allclose(bound, exact, atol=1e-4)


def test_labelled_subset_takes_per_class(digits):
    idx = labelled_subset(digits.y_train, 10, generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(digits.y_train[idx])
    assert counts.tolist() == [10] * 10
    with pytest.raises(InputDataError, match="labels_per_class"):
        labelled_subset(digits.y_train, 10_000, generator=torch.Generator())


def test_train_vae_iv(digits):
    with pytest.raises(InputDataError, match="`x_train` must lie in"):
        train_vae("gaussian", digits.x_train * 16, epochs=1)
    with pytest.raises(InputDataError, match="`x_train` must be a 2-D"):
        train_vae("gaussian", digits.x_train[0], epochs=1)
    with pytest.raises(InputDataError, match="`y_train` is required"):
        train_vae("m2", digits.x_train, epochs=1)
    with pytest.raises(InputDataError, match="`epochs`"):
        train_vae("gaussian", digits.x_train, epochs=0)
    with pytest.raises(InputDataError, match="`family`"):
        train_vae("nope", digits.x_train)
    with pytest.raises(InputDataError, match="`k`"):
        iwae_bound(train_vae("gaussian", digits.x_train, epochs=1).model, digits.x_test, k=0)
