"""Fit one family (:func:`fit`) or rank several by BIC (:func:`fit_families`).

Families: ``normal, laplace, logistic, t, gennorm, uniform`` (exact maximum likelihood, see
:mod:`weightstats.stats.families`) and ``gmm``, a Gaussian mixture with K = 1 ... 4 chosen by
BIC (:func:`weightstats.stats.mixture.select_gaussian_mixture`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np
import pandas as pd

from .._validation import as_sample
from ..errors import DegenerateDataWarning, FitError, InputDataError
from ._core import as_generator, check_int, information_criteria
from .families import FAMILIES
from .mixture import GaussianMixtureDist, _fit_all_k, _standardise

__all__ = ["FitResult", "fit", "fit_families", "ALL_FAMILIES", "DEFAULT_FAMILIES", "GMM_K_MAX"]

ALL_FAMILIES = ("normal", "laplace", "logistic", "t", "gennorm", "uniform", "gmm")
DEFAULT_FAMILIES = ALL_FAMILIES
GMM_K_MAX = 4

FIT_COLUMNS = [
    "family", "n_params", "loglik", "aic", "bic", "delta_bic", "akaike_weight", "n", "n_used",
    "converged", "message", "params",
]


def _gmm_dist(params: dict[str, float]) -> GaussianMixtureDist:
    k = sum(1 for key in params if key.startswith("weight_"))
    return GaussianMixtureDist(
        [params[f"weight_{i}"] for i in range(1, k + 1)],
        [params[f"mean_{i}"] for i in range(1, k + 1)],
        [params[f"sd_{i}"] for i in range(1, k + 1)],
    )


@dataclass(frozen=True)
class FitResult:
    """A maximum-likelihood fit of one family to one sample.

    Attributes
    ----------
    family : str
        One of ``normal, laplace, logistic, t, gennorm, uniform, gmm``.
    params : dict of str to float
        Fitted parameters in scipy's order (``df, loc, scale`` for t, ``beta, loc, scale`` for
        gennorm; ``weight_i, mean_i, sd_i`` for i = 1..k for gmm, sorted by mean).
    loglik : float
        Maximised log-likelihood.
    n : int
        Number of values fitted.
    aic, bic : float
        Akaike and Bayesian information criteria.
    converged : bool
        Whether the optimiser met its tolerance (closed forms are always converged).
    message : str
        How the optimum was found, and any caveat (a parameter at its bound).
    """

    family: str
    params: dict[str, float]
    loglik: float
    n: int
    aic: float
    bic: float
    converged: bool
    message: str = field(default="")

    @property
    def n_params(self) -> int:
        """Number of free parameters (``3k - 1`` for a k-component mixture)."""
        if self.family == "gmm":
            return 3 * sum(1 for key in self.params if key.startswith("weight_")) - 1
        return FAMILIES[self.family].n_params

    def dist(self) -> Any:
        """The fitted distribution: a frozen scipy distribution, or for ``gmm`` a
        :class:`~weightstats.stats.mixture.GaussianMixtureDist` with the same methods."""
        if self.family == "gmm":
            return _gmm_dist(self.params)
        return FAMILIES[self.family].frozen(self.params)

    def logpdf(self, x: Any) -> np.ndarray:
        """Pointwise log-density of the fitted distribution at `x`."""
        return self.dist().logpdf(np.asarray(x, dtype=np.float64))

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dictionary of every field plus ``n_params``."""
        return {
            "family": self.family, "params": dict(self.params), "loglik": self.loglik,
            "n": self.n, "aic": self.aic, "bic": self.bic, "n_params": self.n_params,
            "converged": self.converged, "message": self.message,
        }

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v:.4g}" for k, v in self.params.items())
        return (
            f"FitResult(family={self.family!r}, params=({params}), loglik={self.loglik:.6g}, "
            f"bic={self.bic:.6g}, n={self.n}, converged={self.converged})"
        )


