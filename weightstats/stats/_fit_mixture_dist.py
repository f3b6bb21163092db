"""A frozen one-dimensional Gaussian mixture distribution with scipy-like methods.

Re-exported by :mod:`weightstats.stats.mixture`; kept here so that module stays about fitting.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import special

from ._core import LOG_2PI, as_generator

__all__ = ["GaussianMixtureDist"]


class GaussianMixtureDist:
    """A frozen one-dimensional Gaussian mixture with scipy-like methods.

    Parameters
    ----------
    weights, means, sds : array_like
        Component weights (summing to one), means and standard deviations.

    Notes
    -----
    ``scipy.stats.Mixture`` (scipy >= 1.15) exists but exposes ``sample``/``variance`` rather than
    the ``rvs``/``var`` of frozen scipy distributions, so this small class keeps one interface
    for every family ``FitResult.dist()`` returns.
    """

    def __init__(self, weights: Any, means: Any, sds: Any) -> None:
        self.weights = np.asarray(weights, dtype=np.float64).copy()
        self.means = np.asarray(means, dtype=np.float64).copy()
        self.sds = np.asarray(sds, dtype=np.float64).copy()
        for arr in (self.weights, self.means, self.sds):
            arr.setflags(write=False)

    def __repr__(self) -> str:
        return (
            f"GaussianMixtureDist(weights={np.array2string(self.weights, precision=4)}, "
            f"means={np.array2string(self.means, precision=4)}, "
            f"sds={np.array2string(self.sds, precision=4)})"
        )

    def _component_logpdf(self, x: np.ndarray) -> np.ndarray:
        z = (x[..., None] - self.means) / self.sds
        return np.log(self.weights) - np.log(self.sds) - 0.5 * LOG_2PI - 0.5 * z * z

    def logpdf(self, x: Any) -> np.ndarray:
        """Log-density at `x` (computed by log-sum-exp over components)."""
        x = np.asarray(x, dtype=np.float64)
        return special.logsumexp(self._component_logpdf(x), axis=-1)

    def pdf(self, x: Any) -> np.ndarray:
        """Density at `x`."""
        return np.exp(self.logpdf(x))

    def cdf(self, x: Any) -> np.ndarray:
        """Cumulative distribution function at `x`."""
        x = np.asarray(x, dtype=np.float64)
        return (special.ndtr((x[..., None] - self.means) / self.sds) * self.weights).sum(-1)

    def sf(self, x: Any) -> np.ndarray:
        """Survival function ``1 - cdf`` at `x`, accurate in the upper tail."""
        x = np.asarray(x, dtype=np.float64)
        return (special.ndtr((self.means - x[..., None]) / self.sds) * self.weights).sum(-1)

    def ppf(self, q: Any) -> np.ndarray:
        """Quantile function, by vectorised bisection on the cdf (to ~1e-12 relative)."""
        q = np.asarray(q, dtype=np.float64)
        lo = np.full(q.shape, np.min(self.means - 40 * self.sds))
        hi = np.full(q.shape, np.max(self.means + 40 * self.sds))
        for _ in range(100):
            mid = 0.5 * (lo + hi)
            below = self.cdf(mid) < q
            lo = np.where(below, mid, lo)
            hi = np.where(below, hi, mid)
        out = 0.5 * (lo + hi)
        out = np.where(q <= 0, -np.inf, out)
        return np.where(q >= 1, np.inf, out)

    def mean(self) -> float:
        """Mixture mean."""
        return float(np.dot(self.weights, self.means))

    def var(self) -> float:
        """Mixture variance (law of total variance)."""
        m = self.mean()
        return float(np.dot(self.weights, self.sds**2 + (self.means - m) ** 2))

    def std(self) -> float:
        """Mixture standard deviation."""
        return math.sqrt(self.var())

    def rvs(self, size: Any = 1, random_state: Any = None) -> np.ndarray:
        """Draw values; `random_state` is None, a seed or a numpy Generator."""
        gen = as_generator(random_state)
        comp = gen.choice(self.weights.size, size=size, p=self.weights)
        return gen.normal(self.means[comp], self.sds[comp])
