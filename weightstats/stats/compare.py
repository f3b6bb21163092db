"""Compare fitted families: likelihood-ratio (nested), Vuong (non-nested), held-out likelihood.

At a million values BIC alone almost always prefers the richer family, because tiny but real
departures from the simpler one are detected. These tools say by how much and whether it holds
on data the fit has not seen.

Likelihood-ratio nulls (``nested=True``; the pair must be one of these, in either order):

========================  ==============================  ===================================
restricted inside full    where                           asymptotic null of 2 (ll_f - ll_r)
========================  ==============================  ===================================
normal in gennorm         beta = 2 (interior point)       chi2(1)
laplace in gennorm        beta = 1 (interior point)       chi2(1)
normal in t               df = infinity (boundary)        0.5 chi2(0) + 0.5 chi2(1)
========================  ==============================  ===================================

The boundary case follows Self & Liang (1987, JASA 82:605): when the restriction puts a
parameter on the edge of its space, the statistic is zero with probability one half. Mixtures
with K and K + 1 components are *not* offered: their LR statistic has no chi-square limit
(the null is on a boundary and unidentified); use BIC or :func:`heldout_loglik`.

Vuong's test (``nested=False``; Vuong 1989, Econometrica 57:307) uses the pointwise
log-likelihood ratios ``m_i = log f_a(x_i) - log f_b(x_i)``:
``z = (sum m_i - correction) / (sqrt(n) * sd(m))``, asymptotically N(0, 1) when the models are
equally close to the truth, two-sided p-value. ``correction='bic'`` (the default) subtracts
``(p_a - p_b) log(n) / 2`` (Schwarz), ``'aic'`` subtracts ``p_a - p_b``, ``'none'`` nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import pandas as pd
from scipy import stats

from .._validation import as_sample
from ..errors import InputDataError
from ._core import as_generator, check_choice, check_positive
from .fit import ALL_FAMILIES, FitResult, _check_family, _fit_validated

__all__ = ["ComparisonResult", "compare_fits", "heldout_loglik", "NESTED_PAIRS"]

# (restricted, full) -> (null distribution text, degrees of freedom, on the boundary?)
NESTED_PAIRS: dict[tuple[str, str], tuple[str, int, bool]] = {
    ("normal", "gennorm"): ("chi2(1)", 1, False),
    ("laplace", "gennorm"): ("chi2(1)", 1, False),
    ("normal", "t"): ("0.5*chi2(0) + 0.5*chi2(1)", 1, True),
}
CORRECTIONS = frozenset({"bic", "aic", "none"})


@dataclass(frozen=True)
class ComparisonResult:
    """The outcome of comparing two fits on the same sample.

    Attributes
    ----------
    method : str
        ``'likelihood-ratio'`` or ``'vuong'``.
    statistic : float
        ``2 (ll_full - ll_restricted)`` for the LR test; Vuong's z (positive favours `a`).
    pvalue : float
        From the null distribution named in `null_distribution`.
    preferred : str or None
        Family preferred at level `alpha`: for LR the full model if the test rejects, else the
        restricted one; for Vuong the favoured one if the test rejects, else None (a tie).
    loglik_ratio : float
        ``a.loglik - b.loglik`` (sum over the sample, as fitted).
    null_distribution : str
        The asymptotic distribution the p-value comes from.
    a, b : str
        The two families, in the order given.
    n : int
        Sample size.
    """

    method: str
    statistic: float
    pvalue: float
    preferred: str | None
    loglik_ratio: float
    null_distribution: str
    a: str
    b: str
    n: int

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dictionary of every field."""
        return dict(self.__dict__)

    def __repr__(self) -> str:
        return (
            f"ComparisonResult(method={self.method!r}, {self.a} vs {self.b}, "
            f"statistic={self.statistic:.6g}, pvalue={self.pvalue:.4g}, "
            f"preferred={self.preferred!r}, null={self.null_distribution!r})"
        )


def _lr_test(a: FitResult, b: FitResult, n: int, alpha: float) -> ComparisonResult:
    pair = (a.family, b.family)
    if pair in NESTED_PAIRS:
        restricted, full = a, b
    elif pair[::-1] in NESTED_PAIRS:
        restricted, full = b, a
    else:
        known = ", ".join(f"{r} in {f}" for r, f in NESTED_PAIRS)
        raise InputDataError(
            f"`a` ({a.family}) and `b` ({b.family}) are not a nested pair this test knows "
            f"({known}); pass nested=False for Vuong's test."
        )
    null, df, boundary = NESTED_PAIRS[(restricted.family, full.family)]
    # A full model maximised over a superset cannot have a lower likelihood; tiny negative
    # values are optimiser noise and are set to zero.
    stat = max(2.0 * (full.loglik - restricted.loglik), 0.0)
    p = float(stats.chi2.sf(stat, df))
    if boundary:
        p = 1.0 if stat == 0 else 0.5 * p
    preferred = full.family if p < alpha else restricted.family
    return ComparisonResult("likelihood-ratio", stat, p, preferred, a.loglik - b.loglik, null,
                            a.family, b.family, n)


