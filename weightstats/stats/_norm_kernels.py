"""Numpy kernels shared by the normality battery and the effect sizes.

The battery sorts the sample once and standardises it once, in place, with the sample mean and
the ``ddof=1`` standard deviation (the convention of ``scipy.stats.anderson`` and statsmodels'
Lilliefors test). Then one blocked pass (:func:`scan`) evaluates the normal tail probability
``t = Phi(-|z|)`` of every value once and feeds it, while it is still in cache, to
Anderson-Darling, to the gap ``e_i = i/n - Phi(z_i)`` behind Kolmogorov-Smirnov, Lilliefors and
Cramér-von Mises, and to the sign changes the Wasserstein distance needs. Nothing here validates
user data or imports pandas.

Where the time goes (10^6 sorted values, best CPU time of 15-41 repeats on the 2-core
development machine, where one ``np.sort`` of the float32 input takes 2.6-2.8 ms):
``scipy.special.ndtr`` 3.8-4.3 ms, ``special.erfcx`` 2.5 ms, ``np.log`` 0.55-0.85 ms,
``np.exp`` 0.6 ms, ``np.log1p`` 0.7-0.8 ms, any other elementwise pass or reduction 0.1-0.3 ms,
and 1.2 ms (up to 5 ms under load) of page faults for every fresh 8 MB array. Hence:

- The tail comes from ``erfcx`` and one ``exp``, not ``ndtr`` (see :func:`scan`).
- Sums of products use ``np.einsum('i,i', a, b)`` (0.28 ms), never ``np.dot``: the latter goes
  to the multithreaded OpenBLAS, whose threads must be woken on every call; measured 8-17 ms per
  call on the loaded machine (0.06 ms only when called back to back).
- No array of ``n`` values is allocated after the standardised sample itself: the tail
  probabilities, the Anderson-Darling logarithms and the gap live in three scratch blocks of
  :data:`BLOCK` values (512 KB each, cache-resident) that are reused block after block.
- No array is reversed: the Anderson-Darling sum is rewritten with symmetric ("tent") weights.
- The Wasserstein distance needs the normal CDF and density only at the few points where the
  empirical CDF crosses ``Phi`` (about ``sqrt(n)`` of them), not at every value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import special

__all__ = [
    "BLOCK",
    "CVM_PVALUE_FLOOR",
    "GAUSSIAN_TAIL_MASS",
    "QQ_PROBS",
    "TAIL_Z",
    "Prepared",
    "anderson_pvalue_case3",
    "anderson_statistic",
    "cramervonmises_pvalue_case3",
    "cramervonmises_statistic",
    "ks_pvalue_known",
    "ks_statistic",
    "prepare",
    "qq_max_deviation",
    "scan",
    "wasserstein1_to_normal",
]

#: |z| beyond which the tail-mass ratio counts values.
TAIL_Z = 3.0
#: P(|Z| > 3) for Z ~ N(0, 1), exactly 2 * norm.sf(3) = 0.0026997960632601866.
GAUSSIAN_TAIL_MASS = float(2.0 * special.ndtr(-TAIL_Z))
#: Upper bound reported for the Cramér-von Mises p-value when W*² >= 1.1 (nortest's 7.37e-10).
CVM_PVALUE_FLOOR = 7.37e-10
#: Values per block of the blocked passes: 512 KB of float64 per scratch array. 10^6 values
#: take 16 blocks, about 0.3 ms of Python overhead in all.
BLOCK = 1 << 16
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT1_2 = math.sqrt(0.5)
_LN2 = math.log(2.0)


def _sum_of_products(a: np.ndarray, b: np.ndarray) -> float:
    """``sum(a * b)`` in one pass without BLAS (see the module docstring for why)."""
    return float(np.einsum("i,i", a, b))


@dataclass(frozen=True)
class Prepared:
    """A sorted, standardised sample and everything derived from it once.

    Attributes
    ----------
    n : int
    mean, sd : float
        Sample mean and ``ddof=1`` standard deviation (``sd`` is 0.0 for constant data).
    m2, m3, m4 : float
        Biased central moments (divided by ``n``), as ``scipy.stats.skew``/``kurtosis`` use.
    z : ndarray or None
        ``(x - mean) / sd``, sorted; None when ``sd`` is 0. Every statistic computed from it is
        invariant under ``x -> a x + b`` (a > 0), so the original values are not kept.
    k : int
        Number of negative ``z`` (``z[:k] < 0 <= z[k:]``); 0 when ``z`` is None.
    cache : dict
        Results of :func:`scan` and of the statistics, computed on first use.
    """

    n: int
    mean: float
    sd: float
    m2: float
    m3: float
    m4: float
    z: np.ndarray | None
    k: int = 0
    cache: dict = field(default_factory=dict, repr=False, compare=False)


def prepare(xs: np.ndarray, *, overwrite_input: bool = False) -> Prepared:
    """Moments and standardised values of an already sorted float64 sample.

    With ``overwrite_input=True`` the standardised values are written over `xs` (the caller
    owns it), which saves a fresh array of ``n`` values (page faults, see the module
    docstring). The squared deviations for ``m3`` and ``m4`` are formed block by block.
    """
    n = int(xs.size)
    mean = float(xs.mean())
    first, last = xs[0], xs[-1]
    d = np.subtract(xs, mean, out=xs if overwrite_input else None)
    m2 = m3 = m4 = 0.0
    sq = np.empty(min(n, BLOCK))
    for a in range(0, n, BLOCK):
        db = d[a : a + BLOCK]
        sb = np.multiply(db, db, out=sq[: db.size])
        m2 += float(sb.sum())  # pairwise within a block, as np.mean in scipy.stats.skew
        m3 += _sum_of_products(sb, db)
        m4 += _sum_of_products(sb, sb)
    m2, m3, m4 = m2 / n, m3 / n, m4 / n
    sd = math.sqrt(m2 * n / (n - 1)) if n > 1 else 0.0
    # Treat numerically constant data as constant, as scipy.stats.skew does (its relative test).
    if sd == 0.0 or sd <= 1e-14 * max(abs(mean), np.finfo(float).tiny) or first == last:
        return Prepared(n, mean, 0.0, m2, m3, m4, None)
    z = d
    z /= sd  # d's buffer: d is not needed any more
    return Prepared(n, mean, sd, m2, m3, m4, z, int(np.searchsorted(z, 0.0)))


def _tent_sums(s: np.ndarray, kb: int, a: int, n: int, ramp: np.ndarray) -> tuple[float, float]:
    """``(sum s, sum w s)`` over a block starting at 0-based index `a` whose first `kb` values
    lie below the split, with the tent weights ``w = j + 1`` below and ``n - j`` above.

    The weights are never formed: ``sum (c + r) s_r = c sum s + sum r s_r`` with one fixed
    ``ramp = 0, 1, 2, ...`` for every block.
    """
    total = weighted = 0.0
    if kb:
        low = s[:kb]
        sl = float(low.sum())
        total += sl
        weighted += (a + 1.0) * sl + _sum_of_products(ramp[:kb], low)
    if kb < s.size:
        up = s[kb:]
        su = float(up.sum())
        total += su
        weighted += float(n - a - kb) * su - _sum_of_products(ramp[: up.size], up)
    return total, weighted


def scan(prep: Prepared, *, anderson: bool = True, gap: bool = True) -> None:
    """One blocked pass over ``z`` that computes what the tests and W1 need (results cached).

    For each block, the log tail probability ``L = log Phi(-|z|)`` and the tail ``t = exp(L)``
    come from the scaled complementary error function: with ``u = |z| / sqrt(2)``,
    ``Phi(-|z|) = erfc(u) / 2 = exp(-u²) erfcx(u) / 2``, so ``L = log erfcx(u) - u² - log 2``
    exactly, in both tails, with no underflow (``log(ndtr)`` fails beyond ``|z| = 37``, where
    ``special.log_ndtr`` was needed). ``scipy.special.erfcx`` costs 2.4 ms per 10^6 values
    against 4.3 ms for ``special.ndtr``, and ``L`` is needed by Anderson-Darling anyway (so the
    ``log`` is not extra); measured 0.5-1 ms less per 10^6 values than ``ndtr`` then ``log``.
    The relative error of ``t`` is about ``u² eps`` (2e-14 at ``|z| = 10``), as in the
    ``exp(-u²)`` inside scipy's own ``erfc``. Then

    - ``anderson``: ``M = log1p(-t)``, ``D = L - M`` and the sums of :func:`anderson_statistic`;
    - ``gap``: ``e_i = i/n - Phi(z_i)``, computed as ``i/n - t_i`` below the split and
      ``t_i - (n - i)/n`` above it (no ``1 - t`` is rounded); its max, min, sum and sum of
      squares (KS, Cramér-von Mises) and the indices where ``F_n - Phi`` may change sign
      (:func:`wasserstein1_to_normal`).

    Parts already in ``prep.cache`` are not recomputed.
    """
    anderson = anderson and "ad_sums" not in prep.cache
    gap = gap and "gap_sums" not in prep.cache
    if not (anderson or gap):
        return
    n, z, k = prep.n, prep.z, prep.k
    size = min(n, BLOCK)
    u_buf, l_buf, s_buf = np.empty(size), np.empty(size), np.empty(size)
    above_buf, near_buf, both_buf = (np.empty(size, dtype=bool) for _ in range(3))
    ramp = np.arange(float(size))
    ramp_n = ramp / n
    inv_n = 1.0 / n
    sum_m = sum_d = w_d = 0.0
    e_max, e_min, e_sum, e_sq = -math.inf, math.inf, 0.0, 0.0
    jumps, inners = [], []
    prev_above = False
    for a in range(0, n, size):
        b = min(a + size, n)
        m, kb = b - a, min(max(k - a, 0), b - a)  # block length, negatives in the block
        zb, ub, lb, sb = z[a:b], u_buf[:m], l_buf[:m], s_buf[:m]
        np.multiply(zb[:kb], -_SQRT1_2, out=ub[:kb])
        np.multiply(zb[kb:], _SQRT1_2, out=ub[kb:])  # u = |z| / sqrt(2)
        special.erfcx(ub, out=lb)
        np.log(lb, out=lb)
        ub *= ub
        lb -= ub
        lb -= _LN2  # L = log Phi(-|z|)
        tb = np.exp(lb, out=ub)  # t = Phi(-|z|)
        if anderson:
            np.negative(tb, out=sb)
            np.log1p(sb, out=sb)  # M = log(1 - t)
            sum_m += float(sb.sum())
            np.subtract(lb, sb, out=sb)  # D = L - M <= 0: one weighted sum instead of two
            sd, wd = _tent_sums(sb, kb, a, n, ramp)
            sum_d += sd
            w_d += wd
        if gap:
            np.add(ramp_n[:kb], (a + 1.0) * inv_n, out=sb[:kb])
            sb[:kb] -= tb[:kb]  # (j + 1)/n - t
            np.add(tb[kb:], ramp_n[: m - kb], out=sb[kb:])
            sb[kb:] -= (n - a - kb - 1.0) * inv_n  # t - (n - j - 1)/n
            e_max = max(e_max, float(sb.max()))
            e_min = min(e_min, float(sb.min()))
            e_sum += float(sb.sum())
            e_sq += _sum_of_products(sb, sb)
            above = np.greater(sb, 0.0, out=above_buf[:m])
            near = np.less_equal(sb, inv_n, out=near_buf[:m])
            jumps.append(np.flatnonzero(np.logical_and(above, near, out=both_buf[:m])) + a)
            if prev_above and near[0]:  # the gap between this block and the previous one
                inners.append(np.array([a - 1]))
            inners.append(
                np.flatnonzero(np.logical_and(above[:-1], near[1:], out=both_buf[: m - 1])) + a
            )
            prev_above = bool(above[-1])
    if anderson:
        prep.cache["ad_sums"] = (sum_d, w_d, sum_m)
    if gap:
        prep.cache["gap_sums"] = (e_max, e_min, e_sum, e_sq)
        prep.cache["sign_changes"] = (np.concatenate(jumps), np.concatenate(inners))


def anderson_statistic(prep: Prepared) -> float:
    """Anderson-Darling A² against N(mean, sd), as ``scipy.stats.anderson(x, 'norm')``.

    ``A² = -n - (1/n) sum_i (2i - 1) [log F_i + log(1 - F_{n+1-i})]``. Re-indexing the second
    term gives ``-n - (1/n) sum_i [(2i - 1) log F_i + (2n + 1 - 2i) log(1 - F_i)]``. With the
    tail ``t_i = Phi(-|z_i|)`` (``F = t`` below 0, ``1 - F = t`` above) every term becomes
    ``v_i (L_i - M_i) + 2n M_i`` with ``L = log t``, ``M = log1p(-t)`` and the tent weight
    ``v_i = 2 w_i - 1 = 2 min(i, n + 1 - i) - 1`` on either side, so::

        A² = -n - (1/n) sum_i v_i D_i - 2 sum_i M_i,    D = L - M <= 0,  M <= 0

    (:func:`scan` accumulates ``sum D``, ``sum w D`` and ``sum M``; every sum has terms of one
    sign). ``L`` equals
    scipy's ``logcdf``/``logsf`` (``special.log_ndtr``) to rounding. Rounding:
    the sums are of order ``n²``, so ``A²`` carries an absolute error of about ``1e-16 n``
    (1e-10 at 10^6 values), as scipy's own sum of ``n`` terms of order 1 does.
    """
    scan(prep, anderson=True, gap=False)
    sum_d, w_d, sum_m = prep.cache["ad_sums"]
    n = prep.n
    return float(-n - (2.0 * w_d - sum_d) / n - 2.0 * sum_m)


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
    ``e_i = i/n - F_i`` and ``c = 1/(2n)``, expanded into the sums :func:`scan` keeps.
    """
    scan(prep, anderson=False, gap=True)
    _, _, e_sum, e_sq = prep.cache["gap_sums"]
    n = prep.n
    c = 0.5 / n
    return float(1.0 / (12.0 * n) + e_sq - 2.0 * c * e_sum + n * c * c)


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
    scan(prep, anderson=False, gap=True)
    e_max, e_min, _, _ = prep.cache["gap_sums"]
    return max(e_max, 1.0 / prep.n - e_min)


