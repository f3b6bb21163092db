"""Tail index of each side of a sample, and whether its tail is a power law at all.

For each side the magnitudes beyond the median are used: the right tail is ``x - median`` for
``x > median``, the left tail is ``median - x`` for ``x < median``. On each side the method of
Clauset, Shalizi & Newman (2009), "Power-law distributions in empirical data", *SIAM Review*
51:661-703, is applied:

1. For a threshold ``xmin``, the continuous power-law MLE on the values ``y >= xmin`` is Hill's
   estimator, ``tail_index = n_tail / sum(log(y / xmin))`` (the survival exponent ``a`` in
   ``P(Y > y) ~ y^-a``; Clauset's density exponent is ``alpha = a + 1``, their eq. 3.1).
2. ``xmin`` minimises the Kolmogorov-Smirnov distance between the tail and the fitted power law
   (their section 3.3), searched over at most 200 order statistics, log-spaced among the largest
   15 % of the side (at least 10 values in the tail). The KS distance of every candidate is
   computed from cumulative sums of the sorted log-magnitudes.
3. The power law is compared with an exponential and a lognormal, both truncated at ``xmin`` and
   fitted by maximum likelihood to the same tail, by Vuong's test (their section 5, eq. 5.4):
   ``R = sum_i (log p_pl(y_i) - log p_alt(y_i))``, statistic ``R / (sd_i * sqrt(n_tail))``,
   two-sided normal p-value. ``R > 0`` with a small p-value favours the power law; ``R < 0``
   favours the alternative; a large p-value means the data cannot tell them apart.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize, special

from .._validation import as_sample
from ._core import check_int, check_positive

__all__ = ["TAIL_COLUMNS", "hill_estimator", "tail_summary"]

TAIL_COLUMNS = [
    "side",
    "n_side",
    "xmin",
    "n_tail",
    "tail_index",
    "tail_index_se",
    "ks_distance",
    "vs_lognormal_r",
    "vs_lognormal_statistic",
    "vs_lognormal_pvalue",
    "vs_exponential_r",
    "vs_exponential_statistic",
    "vs_exponential_pvalue",
    "note",
]
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def hill_estimator(y: Any, xmin: float) -> tuple[float, float, int]:
    """Hill / continuous power-law MLE of the tail index above `xmin`.

    Parameters
    ----------
    y : array_like
        Positive magnitudes; only those ``>= xmin`` are used.
    xmin : float
        The threshold (> 0).

    Returns
    -------
    (tail_index, standard_error, n_tail)
        ``tail_index = n_tail / sum(log(y / xmin))`` (Clauset et al. 2009, eq. 3.1, with
        ``alpha - 1 = tail_index``) and its asymptotic standard error
        ``tail_index / sqrt(n_tail)`` (their eq. 3.2, ``(alpha - 1) / sqrt(n)``).
    """
    arr = as_sample(y, name="y", min_size=1, allow_constant=True)
    xmin = check_positive(xmin, name="xmin")
    tail = arr[arr >= xmin]
    n_tail = int(tail.size)
    total = float(np.log(tail / xmin).sum()) if n_tail else 0.0
    if n_tail == 0 or total <= 0.0:
        return math.nan, math.nan, n_tail
    a = n_tail / total
    return a, a / math.sqrt(n_tail), n_tail


def _candidate_ks(logs_desc: np.ndarray, ks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Tail index and KS distance for every candidate tail size in `ks`.

    `logs_desc` holds the log-magnitudes sorted in decreasing order; the candidate with tail size
    ``k`` uses ``xmin = exp(logs_desc[k - 1])``. Its Hill estimate comes from a cumulative sum;
    its KS distance compares the empirical CDF of the tail, ``(k - j)/k`` and ``(k - j + 1)/k``
    at the ``j``-th largest value, with ``1 - exp(-a (log y - log xmin))``.
    """
    csum = np.cumsum(logs_desc)
    indices = np.empty(ks.size)
    dist = np.empty(ks.size)
    for c, k in enumerate(ks):
        lxmin = logs_desc[k - 1]
        total = csum[k - 1] - k * lxmin
        if total <= 0.0:
            indices[c] = dist[c] = math.nan
            continue
        a = k / total
        # survival of the fitted law at the j-th largest value, j = 1..k
        fitted_cdf = -np.expm1(-a * (logs_desc[:k] - lxmin))
        j = np.arange(1, k + 1)
        upper = (k - j + 1) / k  # empirical CDF at the value (inclusive)
        lower = (k - j) / k
        d = max(float(np.max(upper - fitted_cdf)), float(np.max(fitted_cdf - lower)))
        indices[c] = a
        dist[c] = d
    return indices, dist


