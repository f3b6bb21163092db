"""The statistics the checkpoint figures overlay, taken from the statistics engine.

One place that knows which engine functions the report draws (fits, the BIC-selected Gaussian
mixture, the Clauset-Hill tails), so the section module stays about layout. Nothing here
computes a statistic itself.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import special

from ...errors import ConvergenceWarning
from ...stats.fit import FitResult, fit
from ...stats.mixture import MixtureFit, select_gaussian_mixture
from ...stats.tails import tail_summary

__all__ = ["fit_family", "mixture", "tail_sides"]


def fit_family(x: np.ndarray, family: str, rng: np.random.Generator) -> FitResult:
    """Maximum-likelihood fit of `family` (``weightstats.stats.fit.fit``)."""
    return fit(x, family, rng=rng)


def mixture(x: np.ndarray, rng: np.random.Generator) -> MixtureFit:
    """Gaussian mixture with K in 1..4 chosen by BIC, with the analysis's EM settings."""
    from ...analysis.checkpoint import MIXTURE_OPTIONS

    with warnings.catch_warnings():
        # as in the analysis: a capped EM is fine for an overlay; `converged` goes to the JSON
        warnings.simplefilter("ignore", ConvergenceWarning)
        return select_gaussian_mixture(x, k_max=4, rng=rng, **MIXTURE_OPTIONS)


def tail_sides(
    x: np.ndarray, loc: float, scale: float
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Each side's magnitudes beyond the median, its power-law tail and the normal's survival.

    Returns
    -------
    sides : list of dict
        ``label``, ``y`` (magnitudes beyond the median, > 0), ``tail`` (``(tail_index, xmin,
        P(Y >= xmin))`` from :func:`weightstats.stats.tails.tail_summary`, or None) and
        ``normal_sf`` (``t -> P(Y > t)`` on that side under the fitted normal ``loc, scale``).
    values : dict
        The tail table's numbers per side, for the JSON export.
    """
    table = tail_summary(x)
    med = float(np.median(x))
    sides, values = [], {}
    for _, row in table.iterrows():
        side = str(row["side"])
        y = (x[x > med] - med) if side == "right" else (med - x[x < med])
        a, u = float(row["tail_index"]), float(row["xmin"])
        tail = None
        if math.isfinite(a) and a > 0 and math.isfinite(u) and u > 0 and y.size:
            tail = (a, u, float(np.count_nonzero(y >= u)) / y.size)
        sides.append(
            {"label": side, "y": y, "tail": tail, "normal_sf": _side_sf(side, med, loc, scale)}
        )
        values[side] = {
            "tail_index": a,
            "xmin": u,
            "n_tail": int(row["n_tail"]),
            "vs_lognormal_r": float(row["vs_lognormal_r"]),
            "vs_lognormal_pvalue": float(row["vs_lognormal_pvalue"]),
        }
    return sides, values


def _side_sf(side: str, med: float, loc: float, scale: float) -> Callable[[np.ndarray], np.ndarray]:
    """Survival of the magnitude beyond the median on one side, for N(loc, scale^2)."""
    z0 = (med - loc) / scale
    if side == "right":
        base = special.ndtr(-z0)
        return lambda t: special.ndtr(-(z0 + np.asarray(t) / scale)) / base
    base = special.ndtr(z0)
    return lambda t: special.ndtr(z0 - np.asarray(t) / scale) / base
