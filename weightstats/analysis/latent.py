"""Is a VAE's aggregate posterior q(z) = E_x q(z|x) the prior it was trained towards?

:func:`analyze_latent` compares codes from a trained encoder (a recorded run directory, or
arrays) with the prior, and returns two tidy tables:

* per dimension: mean, sd, normality effect sizes (:func:`weightstats.stats.normality.effect_sizes`,
  Euclidean latents), a KS test of the marginal against the prior's marginal (two-sample
  against prior draws for the mixture prior), the variance of
  the posterior means across x and whether the unit is active (Burda et al. 2015), and the mean
  KL of that unit when the posterior log-variances are known (collapsed units have ~0);
* one summary row: active units, MMD^2 to prior draws with a permutation p-value, two
  estimates of KL(q(z) || p(z)) (k-NN on samples; the moment-matched Gaussian one for
  Euclidean latents), covariance against the prior's (largest off-diagonal, eigenvalue
  spread) and, for spherical latents, the Rayleigh test of uniformity instead of normality.

Priors by family: ``gaussian`` and ``m2`` N(0, I); ``student_t`` independent t_df(0, 1);
``mixture`` the learned Gaussian mixture (its parameters are in the run's manifest);
``vmf`` and ``power_spherical`` uniform on S^{d-1}.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from ..errors import DegenerateDataWarning, InputDataError
from ..stats.normality import effect_sizes
from ..vae import metrics as M

__all__ = ["LATENT_FAMILIES", "LatentAnalysis", "analyze_latent", "prior_sampler"]

LATENT_FAMILIES = ("gaussian", "student_t", "mixture", "m2", "vmf", "power_spherical")
_SPHERICAL = frozenset({"vmf", "power_spherical"})

PER_DIM_COLUMNS = [
    "dim", "n", "mean", "sd", "skewness", "excess_kurtosis", "wasserstein1", "tail_mass_ratio",
    "ks_statistic", "ks_pvalue", "mean_variance", "active", "kl_unit",
]


@dataclass(frozen=True)
class LatentAnalysis:
    """Aggregate posterior against the prior.

    Attributes
    ----------
    family : str
        Latent family (sets the prior).
    summary : pandas.DataFrame
        One row: ``family, epoch, n, latent_dim, active_units, collapsed, mmd2, mmd_pvalue,
        mmd_bandwidth, kl_knn, kl_gaussian_moments, max_abs_offdiag, max_abs_offdiag_corr,
        eig_min, eig_max, eig_spread, rayleigh_statistic, rayleigh_pvalue, source``.
    per_dim : pandas.DataFrame
        One row per latent dimension, columns :data:`PER_DIM_COLUMNS`.
    """

    family: str
    summary: pd.DataFrame
    per_dim: pd.DataFrame

    def to_dict(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "summary": self.summary.to_dict(orient="records")[0],
            "per_dim": self.per_dim.to_dict(orient="records"),
        }

    def __repr__(self) -> str:
        s = self.summary.iloc[0]
        return (
            f"LatentAnalysis(family={self.family!r}, latent_dim={int(s['latent_dim'])}, "
            f"n={int(s['n'])}, active_units={int(s['active_units'])}, "
            f"mmd2={s['mmd2']:.4g} (p={s['mmd_pvalue']:.3g}), kl_knn={s['kl_knn']:.4g})"
        )


def prior_sampler(family: str, latent_dim: int, prior: Mapping[str, Any] | None = None):
    """A function ``draw(n, rng) -> (n, latent_dim) array`` of prior samples for `family`.

    `prior` holds the family's parameters: ``{'df': 3}`` for ``student_t``;
    ``{'weights': [...], 'means': [[...]], 'scales': [[...]]}`` for ``mixture``.
    """
    prior = dict(prior or {})
    d = int(latent_dim)
    if family in ("gaussian", "m2"):
        return lambda n, rng: rng.standard_normal((n, d))
    if family == "student_t":
        df = float(prior.get("df", 3.0))
        return lambda n, rng: rng.standard_t(df, (n, d))
    if family in _SPHERICAL:
        return lambda n, rng: M.uniform_sphere_sample(n, d, rng=rng)
    if family == "mixture":
        try:
            w = np.asarray(prior["weights"], float)
            mu = np.asarray(prior["means"], float).reshape(len(w), d)
            sd = np.asarray(prior["scales"], float).reshape(len(w), d)
        except (KeyError, ValueError, TypeError):
            raise InputDataError(
                "the mixture prior needs `prior` = {'weights', 'means', 'scales'} matching "
                f"latent_dim={d}; got keys {sorted(prior)}."
            ) from None

        def draw(n: int, rng: np.random.Generator) -> np.ndarray:
            k = rng.choice(len(w), size=n, p=w / w.sum())
            return mu[k] + sd[k] * rng.standard_normal((n, d))

        return draw
    raise InputDataError(f"`family` must be one of {list(LATENT_FAMILIES)}; got {family!r}.")


def _marginal_cdf(family: str, d: int, prior: Mapping[str, Any]):
    """The prior's one-dimensional marginal CDF (None when only samples are available)."""
    if family in ("gaussian", "m2"):
        return stats.norm.cdf
    if family == "student_t":
        return stats.t(float(prior.get("df", 3.0))).cdf
    if family in _SPHERICAL:
        # a coordinate u of a uniform point on S^{d-1}: (u + 1) / 2 ~ Beta((d-1)/2, (d-1)/2)
        beta = stats.beta((d - 1) / 2, (d - 1) / 2)
        return lambda u: beta.cdf((np.asarray(u) + 1) / 2)
    return None