def _check_family(family: Any) -> str:
    if not isinstance(family, str) or family not in ALL_FAMILIES:
        raise InputDataError(f"`family` must be one of {list(ALL_FAMILIES)}; got {family!r}.")
    return family


def _warn_point_mass(arr: np.ndarray) -> None:
    """Warn when exact zeros (pruned weights, say) form a point mass: continuous densities can
    grow without bound there, so t and gennorm fits degenerate (scale -> 0)."""
    n_zero = int(np.count_nonzero(arr == 0.0))
    if n_zero > 1 and n_zero >= 0.01 * arr.size:
        warnings.warn(
            f"`x` has {n_zero} exact zeros ({n_zero / arr.size:.1%} of the values), e.g. from "
            "pruning; a continuous family's likelihood is unbounded at a point mass, so the t "
            "and gennorm fits may degenerate. Fit x[x != 0] to describe the non-zero weights.",
            DegenerateDataWarning,
            stacklevel=3,
        )


def _fit_or_failed_row(arr: np.ndarray, family: str, gen: np.random.Generator) -> FitResult:
    """`_fit_validated`, but a family whose fit fails becomes a row that says so (loglik -inf,
    converged False, the reason in message) instead of ending the whole comparison."""
    try:
        return _fit_validated(arr, family, gen)
    except FitError as exc:
        names = FAMILIES[family].param_names if family in FAMILIES else ()
        return FitResult(family, {p: float("nan") for p in names}, -np.inf, arr.size, np.inf,
                         np.inf, False, str(exc))


def _fit_validated(arr: np.ndarray, family: str, gen: np.random.Generator,
                   std: tuple | None = None) -> FitResult:
    n = arr.size
    if family == "gmm":
        std = std if std is not None else _standardise(arr)
        fits = _fit_all_k(arr, GMM_K_MAX, gen=gen, n_init=4, max_iter=500, tol=1e-8, std=std)
        best = min(fits.values(), key=lambda f: (f.bic, f.k))
        params: dict[str, float] = {}
        for i in range(best.k):
            params[f"weight_{i + 1}"] = float(best.weights[i])
            params[f"mean_{i + 1}"] = float(best.means[i])
            params[f"sd_{i + 1}"] = float(best.sds[i])
        bics = ", ".join(f"k={k}: {f.bic:.6g}" for k, f in fits.items())
        message = f"EM, k={best.k} chosen by BIC ({bics})"
        if not best.converged:
            message += "; EM stopped at max_iter before converging"
        return FitResult("gmm", params, best.loglik, n, best.aic, best.bic, best.converged,
                         message)
    out = FAMILIES[family].fit(arr)  # raises FitError on a numerical breakdown
    aic, bic = information_criteria(out.loglik, FAMILIES[family].n_params, n)
    return FitResult(family, dict(out.params), float(out.loglik), n, aic, bic,
                     bool(out.converged), out.message)


def fit(x: Any, family: str, *, rng: Any = None, nan_policy: str = "raise") -> FitResult:
    """Fit `family` to the sample `x` by exact maximum likelihood.

    Parameters
    ----------
    x : array_like or torch.Tensor
        The sample (flattened); at least 8 finite values, not all equal.
    family : str
        One of ``normal, laplace, logistic, t, gennorm, uniform, gmm``. ``gmm`` fits K = 1..4
        components (4 seeded starts each, plus a start split from the K - 1 fit) and keeps the
        lowest BIC; it is the slowest family (seconds at 10^6 values), so subsample first
        (``fit_families(..., max_samples=...)``) when many tensors are analysed.
    rng : None, int or numpy.random.Generator
        Randomness for the mixture's EM starts (only ``gmm`` uses it); a fixed seed gives a
        deterministic result.
    nan_policy : {'raise', 'omit'}
        What to do with NaN and infinite values.

    Returns
    -------
    FitResult

    Raises
    ------
    InputDataError
        Empty, constant or too-small input, non-finite values with ``nan_policy='raise'``, or an
        unknown `family`.
    FitError
        The maximised log-likelihood is not finite.

    Warns
    -----
    DegenerateDataWarning
        When at least 1% of the values are exact zeros (a point mass, e.g. pruned weights).

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).standard_t(4, 100_000)
    >>> r = fit(x, "t")
    >>> round(r.params["df"], 1), r.converged
    (3.9, True)
    """
    family = _check_family(family)
    arr = as_sample(x, name="x", min_size=8, nan_policy=nan_policy)
    _warn_point_mass(arr)
    return _fit_validated(arr, family, as_generator(rng))