def wasserstein1_to_normal(prep: Prepared) -> float:
    """Exact W1 distance between the empirical law of z and N(0, 1).

    ``W1 = integral |F_n(t) - Phi(t)| dt``. Let ``H(t) = integral_{-inf}^t (F_n - Phi)``, which
    has the closed form ``H(t) = (m t - S_m)/n - G(t)`` where ``m = #{z_j <= t}``, ``S_m`` is the
    sum of those ``z_j`` and ``G(t) = t Phi(t) + phi(t)`` is the antiderivative of ``Phi``. Between
    two consecutive points where ``F_n - Phi`` changes sign, ``|F_n - Phi|`` integrates to
    ``|H(b) - H(a)|``, so ``W1 = sum |diff(H)|`` over the sign changes, ``H(-inf) = 0`` and
    ``H(+inf) = -mean(z)``.

    ``F_n - Phi`` decreases between data points and jumps up at each, so it can turn from - to
    + only at a data point ``z_i`` with ``0 < e_i <= 1/n`` and from + to - only inside a gap
    ``(z_i, z_{i+1})`` with ``e_i > 0 >= e_{i+1} - 1/n``, at ``Phi^{-1}(i/n)``, where ``e_i =
    i/n - Phi(z_i)`` (:func:`scan` finds both kinds). Taking a few extra points (ties,
    equalities) changes nothing, since ``|a| + |b| = |a + b|`` when ``a`` and ``b`` have one sign.
    There are about ``sqrt(n)`` such points for a Gaussian sample and few for a non-Gaussian one,
    so ``Phi`` and ``phi`` are evaluated there only, and the partial sums ``S_m`` come from one
    ``np.add.reduceat`` pass. The result equals the piecewise integral over every gap (checked
    by the tests against quadrature and against the per-gap formula); no quadrature or
    reference grid is involved.
    """
    scan(prep, anderson=False, gap=True)
    jump, inner = prep.cache["sign_changes"]
    z, n = prep.z, prep.n
    inv_n = 1.0 / n
    level = (inner + 1.0) * inv_n
    c_inner = np.clip(special.ndtri(level), z[inner], z[inner + 1])
    order = np.argsort(np.concatenate([2 * jump, 2 * inner + 1]), kind="stable")
    c = np.concatenate([z[jump], c_inner])[order]
    m = np.concatenate([jump + 1, inner + 1])[order]  # values at or below each point
    # partial sums S_m at the distinct m, from one segmented pass over z
    um = np.unique(m)
    starts = np.concatenate([[0], um[um < n]])
    csum = np.cumsum(np.add.reduceat(z, starts))
    s_m = csum[np.searchsorted(um, m)]
    g = c * special.ndtr(c) + np.exp(-0.5 * c * c) * _INV_SQRT_2PI
    h = (m * c - s_m) * inv_n - g
    h = np.concatenate([[0.0], h, [-float(csum[-1]) * inv_n]])
    return float(np.abs(np.diff(h)).sum())


