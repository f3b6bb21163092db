"""Normality tests and effect sizes that do not grow with the sample size.

:func:`normality` runs a battery of classical tests and returns one tidy row per test.
With the millions of values of a weight tensor every test rejects even a negligible departure
from normality, so :func:`effect_sizes` measures *how far* the sample is from a Gaussian on
scales that do not grow with ``n`` (skewness, excess kurtosis, Wasserstein-1 distance, tail
mass, Q-Q deviation). :func:`normality_with_effects` computes both while sorting and
standardising the sample only once.

Every statistic equals the one computed by scipy or statsmodels on the same data (the tests in
``tests/stats/test_normality.py`` check each); the work is shared between tests instead of being
redone by each library call.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import special, stats

from .._validation import as_sample
from ..errors import InputDataError
from . import _norm_kernels as K
from ._core import as_generator

__all__ = [
    "SHAPIRO_MAX",
    "TESTS",
    "EffectSizes",
    "effect_sizes",
    "normality",
    "normality_with_effects",
]

#: Names accepted by ``normality(x, tests=...)``, in the default order of the rows.
TESTS = (
    "shapiro",
    "dagostino",
    "jarque_bera",
    "anderson",
    "lilliefors",
    "cramervonmises",
    "ks",
)
#: Shapiro-Wilk runs on a seeded random subsample of at most this many values (scipy's p-value
#: is only accurate up to 5,000).
SHAPIRO_MAX = 5000
#: Fewest values each test needs; fewer give a NaN row with a note.
MIN_N = {
    "shapiro": 3,
    "dagostino": 8,
    "jarque_bera": 3,
    "anderson": 8,
    "lilliefors": 4,
    "cramervonmises": 8,
    "ks": 3,
}
_COLUMNS = ["test", "statistic", "pvalue", "n_used", "note"]
_Z975 = float(special.ndtri(0.975))


# --------------------------------------------------------------------------- effect sizes


@dataclass(frozen=True)
class EffectSizes:
    """How far a sample is from a Gaussian, on scales that do not grow with ``n``.

    Attributes
    ----------
    n : int
        Number of finite values used.
    mean, sd : float
        Sample mean and ``ddof=1`` standard deviation; every standardised quantity below uses
        ``z = (x - mean) / sd``.
    skewness : float
        Bias-corrected sample skewness ``G1 = g1 sqrt(n(n-1)) / (n-2)`` (equal to
        ``scipy.stats.skew(x, bias=False)``). NaN below 3 values.
    skewness_se : float
        Its normal-theory standard error ``sqrt(6n(n-1) / ((n-2)(n+1)(n+3)))``.
    skewness_ci_low, skewness_ci_high : float
        ``skewness -/+ z_(1-(1-confidence)/2) * skewness_se``.
    excess_kurtosis : float
        Bias-corrected excess kurtosis ``G2 = ((n+1) g2 + 6)(n-1) / ((n-2)(n-3))`` (equal to
        ``scipy.stats.kurtosis(x, bias=False)``). NaN below 4 values.
    excess_kurtosis_se : float
        Normal-theory ``2 * skewness_se * sqrt((n² - 1) / ((n-3)(n+5)))``.
    excess_kurtosis_ci_low, excess_kurtosis_ci_high : float
        The matching interval.
    wasserstein1 : float
        Exact Wasserstein-1 distance between the law of ``z`` and N(0, 1) (in units of sd).
    tail_mass_ratio : float
        ``P(|z| > 3) / 0.0026998`` (the denominator is ``2 * norm.sf(3)``): 1 for a Gaussian,
        above 1 for heavy tails, 0 for bounded light tails.
    max_qq_deviation : float
        Largest ``|Q_n(p) - Phi^{-1}(p)|`` of the standardised sample over 1,001 equally spaced
        probabilities in [0.005, 0.995] (the central 99 %).
    quantile_skewness : float
        Hinkley's ``(q_0.95 + q_0.05 - 2 q_0.5) / (q_0.95 - q_0.05)``: a skewness in [-1, 1]
        that, unlike the moment one, is not driven by a few extreme values (0.39 for a
        lognormal with sigma 0.5, 0 for every symmetric law).
    confidence : float
        Level of the intervals.

    Notes
    -----
    The standard errors are the exact normal-theory ones (Joanes & Gill 1998, "Comparing
    measures of sample skewness and kurtosis", *The Statistician* 47:183-189): they describe the
    sampling spread **under the Gaussian null**, which is what is needed to decide whether a
    small sample is distinguishable from a Gaussian; for heavy-tailed data the true spread of the
    kurtosis is larger (infinite for Student t with 8 or fewer degrees of freedom).
    """

    n: int
    mean: float
    sd: float
    skewness: float
    skewness_se: float
    skewness_ci_low: float
    skewness_ci_high: float
    excess_kurtosis: float
    excess_kurtosis_se: float
    excess_kurtosis_ci_low: float
    excess_kurtosis_ci_high: float
    wasserstein1: float
    tail_mass_ratio: float
    max_qq_deviation: float
    quantile_skewness: float
    confidence: float = 0.95

    def to_dict(self) -> dict[str, float]:
        """All fields as a flat dict of plain Python numbers."""
        return asdict(self)

    def __repr__(self) -> str:
        return (
            f"EffectSizes(n={self.n}, "
            f"skewness={self.skewness:.4g} [{self.skewness_ci_low:.4g}, "
            f"{self.skewness_ci_high:.4g}], "
            f"excess_kurtosis={self.excess_kurtosis:.4g} [{self.excess_kurtosis_ci_low:.4g}, "
            f"{self.excess_kurtosis_ci_high:.4g}], "
            f"wasserstein1={self.wasserstein1:.4g}, tail_mass_ratio={self.tail_mass_ratio:.4g}, "
            f"max_qq_deviation={self.max_qq_deviation:.4g}, "
            f"quantile_skewness={self.quantile_skewness:.4g})"
        )


def _skew_kurt(prep: K.Prepared, confidence: float) -> dict[str, float]:
    n, m2 = prep.n, prep.m2
    nan = math.nan
    out = dict.fromkeys(
        [
            "skewness",
            "skewness_se",
            "skewness_ci_low",
            "skewness_ci_high",
            "excess_kurtosis",
            "excess_kurtosis_se",
            "excess_kurtosis_ci_low",
            "excess_kurtosis_ci_high",
        ],
        nan,
    )
    if prep.sd == 0.0 or n < 3:
        return out
    zq = float(special.ndtri(0.5 + confidence / 2.0))
    g1 = prep.m3 / m2**1.5
    skew = g1 * math.sqrt(n * (n - 1.0)) / (n - 2.0)
    se_s = math.sqrt(6.0 * n * (n - 1.0) / ((n - 2.0) * (n + 1.0) * (n + 3.0)))
    out.update(
        skewness=skew,
        skewness_se=se_s,
        skewness_ci_low=skew - zq * se_s,
        skewness_ci_high=skew + zq * se_s,
    )
    if n < 4:
        return out
    g2 = prep.m4 / m2**2 - 3.0
    kurt = ((n + 1.0) * g2 + 6.0) * (n - 1.0) / ((n - 2.0) * (n - 3.0))
    se_k = 2.0 * se_s * math.sqrt((n * n - 1.0) / ((n - 3.0) * (n + 5.0)))
    out.update(
        excess_kurtosis=kurt,
        excess_kurtosis_se=se_k,
        excess_kurtosis_ci_low=kurt - zq * se_k,
        excess_kurtosis_ci_high=kurt + zq * se_k,
    )
    return out


def _quantile_sorted(xs: np.ndarray, p: float) -> float:
    """numpy's default ('linear') quantile of an already sorted array."""
    pos = (xs.size - 1) * p
    lo = math.floor(pos)
    hi = min(lo + 1, xs.size - 1)
    return float(xs[lo] + (pos - lo) * (xs[hi] - xs[lo]))


def _effects(prep: K.Prepared, confidence: float) -> EffectSizes:
    n = prep.n
    moments = _skew_kurt(prep, confidence)
    if prep.sd == 0.0 or n < 2:
        return EffectSizes(
            n=n,
            mean=prep.mean,
            sd=prep.sd,
            wasserstein1=math.nan,
            tail_mass_ratio=math.nan,
            max_qq_deviation=math.nan,
            quantile_skewness=math.nan,
            confidence=confidence,
            **moments,
        )
    z = prep.z
    n_tail = int(np.searchsorted(z, -K.TAIL_Z, side="left"))
    n_tail += n - int(np.searchsorted(z, K.TAIL_Z, side="right"))
    q05, q50, q95 = (_quantile_sorted(z, p) for p in (0.05, 0.5, 0.95))  # affine invariant
    qskew = (q95 + q05 - 2.0 * q50) / (q95 - q05) if q95 > q05 else 0.0
    return EffectSizes(
        n=n,
        mean=prep.mean,
        sd=prep.sd,
        wasserstein1=K.wasserstein1_to_normal(prep),
        tail_mass_ratio=(n_tail / n) / K.GAUSSIAN_TAIL_MASS,
        max_qq_deviation=K.qq_max_deviation(prep),
        quantile_skewness=qskew,
        confidence=confidence,
        **moments,
    )


# --------------------------------------------------------------------------- the battery


def _row(test: str, statistic: float, pvalue: float, n_used: int, note: str) -> dict[str, Any]:
    return {
        "test": test,
        "statistic": float(statistic),
        "pvalue": float(pvalue),
        "n_used": int(n_used),
        "note": note,
    }


def _dagostino(prep: K.Prepared) -> tuple[float, float]:
    """D'Agostino-Pearson K², the formulas of ``scipy.stats.skewtest``/``kurtosistest``."""
    n = float(prep.n)
    b1 = prep.m3 / prep.m2**1.5
    y = b1 * math.sqrt(((n + 1) * (n + 3)) / (6.0 * (n - 2)))
    beta2 = (
        3.0 * (n**2 + 27 * n - 70) * (n + 1) * (n + 3) / ((n - 2.0) * (n + 5) * (n + 7) * (n + 9))
    )
    w2 = -1 + math.sqrt(2 * (beta2 - 1))
    delta = 1 / math.sqrt(0.5 * math.log(w2))
    alpha = math.sqrt(2.0 / (w2 - 1))
    if y == 0:
        y = 1.0
    z_skew = delta * math.log(y / alpha + math.sqrt((y / alpha) ** 2 + 1))

    b2 = prep.m4 / prep.m2**2
    e = 3.0 * (n - 1) / (n + 1)
    varb2 = 24.0 * n * (n - 2) * (n - 3) / ((n + 1) * (n + 1.0) * (n + 3) * (n + 5))
    xk = (b2 - e) / math.sqrt(varb2)
    sqrtbeta1 = (
        6.0
        * (n * n - 5 * n + 2)
        / ((n + 7) * (n + 9))
        * math.sqrt((6.0 * (n + 3) * (n + 5)) / (n * (n - 2) * (n - 3)))
    )
    a = 6.0 + 8.0 / sqrtbeta1 * (2.0 / sqrtbeta1 + math.sqrt(1 + 4.0 / sqrtbeta1**2))
    term1 = 1 - 2 / (9.0 * a)
    denom = 1 + xk * math.sqrt(2 / (a - 4.0))
    if denom == 0:
        return math.nan, math.nan
    term2 = math.copysign(((1 - 2.0 / a) / abs(denom)) ** (1 / 3), denom)
    z_kurt = (term1 - term2) / math.sqrt(2 / (9.0 * a))
    k2 = z_skew * z_skew + z_kurt * z_kurt
    return k2, math.exp(-k2 / 2.0)  # chi2(2) survival function


def _lilliefors_pvalue(d: float, n: int, z: np.ndarray) -> float:
    """statsmodels' Lilliefors p-value for statistic `d` (its default 'table' method)."""
    try:  # the table lives in a private module; fall back to the public function
        from statsmodels.stats._lilliefors import get_lilliefors_table

        return float(get_lilliefors_table("norm").prob(d, n))
    except ImportError:  # pragma: no cover - depends on the statsmodels version
        from statsmodels.stats.diagnostic import lilliefors

        return float(lilliefors(z, dist="norm", pvalmethod="table")[1])


_GAP_TESTS = frozenset({"lilliefors", "cramervonmises", "ks"})


def _battery(
    prep: K.Prepared, tests: tuple[str, ...], rng: Any, *, with_effects: bool = False
) -> pd.DataFrame:
    n = prep.n
    rows = []
    constant = prep.sd == 0.0
    nan = math.nan
    if not constant and n >= 2:
        # one pass over the values serves every test that needs Phi (and W1 when asked)
        K.scan(
            prep,
            anderson="anderson" in tests and n >= MIN_N["anderson"],
            gap=with_effects or not _GAP_TESTS.isdisjoint(tests),
        )
    for test in tests:
        if n < MIN_N[test]:
            rows.append(_row(test, nan, nan, n, f"needs at least {MIN_N[test]} values; got {n}"))
            continue
        if constant:
            rows.append(_row(test, nan, nan, n, "constant data: normality is undefined"))
            continue
        if test == "shapiro":
            if n > SHAPIRO_MAX:
                gen = as_generator(rng)
                # z, not x: W is invariant under x -> a x + b, and x is not kept. Sorting the
                # indices changes nothing (shapiro sorts its input; W does not depend on the
                # order) but reads z in order and hands shapiro sorted values: 0.4 ms less.
                idx = np.sort(gen.choice(n, SHAPIRO_MAX, replace=False))
                sub = prep.z[idx]
                res = stats.shapiro(sub)
                note = f"scipy.stats.shapiro on a seeded random subsample of {SHAPIRO_MAX} of {n}"
                rows.append(_row(test, res.statistic, res.pvalue, SHAPIRO_MAX, note))
            else:
                res = stats.shapiro(prep.z)
                rows.append(_row(test, res.statistic, res.pvalue, n, "scipy.stats.shapiro"))
        elif test == "dagostino":
            k2, p = _dagostino(prep)
            note = "D'Agostino-Pearson K2 (scipy.stats.normaltest); chi2(2) p-value"
            if n < 20:
                note += "; kurtosis part unreliable below 20 values"
            rows.append(_row(test, k2, p, n, note))
        elif test == "jarque_bera":
            g1 = prep.m3 / prep.m2**1.5
            g2 = prep.m4 / prep.m2**2 - 3.0
            jb = n / 6.0 * (g1 * g1 + g2 * g2 / 4.0)
            note = "asymptotic chi2(2) p-value (scipy.stats.jarque_bera)"
            if n < 2000:
                note += "; the chi2 approximation is inaccurate below about 2,000 values"
            rows.append(_row(test, jb, math.exp(-jb / 2.0), n, note))
        elif test == "anderson":
            a2 = K.anderson_statistic(prep)
            note = (
                "A2 with estimated mean and sd (ddof=1); p-value from the Stephens/D'Agostino "
                "case-3 formula on A2(1+0.75/n+2.25/n^2)"
            )
            rows.append(_row(test, a2, K.anderson_pvalue_case3(a2, n), n, note))
        elif test == "lilliefors":
            d = K.ks_statistic(prep)
            note = "KS against N(mean, sd ddof=1); p-value from statsmodels' Lilliefors table"
            rows.append(_row(test, d, _lilliefors_pvalue(d, n, prep.z), n, note))
        elif test == "cramervonmises":
            w2 = K.cramervonmises_statistic(prep)
            p = K.cramervonmises_pvalue_case3(w2, n)
            note = (
                "W2 against N(mean, sd ddof=1); p-value from the Stephens/D'Agostino case-3 "
                "formula on W2(1+0.5/n)"
            )
            if p == K.CVM_PVALUE_FLOOR:
                note += f"; the p-value is an upper bound (true value < {K.CVM_PVALUE_FLOOR:g})"
            rows.append(_row(test, w2, p, n, note))
        elif test == "ks":
            d = K.ks_statistic(prep)
            p = K.ks_pvalue_known(d, n)  # = scipy.stats.kstwo.sf(d, n), faster at large n
            note = (
                "KS against the fitted normal with the known-parameter p-value: "
                "anti-conservative (use lilliefors)"
            )
            rows.append(_row(test, d, p, n, note))
    return pd.DataFrame(rows, columns=_COLUMNS)


# --------------------------------------------------------------------------- public API


def _check_tests(tests: Any) -> tuple[str, ...]:
    if isinstance(tests, str):
        tests = (tests,)
    try:
        tests = tuple(tests)
    except TypeError:
        raise InputDataError(
            f"`tests` must be a test name or a list of them from {list(TESTS)}; got {tests!r}."
        ) from None
    if not tests:
        raise InputDataError(f"`tests` is empty; choose from {list(TESTS)}.")
    bad = [t for t in tests if t not in TESTS]
    if bad:
        raise InputDataError(f"`tests` has unknown name(s) {bad}; choose from {list(TESTS)}.")
    return tests


def _check_confidence(confidence: Any) -> float:
    try:
        c = float(confidence)
    except (TypeError, ValueError):
        c = math.nan
    if not 0.0 < c < 1.0:
        raise InputDataError(f"`confidence` must be a number in (0, 1); got {confidence!r}.")
    return c


def _prepare_sample(x: Any, nan_policy: str) -> K.Prepared:
    """Validate, sort once and standardise once, in a sorted copy that nothing else sees.

    A numpy float array is sorted in its own dtype before conversion (sorting 10^6 float32
    values takes half the time of sorting them as float64, measured 2.7 vs 5.5 ms; the
    conversion keeps the order and the values). The array that comes out is always a fresh one
    (``np.sort`` copies), so it is standardised in place.
    """
    presorted = isinstance(x, np.ndarray) and x.dtype.kind == "f"
    if presorted:
        x = np.sort(x, axis=None)
    xs = as_sample(x, name="x", min_size=1, nan_policy=nan_policy, allow_constant=True)
    if not presorted:
        xs = np.sort(xs)  # a copy: as_sample may return memory shared with the caller's x
    return K.prepare(xs, overwrite_input=True)


def normality(
    x: Any,
    tests: str | Iterable[str] = TESTS,
    *,
    rng: Any = None,
    nan_policy: str = "raise",
) -> pd.DataFrame:
    """Run a battery of normality tests (unknown mean and variance) on one sample.

    Parameters
    ----------
    x : array_like or torch.Tensor
        The sample; flattened.
    tests : str or iterable of str
        Any of ``shapiro, dagostino, jarque_bera, anderson, lilliefors, cramervonmises, ks``
        (all by default), in the order of the rows.
    rng : None, int or numpy.random.Generator
        Draws the Shapiro-Wilk subsample when ``n > 5000``.
    nan_policy : {'raise', 'omit'}

    Returns
    -------
    pandas.DataFrame
        One row per test with columns ``test, statistic, pvalue, n_used, note``. A test that
        cannot run (too few values, constant data) has NaN statistic and p-value and says why in
        ``note``.

    Notes
    -----
    Each statistic equals the library one on the same data:

    - ``shapiro``: ``scipy.stats.shapiro``, on a random subsample of 5,000 values (drawn with
      ``rng.choice(n, 5000, replace=False)`` from the sorted values) when ``n > 5000``.
    - ``dagostino``: ``scipy.stats.normaltest`` (K², chi2(2) p-value); needs 8 values.
    - ``jarque_bera``: ``scipy.stats.jarque_bera``.
    - ``anderson``: ``scipy.stats.anderson(x, 'norm')`` (mean and ``ddof=1`` sd estimated); the
      p-value is the Stephens case-3 formula (D'Agostino & Stephens 1986, Table 4.9), the same
      as ``statsmodels.stats.diagnostic.normal_ad``.
    - ``lilliefors``: ``statsmodels.stats.diagnostic.lilliefors`` (statistic and table p-value).
    - ``cramervonmises``: ``scipy.stats.cramervonmises(x, 'norm', args=(mean, sd))`` with the
      Stephens case-3 p-value (R ``nortest::cvm.test``), valid for estimated parameters.
    - ``ks``: ``scipy.stats.kstest(x, 'norm', args=(mean, sd))``. Its p-value assumes known
      parameters and is therefore anti-conservative; it is reported for comparison only.

    With ``10^5`` values or more every test rejects departures far too small to matter; read
    :func:`effect_sizes` to judge their size.

    Examples
    --------
    >>> import numpy as np
    >>> from weightstats.stats.normality import normality
    >>> table = normality(np.random.default_rng(0).normal(size=1000), rng=0)
    >>> list(table["test"])
    ['shapiro', 'dagostino', 'jarque_bera', 'anderson', 'lilliefors', 'cramervonmises', 'ks']
    """
    tests = _check_tests(tests)
    prep = _prepare_sample(x, nan_policy)
    return _battery(prep, tests, rng)


def effect_sizes(x: Any, *, confidence: float = 0.95, nan_policy: str = "raise") -> EffectSizes:
    """Effect sizes of non-normality that do not grow with the sample size.

    Parameters
    ----------
    x : array_like or torch.Tensor
        The sample; flattened.
    confidence : float
        Level of the skewness and kurtosis intervals.
    nan_policy : {'raise', 'omit'}

    Returns
    -------
    EffectSizes
        See its Attributes. Constant data give NaN effect sizes (and a
        :class:`~weightstats.errors.DegenerateDataWarning`).

    Examples
    --------
    >>> import numpy as np
    >>> from weightstats.stats.normality import effect_sizes
    >>> e = effect_sizes(np.random.default_rng(0).laplace(size=100_000))
    >>> round(e.excess_kurtosis)  # Laplace: 3
    3
    """
    confidence = _check_confidence(confidence)
    return _effects(_prepare_sample(x, nan_policy), confidence)


def normality_with_effects(
    x: Any,
    tests: str | Iterable[str] = TESTS,
    *,
    rng: Any = None,
    confidence: float = 0.95,
    nan_policy: str = "raise",
) -> tuple[pd.DataFrame, EffectSizes]:
    """``(normality(x, tests, rng=rng), effect_sizes(x))`` with one sort and one standardisation.

    Use it when both are needed (the checkpoint analysis does, on every tensor).
    """
    tests = _check_tests(tests)
    confidence = _check_confidence(confidence)
    prep = _prepare_sample(x, nan_policy)
    return _battery(prep, tests, rng, with_effects=True), _effects(prep, confidence)