def _vuong(arr: np.ndarray, a: FitResult, b: FitResult, correction: str,
           alpha: float) -> ComparisonResult:
    la, lb = a.logpdf(arr), b.logpdf(arr)
    n = arr.size
    null = "normal(0, 1)"
    zero_a, zero_b = bool(np.isneginf(la).any()), bool(np.isneginf(lb).any())
    if zero_a or zero_b:
        # A density that is zero at an observed value (uniform, or gennorm at a huge beta) makes
        # that model infinitely worse; the normal approximation does not apply.
        note = null + "; not applicable: a fitted density is zero at an observed value"
        if zero_a and zero_b:
            return ComparisonResult("vuong", math.nan, math.nan, None, a.loglik - b.loglik,
                                    note, a.family, b.family, n)
        winner = b if zero_a else a
        stat = -math.inf if zero_a else math.inf
        return ComparisonResult("vuong", stat, 0.0, winner.family, a.loglik - b.loglik, note,
                                a.family, b.family, n)
    m = la - lb
    ratio = float(m.sum())
    shift = {"none": 0.0, "aic": float(a.n_params - b.n_params),
             "bic": 0.5 * (a.n_params - b.n_params) * math.log(n)}[correction]
    sd = float(m.std())
    if sd == 0:
        return ComparisonResult("vuong", 0.0, 1.0, None, a.loglik - b.loglik, null,
                                a.family, b.family, n)
    z = (ratio - shift) / (math.sqrt(n) * sd)
    p = float(2.0 * stats.norm.sf(abs(z)))
    preferred = None if p >= alpha else (a.family if z > 0 else b.family)
    return ComparisonResult("vuong", z, p, preferred, a.loglik - b.loglik, null,
                            a.family, b.family, n)


def compare_fits(
    x: Any,
    a: FitResult,
    b: FitResult,
    *,
    nested: bool,
    correction: str = "bic",
    alpha: float = 0.05,
    nan_policy: str = "raise",
) -> ComparisonResult:
    """Test whether fit `a` or fit `b` describes the sample `x` better.

    Parameters
    ----------
    x : array_like or torch.Tensor
        The sample both fits were made on.
    a, b : FitResult
        Maximum-likelihood fits of two different families to `x`.
    nested : bool
        True for a likelihood-ratio test (the pair must be one in :data:`NESTED_PAIRS`); False
        for Vuong's non-nested test. It is never inferred from the family names.
    correction : {'bic', 'aic', 'none'}
        Vuong's correction for the difference in parameter counts (ignored when nested).
    alpha : float
        Level used to fill `preferred`.
    nan_policy : {'raise', 'omit'}
        What to do with NaN and infinite values in `x`.

    Returns
    -------
    ComparisonResult
    """
    if not isinstance(nested, bool):
        raise InputDataError(f"`nested` must be True or False; got {nested!r}.")
    for name, r in (("a", a), ("b", b)):
        if not isinstance(r, FitResult):
            raise InputDataError(
                f"`{name}` must be a FitResult from fit(); got {type(r).__name__}."
            )
    if a.family == b.family:
        raise InputDataError(f"`a` and `b` are both {a.family!r} fits; compare two families.")
    correction = check_choice(correction, CORRECTIONS, name="correction")
    alpha = check_positive(alpha, name="alpha", upper=1.0)
    arr = as_sample(x, name="x", min_size=8, nan_policy=nan_policy)
    if a.n != arr.size or b.n != arr.size:
        raise InputDataError(
            f"`x` has {arr.size} values but the fits used {a.n} and {b.n}; "
            "pass the sample the fits were made on."
        )
    if nested:
        return _lr_test(a, b, arr.size, alpha)
    return _vuong(arr, a, b, correction, alpha)


def heldout_loglik(
    x: Any,
    families: Iterable[str] = ALL_FAMILIES,
    *,
    test_fraction: float = 0.5,
    rng: Any = None,
    nan_policy: str = "raise",
) -> pd.DataFrame:
    """Fit each family on a random training part of `x` and score it on the rest.

    Parameters
    ----------
    x : array_like or torch.Tensor
        The sample; at least 16 finite values, not all equal.
    families : iterable of str
        Families to compare.
    test_fraction : float
        Fraction of values held out (0 < test_fraction < 1).
    rng : None, int or numpy.random.Generator
        Randomness for the split and the mixture's starts.
    nan_policy : {'raise', 'omit'}
        What to do with NaN and infinite values.

    Returns
    -------
    pandas.DataFrame
        One row per family sorted by held-out log-likelihood (best first), with columns
        ``family, n_params, n_train, n_test, train_loglik, test_loglik`` (sum over the held-out
        values; ``-inf`` when the fitted density is zero at one of them, as a uniform can be),
        ``test_loglik_per_value`` and ``delta_test_loglik`` (best minus this row).
    """
    if isinstance(families, str):
        families = [families]
    names = [_check_family(f) for f in families]
    if not names:
        raise InputDataError(f"`families` is empty; choose from {list(ALL_FAMILIES)}.")
    test_fraction = check_positive(test_fraction, name="test_fraction", upper=1.0)
    arr = as_sample(x, name="x", min_size=16, nan_policy=nan_policy)
    gen = as_generator(rng)
    perm = gen.permutation(arr.size)
    n_test = min(max(int(round(test_fraction * arr.size)), 8), arr.size - 8)
    test, train = arr[perm[:n_test]], arr[perm[n_test:]]
    if train.min() == train.max():
        raise InputDataError("the training part of `x` is constant; pass more varied data.")
    rows = []
    for name in names:
        r = _fit_validated(train, name, gen)
        with np.errstate(divide="ignore"):
            t_ll = float(r.logpdf(test).sum())
        rows.append({"family": name, "n_params": r.n_params, "n_train": train.size,
                     "n_test": test.size, "train_loglik": r.loglik, "test_loglik": t_ll,
                     "test_loglik_per_value": t_ll / test.size})
    frame = pd.DataFrame(rows)
    frame["delta_test_loglik"] = frame["test_loglik"].max() - frame["test_loglik"]
    return frame.sort_values(["test_loglik", "family"], ascending=[False, True],
                             kind="stable").reset_index(drop=True)