def _load_run(source: Any, epoch: int | None):
    from ..capture.store import RunStore

    store = source if isinstance(source, RunStore) else RunStore.open(source)
    epochs = store.latent_epochs()
    if not epochs:
        raise InputDataError(
            f"run {store.path!r} has no recorded latents; attach a LatentRecorder when training."
        )
    if epoch is None:
        epoch = epochs[-1]
    elif epoch not in epochs:
        raise InputDataError(f"`epoch` {epoch} was not recorded; recorded epochs: {epochs}.")
    tensors = {k: v.detach().double().numpy() for k, v in store.latents(epoch).items()}
    # what `weightstats vae compare` wrote: manifest user.vae at creation, recorders.vae after
    # training (with the learned prior); either may be absent in other runs
    info = dict((store.manifest.get("user") or {}).get("vae") or {})
    info.update((store.manifest.get("recorders") or {}).get("vae") or {})
    return tensors, info, int(epoch), store.path


def analyze_latent(
    source: Any,
    *,
    family: str | None = None,
    epoch: int | None = None,
    means: Any = None,
    logvar: Any = None,
    prior: Mapping[str, Any] | None = None,
    prior_samples: Any = None,
    max_samples: int = 1000,
    n_permutations: int = 200,
    threshold: float = 0.01,
    rng: np.random.Generator | int | None = 0,
) -> LatentAnalysis:
    """Compare a VAE's aggregate posterior with its prior.

    Parameters
    ----------
    source : path, RunStore or array_like
        A run directory written with a :class:`~weightstats.capture.latent.LatentRecorder`
        (its manifest's ``user.vae`` entry names the family and prior), or codes z of shape
        (n, d) drawn from q(z|x) for n examples x.
    family : str, optional
        One of :data:`LATENT_FAMILIES`; read from the run when omitted, else ``'gaussian'``.
    epoch : int, optional
        Recorded epoch to analyse (default: the last).
    means : array_like, optional
        Posterior means E_q[z|x] (n, d) for active units; from the run's ``mu`` when recorded.
    logvar : array_like, optional
        Posterior log-variances (Gaussian posteriors) for the per-unit KL; from the run.
    prior : mapping, optional
        Prior parameters (see :func:`prior_sampler`); from the run when omitted.
    prior_samples : array_like, optional
        Draws from the prior to compare with, instead of drawing them here.
    max_samples : int
        Codes (and prior draws) used by the MMD test; the rest of the analysis uses all codes.
    n_permutations : int
        Permutations of the MMD p-value.
    threshold : float
        Active-unit threshold on Cov_x(E_q[z|x]) (Burda et al. 2015 use 0.01).
    rng : numpy.random.Generator or int, optional
        Source of prior draws, subsampling and permutations (seeded by default).

    Returns
    -------
    LatentAnalysis
    """
    epoch_out: float = np.nan
    where = "array"
    info: dict[str, Any] = {}
    from ..capture.store import RunStore

    if isinstance(source, (str, os.PathLike, RunStore)):
        tensors, info, epoch_out, where = _load_run(source, epoch)
        if "z" in tensors:
            source = tensors["z"]
        elif "mu" in tensors:
            source = tensors["mu"]
            warnings.warn(
                "the run recorded no posterior draws `z`; analysing the posterior means `mu`, "
                "whose spread understates q(z)'s.",
                DegenerateDataWarning,
                stacklevel=2,
            )
        else:
            raise InputDataError(f"run {where!r} recorded neither `z` nor `mu` latents.")
        means = tensors.get("mu") if means is None else means
        logvar = tensors.get("logvar") if logvar is None else logvar
    family = family or info.get("family") or "gaussian"
    if family not in LATENT_FAMILIES:
        raise InputDataError(f"`family` must be one of {list(LATENT_FAMILIES)}; got {family!r}.")
    prior = dict(prior if prior is not None else info.get("prior") or {})
    z = M.as_codes(source, name="z", min_rows=4)
    n, d = z.shape
    spherical = family in _SPHERICAL
    if spherical and d < 2:
        raise InputDataError(f"spherical latents need at least 2 columns; `z` has {d}.")
    gen = np.random.default_rng(rng)
    if prior_samples is None:
        p_draws = prior_sampler(family, d, prior)(max(n, max_samples), gen)
    else:
        p_draws = M.as_codes(prior_samples, name="prior_samples")
        if p_draws.shape[1] != d:
            raise InputDataError(
                f"`prior_samples` has {p_draws.shape[1]} columns; `z` has {d}."
            )
    mu = None if means is None else M.as_codes(means, name="means")
    if mu is not None and mu.shape != z.shape:
        raise InputDataError(f"`means` has shape {mu.shape}; `z` has {z.shape}.")

    per_dim = _per_dim(z, mu, logvar, family, prior, threshold, spherical, p_draws)
    n_active = int(per_dim["active"].sum()) if mu is not None else -1

    sub_z = z[gen.permutation(n)[:max_samples]]
    sub_p = p_draws[gen.permutation(len(p_draws))[:max_samples]]
    bandwidth = M.median_bandwidth(sub_z, sub_p)
    mmd = M.mmd_test(sub_z, sub_p, bandwidth=bandwidth, n_permutations=n_permutations, rng=gen)
    kl_knn = M.knn_kl_divergence(z, p_draws, intrinsic_dim=d - 1 if spherical else None)
    if spherical:
        cov = M.covariance_summary(z * np.sqrt(d))  # uniform on S^{d-1} has covariance I/d
        ray = M.rayleigh_test(z)
        kl_moment, ray_stat, ray_p = np.nan, ray.statistic, ray.pvalue
    else:
        scale = 1.0
        if family == "student_t" and float(prior.get("df", 3.0)) > 2:
            df = float(prior.get("df", 3.0))
            scale = np.sqrt((df - 2) / df)  # t_df has variance df / (df - 2)
        cov = M.covariance_summary(z * scale)
        kl_moment = M.gaussian_kl_to_standard(z) if family in ("gaussian", "m2") else np.nan
        ray_stat = ray_p = np.nan
    summary = pd.DataFrame(
        [
            {
                "family": family,
                "epoch": epoch_out,
                "n": n,
                "latent_dim": d,
                "active_units": n_active,
                "collapsed": bool(n_active == 0),
                "mmd2": mmd.statistic,
                "mmd_pvalue": mmd.pvalue,
                "mmd_bandwidth": bandwidth,
                "kl_knn": kl_knn,
                "kl_gaussian_moments": kl_moment,
                **cov,
                "rayleigh_statistic": ray_stat,
                "rayleigh_pvalue": ray_p,
                "source": str(where),
            }
        ]
    )
    return LatentAnalysis(family, summary, per_dim)