def fit_families(
    x: Any,
    families: Iterable[str] = DEFAULT_FAMILIES,
    *,
    max_samples: int | None = None,
    rng: Any = None,
    nan_policy: str = "raise",
) -> pd.DataFrame:
    """Fit several families to `x` and rank them by BIC.

    Parameters
    ----------
    x : array_like or torch.Tensor
        The sample (flattened); at least 8 finite values, not all equal.
    families : iterable of str
        Families to fit (default: all seven).
    max_samples : int, optional
        If given and `x` has more finite values, fit a uniform random subsample of this size
        (drawn with `rng`, without replacement); the ``n_used`` column then differs from ``n``.
    rng : None, int or numpy.random.Generator
        Randomness for the subsample and the mixture's starts.
    nan_policy : {'raise', 'omit'}
        What to do with NaN and infinite values.

    Returns
    -------
    pandas.DataFrame
        One row per family, sorted by BIC (best first), with columns ``family, n_params,
        loglik, aic, bic, delta_bic`` (BIC minus the best BIC), ``akaike_weight``
        (``exp(-delta_aic/2)`` normalised over the rows), ``n`` (finite values in `x`),
        ``n_used`` (values fitted), ``converged, message`` and ``params`` (a dict per row).
    """
    if isinstance(families, str):
        families = [families]
    names = [_check_family(f) for f in families]
    if not names:
        raise InputDataError(f"`families` is empty; choose from {list(ALL_FAMILIES)}.")
    if len(set(names)) != len(names):
        raise InputDataError(f"`families` lists a family twice: {names}.")
    arr = as_sample(x, name="x", min_size=8, nan_policy=nan_policy)
    _warn_point_mass(arr)
    gen = as_generator(rng)
    n = arr.size
    if max_samples is not None:
        max_samples = check_int(max_samples, name="max_samples", minimum=8)
        if n > max_samples:
            arr = arr[np.sort(gen.choice(n, max_samples, replace=False))]
            if arr.min() == arr.max():
                raise InputDataError(
                    "the subsample of `x` is constant; raise `max_samples` or pass all values."
                )
    results = [_fit_or_failed_row(arr, name, gen) for name in names]
    # Columns are assembled in numpy and the frame built once (building it row by row and
    # sorting in pandas cost ~2.5 ms, more than the closed-form fits themselves at n = 10^6).
    bic = np.array([r.bic for r in results])
    aic = np.array([r.aic for r in results])
    order = sorted(range(len(results)), key=lambda i: (bic[i], results[i].family))
    weights = np.exp(-0.5 * (aic - aic.min()))
    weights /= weights.sum()
    columns = {
        "family": [results[i].family for i in order],
        "n_params": np.array([results[i].n_params for i in order], dtype=np.int64),
        "loglik": np.array([results[i].loglik for i in order]),
        "aic": aic[order],
        "bic": bic[order],
        "delta_bic": (bic - bic.min())[order],
        "akaike_weight": weights[order],
        "n": np.full(len(order), n, dtype=np.int64),
        "n_used": np.full(len(order), arr.size, dtype=np.int64),
        "converged": np.array([results[i].converged for i in order], dtype=bool),
        "message": [results[i].message for i in order],
        "params": [dict(results[i].params) for i in order],
    }
    return pd.DataFrame(columns, columns=FIT_COLUMNS)