def _vuong(ll_a: np.ndarray, ll_b: np.ndarray) -> tuple[float, float, float]:
    """Vuong's test of two non-nested models from pointwise log-likelihoods: (R, z, p)."""
    diff = ll_a - ll_b
    r = float(diff.sum())
    sd = float(diff.std())
    if not math.isfinite(r):
        return r, math.nan, math.nan
    if sd == 0.0:
        return r, 0.0, 1.0
    z = r / (sd * math.sqrt(diff.size))
    return r, z, float(special.erfc(abs(z) / math.sqrt(2.0)))


def _lognormal_truncated_fit(logs: np.ndarray, lxmin: float) -> tuple[float, float]:
    """MLE (mu, sigma) of a lognormal truncated to ``y >= xmin``, from sufficient statistics.

    The negative log-likelihood is ``sum(log y) + n log(sigma) + n/2 log(2 pi)
    + sum((log y - mu)^2) / (2 sigma^2) + n log(1 - Phi((log xmin - mu)/sigma))``.
    """
    n = logs.size
    s1 = float(logs.sum())
    m = s1 / n
    s2c = float(np.sum((logs - m) ** 2))  # centred, for stability

    def nll(theta: np.ndarray) -> float:
        mu, log_sigma = theta
        sigma = math.exp(log_sigma)
        quad = (s2c + n * (m - mu) ** 2) / (2.0 * sigma * sigma)
        log_norm = float(special.log_ndtr((mu - lxmin) / sigma))  # log(1 - Phi((lxmin-mu)/sd))
        return n * log_sigma + quad + n * log_norm

    start = np.array([m, math.log(max(math.sqrt(s2c / n), 1e-3))])
    res = optimize.minimize(
        nll, start, method="Nelder-Mead", options={"xatol": 1e-8, "fatol": 1e-10, "maxiter": 4000}
    )
    best = res.x
    # a second start from far below xmin, where a truncated lognormal mimics a power law
    res2 = optimize.minimize(
        nll,
        np.array([lxmin - 3.0, math.log(2.0)]),
        method="Nelder-Mead",
        options={"xatol": 1e-8, "fatol": 1e-10, "maxiter": 4000},
    )
    if res2.fun < res.fun:
        best = res2.x
    return float(best[0]), float(math.exp(best[1]))


def _side_row(
    side: str, y: np.ndarray, *, tail_fraction: float, max_candidates: int, min_tail: int
) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(TAIL_COLUMNS, math.nan)
    row.update(side=side, n_side=int(y.size), n_tail=0, note="")
    y = y[y > 0]
    k_max = math.floor(tail_fraction * y.size)
    if k_max < min_tail:
        row["note"] = (
            f"too few values beyond the median on this side ({y.size}); at least "
            f"{math.ceil(min_tail / tail_fraction)} are needed"
        )
        return row
    top = np.partition(y, y.size - k_max)[y.size - k_max :] if k_max < y.size else y
    logs_desc = np.log(np.sort(top)[::-1])
    ks = np.unique(np.geomspace(min_tail, k_max, num=max_candidates).round().astype(int))
    indices, dist = _candidate_ks(logs_desc, ks)
    if np.all(np.isnan(dist)):
        row["note"] = "the largest values are tied; no power-law fit"
        return row
    best = int(np.nanargmin(dist))
    k = int(ks[best])
    a = float(indices[best])
    lxmin = float(logs_desc[k - 1])
    xmin = math.exp(lxmin)
    logs = logs_desc[:k]
    tail = np.exp(logs)
    # pointwise log-densities on the tail
    ll_pl = math.log(a) - lxmin - (a + 1.0) * (logs - lxmin)
    excess = float(np.mean(tail - xmin))
    if not excess > 0:  # every tail value equals xmin (discrete or repeated values)
        row["note"] = "the largest values are tied at the threshold; no power-law fit"
        return row
    lam = 1.0 / excess
    ll_exp = math.log(lam) - lam * (tail - xmin)
    mu, sigma = _lognormal_truncated_fit(logs, lxmin)
    u = (logs - mu) / sigma
    ll_ln = (
        -logs
        - math.log(sigma)
        - _HALF_LOG_2PI
        - 0.5 * u * u
        - float(special.log_ndtr((mu - lxmin) / sigma))
    )
    r_ln, z_ln, p_ln = _vuong(ll_pl, ll_ln)
    r_ex, z_ex, p_ex = _vuong(ll_pl, ll_exp)
    row.update(
        xmin=xmin,
        n_tail=k,
        tail_index=a,
        tail_index_se=a / math.sqrt(k),
        ks_distance=float(dist[best]),
        vs_lognormal_r=r_ln,
        vs_lognormal_statistic=z_ln,
        vs_lognormal_pvalue=p_ln,
        vs_exponential_r=r_ex,
        vs_exponential_statistic=z_ex,
        vs_exponential_pvalue=p_ex,
        note=f"xmin chosen among {ks.size} candidates in the largest {tail_fraction:.0%}",
    )
    return row