def _per_dim(z, mu, logvar, family, prior, threshold, spherical, p_draws) -> pd.DataFrame:
    n, d = z.shape
    cdf = _marginal_cdf(family, d, prior)
    variances = M.active_units(mu, threshold=threshold)[1] if mu is not None else np.full(d, np.nan)
    kl_unit = np.full(d, np.nan)
    if logvar is not None and mu is not None and family in ("gaussian", "m2", "mixture"):
        lv = M.as_codes(logvar, name="logvar")
        if lv.shape == mu.shape and family != "mixture":
            kl_unit = 0.5 * (mu**2 + np.exp(lv) - 1.0 - lv).mean(axis=0)
    rows = []
    for j in range(d):
        col = z[:, j]
        row = {"dim": j, "n": n, "mean": float(col.mean()), "sd": float(col.std(ddof=1))}
        if not spherical and col.min() < col.max():
            e = effect_sizes(col)
            row.update(
                skewness=e.skewness,
                excess_kurtosis=e.excess_kurtosis,
                wasserstein1=e.wasserstein1,
                tail_mass_ratio=e.tail_mass_ratio,
            )
        else:
            row.update(skewness=np.nan, excess_kurtosis=np.nan, wasserstein1=np.nan,
                       tail_mass_ratio=np.nan)
        # one-sample KS against the prior's marginal, or two-sample against prior draws when
        # the marginal has no closed form (the learned mixture prior)
        ks = stats.kstest(col, cdf) if cdf is not None else stats.ks_2samp(col, p_draws[:, j])
        row.update(ks_statistic=float(ks.statistic), ks_pvalue=float(ks.pvalue))
        row.update(
            mean_variance=float(variances[j]),
            active=bool(variances[j] > threshold) if mu is not None else False,
            kl_unit=float(kl_unit[j]),
        )
        rows.append(row)
    return pd.DataFrame(rows, columns=PER_DIM_COLUMNS)