def ks_pvalue_known(d: float, n: int) -> float:
    """``scipy.stats.kstwo.sf(d, n)``: the two-sided KS p-value for fully specified parameters.

    scipy's value, computed faster for large samples. Where ``2 <= n d² < 370`` scipy returns
    ``2 * special.smirnov(n, d)``, an exact sum of ``n(1 - d)`` terms in double-double
    arithmetic: 1.5 s at n = 10^6, 0.27 s at 10^5 (measured), and that range of ``d`` (0.0015
    to 0.019 at 10^6) is where mildly non-Gaussian weight tensors land. For ``n > 20,000`` the
    same Birnbaum-Tingey sum ``d sum_j C(n, j) (d + j/n)^(j-1) (1 - d - j/n)^(n-j)`` is
    evaluated here in log space with numpy (0.11-0.25 s at 10^6, 1-25 ms at 10^5); it agrees
    with scipy to 3e-11 relative at n = 30,000 (checked by the tests) and 2e-9 at 10^6 (the
    rounding of ``gammaln(n + 1)``, about 1.3e7 there); scipy's ``2 smirnov`` is itself an
    approximation of the two-sided value, off by up to about 1e-6 relative near ``n d² = 2.2``.
    """
    if n > 140 and 0.0 < d < 0.5 and n * d * d >= 370.0:
        return 0.0  # scipy's own branch (_kolmogn), without its 0.15 ms of argument handling
    if n > 20_000 and 0.0 < d < 0.5 and 2.2 <= n * d * d < 370.0:
        j = np.arange(0.0, math.floor(n * (1.0 - d)) + 1.0)
        log_terms = special.gammaln(j + 1.0)
        log_terms += special.gammaln(n - j + 1.0)
        np.subtract(math.log(d) + float(special.gammaln(n + 1.0)), log_terms, out=log_terms)
        with np.errstate(divide="ignore"):  # the last term can be log(0)
            log_terms += (j - 1.0) * np.log(d + j / n) + (n - j) * np.log1p(-d - j / n)
        top = float(log_terms.max())
        one_sided = math.exp(top) * float(np.exp(log_terms - top).sum())
        return min(max(2.0 * one_sided, 0.0), 1.0)
    from scipy import stats

    return float(np.clip(stats.kstwo.sf(d, n), 0.0, 1.0))


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