def tail_summary(
    x: Any,
    *,
    tail_fraction: float = 0.15,
    max_candidates: int = 200,
    min_tail: int = 10,
    nan_policy: str = "raise",
) -> pd.DataFrame:
    """Hill tail index with a KS-chosen threshold, and power law vs lognormal/exponential.

    Parameters
    ----------
    x : array_like or torch.Tensor
        The sample; flattened.
    tail_fraction : float
        Largest share of each side searched for the threshold (default: 15 %).
    max_candidates : int
        Most thresholds tried per side (log-spaced tail sizes).
    min_tail : int
        Fewest values a tail may have.
    nan_policy : {'raise', 'omit'}

    Returns
    -------
    pandas.DataFrame
        Two rows, ``side`` = ``left`` and ``right``, with columns ``side, n_side, xmin, n_tail,
        tail_index, tail_index_se, ks_distance, vs_lognormal_r, vs_lognormal_statistic,
        vs_lognormal_pvalue, vs_exponential_r, vs_exponential_statistic,
        vs_exponential_pvalue, note``. ``xmin`` is a magnitude beyond the median.
        ``tail_index`` is the survival exponent ``a`` (a Gaussian tail has no finite one: the
        estimate grows with the threshold; Student t with nu degrees of freedom has ``a = nu``);
        ``tail_index_se = a / sqrt(n_tail)``. ``vs_*_r > 0`` favours the power law. A side with
        too few values gives NaN numbers and a note.

    Notes
    -----
    See the module docstring for the method and its reference (Clauset, Shalizi & Newman 2009).
    The lognormal alternative is fitted with two Nelder-Mead starts (the moments of the tail,
    and a location far below ``xmin``, where the truncated lognormal imitates a power law).

    Examples
    --------
    >>> import numpy as np
    >>> from weightstats.stats.tails import tail_summary
    >>> x = np.random.default_rng(0).standard_t(3, size=100_000)
    >>> table = tail_summary(x)
    >>> list(table["side"])
    ['left', 'right']
    """
    tail_fraction = check_positive(tail_fraction, name="tail_fraction", upper=1.0)
    max_candidates = check_int(max_candidates, name="max_candidates", minimum=1)
    min_tail = check_int(min_tail, name="min_tail", minimum=3)
    arr = as_sample(x, name="x", min_size=1, nan_policy=nan_policy, allow_constant=True)
    med = float(np.median(arr))
    rows = [
        _side_row(
            "left",
            med - arr[arr < med],
            tail_fraction=tail_fraction,
            max_candidates=max_candidates,
            min_tail=min_tail,
        ),
        _side_row(
            "right",
            arr[arr > med] - med,
            tail_fraction=tail_fraction,
            max_candidates=max_candidates,
            min_tail=min_tail,
        ),
    ]
    return pd.DataFrame(rows, columns=TAIL_COLUMNS)
