"""analyze_latent: known truth on simulated codes, and a recorded run directory."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from weightstats.analysis.latent import PER_DIM_COLUMNS, analyze_latent, prior_sampler
from weightstats.errors import InputDataError
from weightstats.vae.metrics import uniform_sphere_sample


def test_matching_gaussian_codes_look_like_the_prior(rng):
    z = rng.normal(size=(800, 3))
    res = analyze_latent(z, means=z * 0.9, rng=1)
    s = res.summary.iloc[0]
    assert list(res.per_dim.columns) == PER_DIM_COLUMNS
    assert s["mmd_pvalue"] > 0.01 and abs(s["kl_knn"]) < 0.15
    assert s["kl_gaussian_moments"] < 0.05 and s["active_units"] == 3
    assert res.per_dim["excess_kurtosis"].abs().max() < 1.0
    # the per-dimension KS statistic is scipy's against N(0, 1)
    assert res.per_dim["ks_statistic"][0] == pytest.approx(stats.kstest(z[:, 0], "norm").statistic)


def test_mismatched_codes_are_flagged(rng):
    # a collapsed unit, a correlated pair and a heavy-tailed unit
    base = rng.normal(size=(800, 2))
    z = np.c_[base[:, 0], 0.9 * base[:, 0] + 0.3 * base[:, 1], rng.laplace(size=800), 0.01 * rng.normal(size=800)]
    means = z.copy()
    means[:, 3] = 0.05 * rng.normal(size=800)  # posterior mean barely varies: inactive
    res = analyze_latent(z, means=means, rng=2)
    s = res.summary.iloc[0]
    assert s["mmd_pvalue"] < 0.01
    assert s["active_units"] == 3 and not res.per_dim["active"][3]
    assert s["max_abs_offdiag_corr"] > 0.9 and s["eig_spread"] > 100
    assert res.per_dim["excess_kurtosis"][2] > 1.5  # Laplace: 3
    assert s["kl_knn"] > 1.0


def test_spherical_codes_use_rayleigh(rng):
    uniform = analyze_latent(uniform_sphere_sample(600, 3, rng=rng), family="vmf", rng=3)
    s = uniform.summary.iloc[0]
    assert s["rayleigh_pvalue"] > 0.01 and np.isnan(s["kl_gaussian_moments"])
    assert np.isnan(uniform.per_dim["skewness"]).all()
    concentrated = uniform_sphere_sample(600, 3, rng=rng) + [0.0, 0.0, 1.5]
    concentrated /= np.linalg.norm(concentrated, axis=1, keepdims=True)
    c = analyze_latent(concentrated, family="vmf", rng=4).summary.iloc[0]
    assert c["rayleigh_pvalue"] < 1e-6 and c["mmd_pvalue"] < 0.01


def test_prior_sampler_mixture_and_student_t(rng):
    draw = prior_sampler("mixture", 2, {"weights": [0.5, 0.5], "means": [[-3, 0], [3, 0]], "scales": [[1, 1], [1, 1]]})
    x = draw(4000, rng)
    assert abs(x[:, 0].mean()) < 0.2 and x[:, 0].std() == pytest.approx(np.sqrt(10), rel=0.05)
    t = prior_sampler("student_t", 1, {"df": 5})(20_000, rng)
    assert t.var() == pytest.approx(5 / 3, rel=0.15)
    with pytest.raises(InputDataError, match="mixture prior needs"):
        prior_sampler("mixture", 2, {})


def test_analyze_latent_iv(rng):
    with pytest.raises(InputDataError, match="`family` must be one of"):
        analyze_latent(rng.normal(size=(10, 2)), family="cauchy")
    with pytest.raises(InputDataError, match="`means` has shape"):
        analyze_latent(rng.normal(size=(10, 2)), means=np.zeros((9, 2)))
    with pytest.raises(InputDataError, match="non-finite"):
        analyze_latent(np.full((10, 2), np.nan))


def test_analyze_latent_reads_a_recorded_run(tmp_path, rng):
    import torch

    from weightstats.capture.latent import LatentRecorder
    from weightstats.capture.store import RunStore

    x = torch.as_tensor(rng.normal(size=(300, 4)), dtype=torch.float32)
    encoder = torch.nn.Linear(4, 4)  # outputs (mu, logvar) halves below
    with torch.no_grad():
        encoder.weight.copy_(torch.eye(4))
        encoder.bias.zero_()

    def encode(batch):
        h = encoder(batch)
        return {"mu": h[:, :2], "logvar": torch.full_like(h[:, :2], -4.0)}

    store = RunStore.create(tmp_path / "run", metadata={"vae": {"family": "gaussian"}})
    with store, LatentRecorder(encode, data=x, store=store, every_epoch=1, seed=0) as rec:
        rec.end_epoch(0)
        rec.end_epoch(1)
    res = analyze_latent(tmp_path / "run", n_permutations=20)
    s = res.summary.iloc[0]
    assert s["epoch"] == 1 and s["family"] == "gaussian" and s["latent_dim"] == 2
    assert s["active_units"] == 2  # mu = x[:, :2] has unit variance
    # z = mu + exp(-2) eps is close to N(0, I): per-unit KL of the posteriors is known
    expected_kl = 0.5 * (x[:, :2].double().pow(2).mean(0) + np.exp(-4.0) - 1 + 4.0)
    np.testing.assert_allclose(res.per_dim["kl_unit"], expected_kl.numpy(), rtol=1e-4)
    assert s["mmd_pvalue"] > 0.01
    with pytest.raises(InputDataError, match="was not recorded"):
        analyze_latent(tmp_path / "run", epoch=7)
