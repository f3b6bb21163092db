"""Numpy kernels shared by the normality battery and the effect sizes.

The battery sorts the sample once, standardises it once with the sample mean and the ``ddof=1``
standard deviation (the convention of ``scipy.stats.anderson`` and statsmodels' Lilliefors test),
and evaluates the normal tail probability once; Anderson-Darling, Cramér-von Mises,
Kolmogorov-Smirnov, Lilliefors, the tail-mass ratio, the Q-Q deviation and the Wasserstein
distance all reuse those arrays. Nothing here validates user data or imports pandas.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import special

__all__ = [
    "CVM_PVALUE_FLOOR",
    "GAUSSIAN_TAIL_MASS",
    "QQ_PROBS",
    "TAIL_Z",
    "Prepared",
    "anderson_pvalue_case3",
    "anderson_statistic",
    "cramervonmises_pvalue_case3",
    "cramervonmises_statistic",
    "ks_statistic",
    "prepare",
    "qq_max_deviation",
    "wasserstein1_to_normal",
]

#: |z| beyond which the tail-mass ratio counts values.
TAIL_Z = 3.0
#: P(|Z| > 3) for Z ~ N(0, 1), exactly 2 * norm.sf(3) = 0.0026997960632601866.
GAUSSIAN_TAIL_MASS = float(2.0 * special.ndtr(-TAIL_Z))
#: Upper bound reported for the Cramér-von Mises p-value when W*² >= 1.1 (nortest's 7.37e-10).
CVM_PVALUE_FLOOR = 7.37e-10
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


@dataclass(frozen=True)
class Prepared:
    """A sorted sample and everything derived from it once.

    Attributes
    ----------
    xs : ndarray
        Sorted float64 values.
    n : int
    mean, sd : float
        Sample mean and ``ddof=1`` standard deviation (``sd`` is 0.0 for constant data).
    m2, m3, m4 : float
        Biased central moments (divided by ``n``), as ``scipy.stats.skew``/``kurtosis`` use.
    z : ndarray or None
        ``(xs - mean) / sd``, sorted; None when ``sd`` is 0.
    cdf : ndarray or None
        ``Phi(z)``.
    tail : ndarray or None
        ``Phi(-|z|)``, the smaller tail probability, accurate far into both tails.
    """

    xs: np.ndarray
    n: int
    mean: float
    sd: float
    m2: float
    m3: float
    m4: float
    z: np.ndarray | None
    cdf: np.ndarray | None
    tail: np.ndarray | None
    cache: dict = field(default_factory=dict, repr=False, compare=False)


def prepare(xs: np.ndarray) -> Prepared:
    """Moments, standardised values and normal probabilities of an already sorted sample."""
    n = int(xs.size)
    mean = float(xs.mean())
    d = xs - mean
    d2 = d * d
    m2 = float(d2.mean())
    m3 = float(np.dot(d2, d) / n)
    m4 = float(np.dot(d2, d2) / n)
    sd = math.sqrt(m2 * n / (n - 1)) if n > 1 else 0.0
    # Treat numerically constant data as constant, as scipy.stats.skew does (its relative test).
    if sd == 0.0 or sd <= 1e-14 * max(abs(mean), np.finfo(float).tiny) or xs[0] == xs[-1]:
        return Prepared(xs, n, mean, 0.0, m2, m3, m4, None, None, None)
    # Buffers are reused with out= throughout: allocating a fresh 8 MB array costs about as
    # much as one pass of arithmetic over it (page faults), measured on 10^6 values.
    z = d
    z /= sd  # reuse d's buffer: d is not needed any more
    tail = d2  # and d2's
    np.abs(z, out=tail)
    np.negative(tail, out=tail)
    special.ndtr(tail, out=tail)
    k = int(np.searchsorted(z, 0.0))  # z is sorted: z[:k] < 0 <= z[k:]
    cdf = np.empty_like(z)
    cdf[:k] = tail[:k]
    np.subtract(1.0, tail[k:], out=cdf[k:])
    return Prepared(xs, n, mean, sd, m2, m3, m4, z, cdf, tail)


def _grid(prep: Prepared) -> np.ndarray:
    """``i / n`` for i = 1..n, computed once per prepared sample."""
    if "grid" not in prep.cache:
        g = np.arange(1.0, prep.n + 1.0)
        g /= prep.n
        prep.cache["grid"] = g
    return prep.cache["grid"]


def _gap(prep: Prepared) -> np.ndarray:
    """``e_i = i/n - F(z_i)``, shared by the KS, Cramér-von Mises and Wasserstein kernels."""
    if "gap" not in prep.cache:
        prep.cache["gap"] = _grid(prep) - prep.cdf
    return prep.cache["gap"]


def anderson_statistic(prep: Prepared) -> float:
    """Anderson-Darling A² against N(mean, sd), as ``scipy.stats.anderson(x, 'norm')``.

    ``A² = -n - sum_i (2i - 1)/n [log F(z_i) + log(1 - F(z_{n+1-i}))]``. Re-indexing the second
    term gives ``-n - (1/n) sum_i [w_i log F_i + (2n - w_i) log(1 - F_i)]`` with
    ``w_i = 2i - 1``, so no reversed copy is needed. log F and log(1 - F) come from the accurate
    tail probability ``t = Phi(-|z|)`` as ``log t`` and ``log1p(-t)`` (scipy's ``logcdf`` and
    ``logsf`` give the same values); ``log_ndtr`` is used only where ``t`` underflows.
    """
    n, tail, z = prep.n, prep.tail, prep.z
    with np.errstate(divide="ignore"):
        log_small = np.log(tail)
    under = tail < 1e-300
    if under.any():
        log_small[under] = special.log_ndtr(-np.abs(z[under]))
    log_large = np.negative(tail)
    np.log1p(log_large, out=log_large)
    w = _grid(prep) * (2.0 * n)
    w -= 1.0  # 2i - 1
    k = int(np.searchsorted(z, 0.0))  # below 0: F = t; from 0 on: 1 - F = t
    two_n = 2.0 * n
    total = (
        np.dot(w[:k], log_small[:k])
        + two_n * log_large[:k].sum()
        - np.dot(w[:k], log_large[:k])
        + np.dot(w[k:], log_large[k:])
        + two_n * log_small[k:].sum()
        - np.dot(w[k:], log_small[k:])
    )
    return float(-n - total / n)


def anderson_pvalue_case3(a2: float, n: int) -> float:
    """P-value of A² when mean and variance are estimated (Stephens' case 3).

    The statistic is modified to ``A*² = A²(1 + 0.75/n + 2.25/n²)`` and the p-value read from
    the piecewise exponential fit of D'Agostino & Stephens (1986), *Goodness-of-Fit
    Techniques*, Table 4.9 (as R's ``nortest::ad.test`` and ``statsmodels.stats.diagnostic.
    normal_ad``). As in statsmodels, ``A*² > 13`` gives 0.0 (the fit is below 5e-31 there).
    """
    a = a2 * (1.0 + 0.75 / n + 2.25 / n**2)
    if not math.isfinite(a):
        return math.nan
    if a < 0.2:
        return 1.0 - math.exp(-13.436 + 101.14 * a - 223.73 * a**2)
    if a < 0.34:
        return 1.0 - math.exp(-8.318 + 42.796 * a - 59.938 * a**2)
    if a < 0.6:
        return math.exp(0.9177 - 4.279 * a - 1.38 * a**2)
    if a <= 13:
        return math.exp(1.2937 - 5.709 * a + 0.0186 * a**2)
    return 0.0


def cramervonmises_statistic(prep: Prepared) -> float:
    """Cramér-von Mises W² against N(mean, sd), as ``scipy.stats.cramervonmises``.

    ``W² = 1/(12n) + sum_i ((2i - 1)/(2n) - F(z_i))² = 1/(12n) + sum_i (e_i - c)²`` with
    ``e_i = i/n - F_i`` and ``c = 1/(2n)``, expanded so the shared ``e`` is read only.
    """
    n = prep.n
    e = _gap(prep)
    c = 0.5 / n
    return float(1.0 / (12.0 * n) + np.dot(e, e) - 2.0 * c * e.sum() + n * c * c)


def cramervonmises_pvalue_case3(w2: float, n: int) -> float:
    """P-value of W² when mean and variance are estimated (Stephens' case 3).

    ``W*² = W²(1 + 0.5/n)`` and the piecewise fit of D'Agostino & Stephens (1986), Table 4.9
    (the formula of R's ``nortest::cvm.test``). Beyond ``W*² = 1.1`` the fit is not valid and, as
    in nortest, the bound :data:`CVM_PVALUE_FLOOR` (the fit's value at 1.1) is returned: the true
    p-value is smaller.
    """
    w = w2 * (1.0 + 0.5 / n)
    if not math.isfinite(w):
        return math.nan
    if w < 0.0275:
        p = 1.0 - math.exp(-13.953 + 775.5 * w - 12542.61 * w**2)
    elif w < 0.051:
        p = 1.0 - math.exp(-5.903 + 179.546 * w - 1515.29 * w**2)
    elif w < 0.092:
        p = math.exp(0.886 - 31.62 * w + 10.897 * w**2)
    elif w < 1.1:
        p = math.exp(1.111 - 34.242 * w + 12.832 * w**2)
    else:
        p = CVM_PVALUE_FLOOR
    return min(max(p, 0.0), 1.0)


def ks_statistic(prep: Prepared) -> float:
    """Two-sided Kolmogorov-Smirnov D against N(mean, sd), as ``scipy.stats.kstest``.

    ``D = max(max_i (i/n - F_i), max_i (F_i - (i-1)/n)) = max(max e, 1/n - min e)``.
    """
    e = _gap(prep)
    return max(float(e.max()), 1.0 / prep.n - float(e.min()))


def _g(t: np.ndarray | float, cdf, pdf):
    """Antiderivative of Phi: ``G(t) = t Phi(t) + phi(t)``."""
    return t * cdf + pdf


def wasserstein1_to_normal(prep: Prepared) -> float:
    """Exact W1 distance between the empirical law of z and N(0, 1).

    ``W1 = integral |F_n(t) - Phi(t)| dt``, computed in closed form piece by piece: on
    ``[z_i, z_{i+1}]`` the empirical CDF is ``i/n`` and ``integral Phi = G(t) = t Phi(t) +
    phi(t)``; a piece where ``i/n - Phi`` changes sign is split at ``Phi^{-1}(i/n)`` (those pieces
    are few, about sqrt(n)). The two unbounded ends contribute ``G(z_1)`` and
    ``phi(z_n) - z_n (1 - Phi(z_n))``. No quadrature or reference grid is involved.
    """
    z, cdf, n = prep.z, prep.cdf, prep.n
    pdf = np.multiply(z, z)
    pdf *= -0.5
    np.exp(pdf, out=pdf)
    pdf *= _INV_SQRT_2PI
    g = np.multiply(z, cdf)
    g += pdf
    level = _grid(prep)[:-1]  # F_n on (z_i, z_{i+1}), i = 1..n-1
    piece = np.diff(z)
    piece *= level
    dg = np.subtract(g[1:], g[:-1], out=pdf[: n - 1]) if n > 1 else pdf[:0]
    last_pdf = float(np.exp(-0.5 * z[-1] ** 2) * _INV_SQRT_2PI)
    piece -= dg  # integral of (i/n - Phi) over each piece
    e = _gap(prep)
    # i/n - Phi falls along a piece from e_i to e_{i+1} - 1/n: it changes sign inside iff
    # e_i > 0 > e_{i+1} - 1/n
    cross = e[:-1] > 0.0
    cross &= e[1:] < 1.0 / n
    np.abs(piece, out=piece)
    total = float(piece.sum())
    if cross.any():
        lv = level[cross]
        t = special.ndtri(lv)
        gt = _g(t, lv, np.exp(-0.5 * t * t) * _INV_SQRT_2PI)
        z0, z1 = z[:-1][cross], z[1:][cross]
        g0, g1 = g[:-1][cross], g[1:][cross]
        total -= float(np.sum(np.abs(lv * (z1 - z0) - (g1 - g0))))
        first = lv * (t - z0) - (gt - g0)  # >= 0
        second = lv * (z1 - t) - (g1 - gt)  # <= 0
        total += float(np.sum(np.abs(first) + np.abs(second)))
    total += float(g[0])  # integral_{-inf}^{z_1} Phi
    total += (
        last_pdf - float(z[-1] * prep.tail[-1])
        if z[-1] >= 0
        else (last_pdf - float(z[-1] * (1.0 - cdf[-1])))
    )  # integral_{z_n}^{inf} (1 - Phi)
    return total


#: Probabilities at which the Q-Q deviation is evaluated: 1001 points across the central 99 %.
QQ_PROBS = np.linspace(0.005, 0.995, 1001)
_QQ_NORMAL = special.ndtri(QQ_PROBS)


def qq_max_deviation(prep: Prepared) -> float:
    """Largest |empirical quantile of z - normal quantile| on :data:`QQ_PROBS`.

    Empirical quantiles use numpy's default ('linear', index ``(n - 1) p``) definition, read from
    the already sorted z.
    """
    z, n = prep.z, prep.n
    pos = (n - 1) * QQ_PROBS
    lo = np.floor(pos).astype(np.intp)
    hi = np.minimum(lo + 1, n - 1)
    frac = pos - lo
    q = z[lo] + frac * (z[hi] - z[lo])
    return float(np.max(np.abs(q - _QQ_NORMAL)))
