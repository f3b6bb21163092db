"""Numpy kernels for the CLT analysis: accumulated-update kurtosis, autocorrelation, spread.

Everything here works on plain float64 arrays of recorded coordinate trajectories:
``updates`` has shape ``(T, C)``, row ``s`` holding the update of ``C`` sampled coordinates at
recorded step ``s`` (one recorded update may itself be the sum of ``every`` optimiser steps).
The partial sums ``S_t = sum_{s<=t} u_s`` are the accumulated update after ``t`` recorded steps.

The quantities, and why each one is the right check of a CLT assumption or prediction:

* **Cross-sectional excess kurtosis of S_t** (over the C coordinates). If the updates are
  independent over time with step-wise cross-sectional variance ``v_s`` and excess kurtosis
  ``k_s``, cumulants add, so ``kurt(S_t) = sum_s k_s v_s**2 / (sum_s v_s)**2``; for identically
  distributed steps this is ``kappa_1 / t``. An infinite fourth moment (Student-t with 2.5
  degrees of freedom) breaks the 1/t law; autocorrelation slows it to ``kappa_1 / n_eff``.
* **Noise floor.** The sample excess kurtosis of C Gaussian values has standard error
  ``sqrt(24 / C)``; below about three times that, log|kurtosis| is mostly noise, so the decay slope is
  estimated only while the curve is above the floor.
* **Pooled autocorrelation** of the step-standardised updates and the effective number of
  independent steps ``n_eff = T / tau`` (Geyer's initial positive sequence for ``tau``).
* **Spread over time**, the **Lindeberg-style largest single-step share**, the **persistence of
  per-coordinate scales** (row-scale structure) and a **Hill tail index** of single-step updates.
"""

from __future__ import annotations

from dataclasses import dataclass, asdict
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as _sps

from ..errors import InputDataError

__all__ = [
    "as_trajectories",
    "row_excess_kurtosis",
    "pooled_acf",
    "integrated_autocorrelation_time",
    "hill_tail_index",
    "kurtosis_curve",
    "fit_kurtosis_decay",
    "KurtosisDecay",
    "TrajectoryDiagnostics",
    "trajectory_diagnostics",
    "Decomposition",
    "decomposition",
]

#: the slope fit stops where |kurtosis| first falls below ``FLOOR_FACTOR * sqrt(24 / C)``; 3 rather
#: than 2 because stopping at the first dip biases the slope shallow (on +-1 updates, C=1024,
#: 8 seeds: mean slope -0.91 with factor 2, -0.97 with factor 3).
FLOOR_FACTOR = 3.0


def as_trajectories(steps: Any, updates: Any, *, min_steps: int = 4, min_coords: int = 8):
    """Validate recorded trajectories; return ``(steps (T,), updates (T, C))`` as float64.

    Raises :class:`InputDataError` naming the argument and the fix.
    """
    u = np.asarray(updates, dtype=np.float64) if not hasattr(updates, "detach") else (
        updates.detach().cpu().double().numpy()
    )
    if u.ndim != 2:
        raise InputDataError(
            f"`updates` must have shape (steps, coordinates); got {u.ndim} dimension(s) "
            f"{tuple(u.shape)}."
        )
    t, c = u.shape
    if t < min_steps:
        raise InputDataError(
            f"`updates` has {t} recorded step(s); at least {min_steps} are needed to test the CLT."
        )
    if c < min_coords:
        raise InputDataError(
            f"`updates` has {c} coordinate(s); at least {min_coords} are needed for "
            "cross-sectional statistics."
        )
    if not np.isfinite(u).all():
        bad = int(np.count_nonzero(~np.isfinite(u)))
        raise InputDataError(f"`updates` has {bad} non-finite value(s); the run diverged or "
                             "the store is corrupt.")
    if steps is None:
        s = np.arange(1, t + 1, dtype=np.float64)
    else:
        s = np.asarray(steps, dtype=np.float64).reshape(-1)
        if s.size != t:
            raise InputDataError(f"`steps` has {s.size} values but `updates` has {t} rows.")
        if t > 1 and not np.all(np.diff(s) > 0):
            raise InputDataError("`steps` must be strictly increasing.")
    return s, u


def row_excess_kurtosis(x: np.ndarray) -> np.ndarray:
    """Excess kurtosis of each row (biased moment estimator, as ``scipy.stats.kurtosis``).

    Rows with zero variance give NaN.
    """
    x = np.asarray(x, dtype=np.float64)
    d = x - x.mean(axis=-1, keepdims=True)
    d2 = d * d
    m2 = d2.mean(axis=-1)
    m4 = (d2 * d2).mean(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = m4 / (m2 * m2) - 3.0
    out[~(m2 > 0)] = np.nan
    return out


def pooled_acf(z: np.ndarray, max_lag: int) -> np.ndarray:
    """Autocorrelation at lags 0..max_lag, pooled over the columns of ``z`` (T, C).

    ``rho_k = sum_{s, c} z[s, c] z[s+k, c] / sum_{s, c} z[s, c]**2`` with no further centring
    (the caller centres and scales); for one column this is statsmodels'
    ``acf(x, demean=False, adjusted=False)``.
    """
    z = np.asarray(z, dtype=np.float64)
    if z.ndim == 1:
        z = z[:, None]
    t = z.shape[0]
    max_lag = int(min(max_lag, t - 1))
    denom = float(np.sum(z * z))
    if denom == 0:
        return np.full(max_lag + 1, np.nan)
    out = np.empty(max_lag + 1)
    out[0] = 1.0
    for k in range(1, max_lag + 1):
        out[k] = float(np.sum(z[:-k] * z[k:])) / denom
    return out


def integrated_autocorrelation_time(rho: np.ndarray) -> tuple[float, bool]:
    """Geyer's initial positive sequence estimate of ``tau = 1 + 2 sum_{k>=1} rho_k``.

    Pairs ``Gamma_m = rho_{2m} + rho_{2m+1}`` are summed while positive (Geyer 1992, Statistical
    Science 7, 473). Returns ``(tau, truncated)``, where ``truncated`` is True when the sequence
    was still positive at the last lag available, so ``tau`` is a lower bound. ``tau`` is at
    least ``1 / T``-safe: it is clipped below at 0.05 (strongly alternating updates).
    """
    rho = np.asarray(rho, dtype=np.float64)
    if rho.size < 2 or not np.isfinite(rho).all():
        return float("nan"), False
    total = 0.0
    m = 0
    truncated = True
    while 2 * m + 1 < rho.size:
        gamma = rho[2 * m] + rho[2 * m + 1]
        if gamma <= 0:
            truncated = False
            break
        total += gamma
        m += 1
    tau = -1.0 + 2.0 * total
    return float(max(tau, 0.05)), truncated


def hill_tail_index(x: np.ndarray, *, k: int) -> float:
    """Hill estimate of the tail index from the ``k`` largest values of ``|x|``.

    ``alpha = 1 / mean(log(|x|_(i) / |x|_(k+1)), i <= k)``; infinite when the top values are all
    equal (bounded updates such as +-1).
    """
    a = np.sort(np.abs(np.asarray(x, dtype=np.float64)).reshape(-1))[::-1]
    k = int(min(k, a.size - 1))
    if k < 2 or a[k] <= 0:
        return float("nan")
    gamma = float(np.mean(np.log(a[:k] / a[k])))
    return float("inf") if gamma == 0 else 1.0 / gamma


def kurtosis_curve(steps: np.ndarray, updates: np.ndarray) -> pd.DataFrame:
    """The accumulated update's cross-sectional excess kurtosis after each recorded step.

    Returns
    -------
    pandas.DataFrame
        One row per recorded step: ``n`` (updates summed, 1..T), ``step`` (recorded optimiser
        step), ``kurtosis`` (excess kurtosis of S_n over the C coordinates), ``step_kurtosis``
        (excess kurtosis of the single update u_n), ``step_variance`` (cross-sectional variance
        of u_n), ``predicted_iid`` (``kappa_1 / n`` with ``kappa_1`` the mean of
        ``step_kurtosis``), ``predicted_independent`` (cumulant sum
        ``sum k_s v_s**2 / (sum v_s)**2``, which allows the spread to drift) and ``noise_floor``
        (``sqrt(24 / C)``).
    """
    steps, u = as_trajectories(steps, updates)
    t, c = u.shape
    s_acc = np.cumsum(u, axis=0)
    kurt = row_excess_kurtosis(s_acc)
    k_step = row_excess_kurtosis(u)
    v_step = u.var(axis=1)
    kappa1 = float(np.nanmean(k_step)) if np.isfinite(k_step).any() else float("nan")
    n = np.arange(1, t + 1, dtype=np.float64)
    cum4 = np.cumsum(np.nan_to_num(k_step) * v_step**2)
    cumv = np.cumsum(v_step)
    with np.errstate(divide="ignore", invalid="ignore"):
        pred_indep = np.where(cumv > 0, cum4 / cumv**2, np.nan)
    return pd.DataFrame({
        "n": n.astype(np.int64),
        "step": steps,
        "kurtosis": kurt,
        "step_kurtosis": k_step,
        "step_variance": v_step,
        "predicted_iid": kappa1 / n,
        "predicted_independent": pred_indep,
        "noise_floor": np.full(t, np.sqrt(24.0 / c)),
    })


@dataclass(frozen=True)
class KurtosisDecay:
    """How fast the accumulated update's excess kurtosis decays with the number of steps.

    Attributes
    ----------
    slope, slope_se, intercept : float
        Least-squares fit of ``log|kurtosis|`` on ``log n`` over ``fit_first..fit_last``
        (log-spaced points while the curve stays above ``FLOOR_FACTOR * noise_floor``); the CLT
        with a finite fourth moment predicts slope -1. NaN when fewer than 3 points qualify.
    kappa1 : float
        Mean cross-sectional excess kurtosis of a single recorded update.
    noise_floor : float
        ``sqrt(24 / C)``, the standard error of a Gaussian sample's excess kurtosis.
    fit_first, fit_last, n_fit_points : int
        Range of ``n`` used and the number of (log-spaced) points regressed.
    final_kurtosis, predicted_iid_final, predicted_independent_final : float
        Observed excess kurtosis of S_T, and ``kappa1 / T`` and the cumulant-sum prediction.
    note : str
        Why the slope is missing or what limits it.
    """

    slope: float
    slope_se: float
    intercept: float
    kappa1: float
    noise_floor: float
    fit_first: int
    fit_last: int
    n_fit_points: int
    final_kurtosis: float
    predicted_iid_final: float
    predicted_independent_final: float
    note: str

    def __repr__(self) -> str:
        return (f"KurtosisDecay(slope={self.slope:.3g} ± {self.slope_se:.2g}, "
                f"kappa1={self.kappa1:.3g}, n={self.fit_first}..{self.fit_last} "
                f"({self.n_fit_points} points), final={self.final_kurtosis:.3g}, "
                f"floor={self.noise_floor:.3g})")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fit_kurtosis_decay(curve: pd.DataFrame, *, n_points: int = 20) -> KurtosisDecay:
    """Estimate the decay slope of ``log|kurtosis|`` against ``log n`` from a :func:`kurtosis_curve`.

    The fit uses the initial stretch of the curve where ``|kurtosis|`` stays above
    ``FLOOR_FACTOR * sqrt(24 / C)`` (after it first drops below, the curve is noise), sampled
    at up to `n_points` log-spaced values of ``n`` so that late steps do not dominate.
    """
    kurt = curve["kurtosis"].to_numpy()
    floor = float(curve["noise_floor"].iloc[0])
    t = kurt.size
    pred_iid = curve["predicted_iid"].to_numpy()
    pred_ind = curve["predicted_independent"].to_numpy()
    kappa1 = float(pred_iid[0])
    above = np.abs(kurt) > FLOOR_FACTOR * floor
    above &= np.isfinite(kurt)
    end = t if above.all() else int(np.argmin(above))
    nan = float("nan")
    base = dict(kappa1=kappa1, noise_floor=floor, final_kurtosis=float(kurt[-1]),
                predicted_iid_final=float(pred_iid[-1]),
                predicted_independent_final=float(pred_ind[-1]))
    if end < 3:
        note = ("the accumulated update's kurtosis is within the noise floor "
                f"({FLOOR_FACTOR:g} x sqrt(24/C) = {FLOOR_FACTOR * floor:.3g}) "
                f"after {end} step(s): the single updates are already close to Gaussian, "
                "so the 1/n rate cannot be measured")
        return KurtosisDecay(nan, nan, nan, fit_first=1, fit_last=end, n_fit_points=end,
                             note=note, **base)
    idx = np.unique(np.round(np.logspace(0, np.log10(end), n_points)).astype(int)) - 1
    idx = idx[idx < end]
    if idx.size < 3:
        idx = np.arange(end)
    x = np.log(idx + 1.0)
    y = np.log(np.abs(kurt[idx]))
    res = _sps.linregress(x, y)
    note = (f"slope of log|kurtosis| on log n over n = 1..{end}, where |kurtosis| > "
            f"{FLOOR_FACTOR:g} x sqrt(24/C) = {FLOOR_FACTOR * floor:.3g}")
    if end == t:
        note += "; the curve never reached the noise floor"
    return KurtosisDecay(float(res.slope), float(res.stderr), float(res.intercept),
                         fit_first=1, fit_last=int(end), n_fit_points=int(idx.size),
                         note=note, **base)


@dataclass(frozen=True)
class TrajectoryDiagnostics:
    """The CLT's assumptions and prediction, measured on recorded coordinate trajectories.

    Attributes
    ----------
    n_steps, n_coords : int
        T recorded updates of C sampled coordinates.
    acf : tuple of float
        Pooled autocorrelation of the step-standardised updates at lags 1..L.
    tau, n_eff : float
        Integrated autocorrelation time and effective number of independent steps ``T / tau``.
    tau_truncated : bool
        True when the autocorrelation was still positive at lag L (``n_eff`` is an upper bound).
    spread_ratio : float
        Mean cross-sectional update variance over the last quarter of the steps divided by that
        over the first quarter (1 for identical spread).
    n_equivalent_spread : float
        ``(sum v_s)**2 / sum v_s**2``: how many equally sized steps the spread profile amounts to.
    max_step_variance_share : float
        Largest single step's share of the summed variance ``max v_s / sum v_s``.
    max_step_share : float
        Lindeberg-style: median over coordinates of ``max_s u_s**2 / sum_s u_s**2``.
    scale_persistence : float
        Spearman correlation, over coordinates, of the mean-square update in the first and the
        second half of the steps (0 when every coordinate has the same update law).
    persistent_scale_kurtosis : float
        ``3 cov(m1, m2) / (mean m1 mean m2)`` of those half-run mean squares: the excess kurtosis
        a Gaussian scale mixture with the persistent part of the scales would have, i.e. the
        level the accumulated update's kurtosis tends to instead of 0.
    tail_index : float
        Hill estimate from the top 0.2% of the pooled step-standardised single updates; below 4
        the fourth moment is infinite and the 1/n law does not apply.
    decay : KurtosisDecay
        The slope of the accumulated update's kurtosis against the number of steps.
    """

    n_steps: int
    n_coords: int
    acf: tuple[float, ...]
    tau: float
    n_eff: float
    tau_truncated: bool
    spread_ratio: float
    n_equivalent_spread: float
    max_step_variance_share: float
    max_step_share: float
    scale_persistence: float
    persistent_scale_kurtosis: float
    tail_index: float
    decay: KurtosisDecay

    def __repr__(self) -> str:
        lag1 = self.acf[0] if self.acf else float("nan")
        return (f"TrajectoryDiagnostics(T={self.n_steps}, C={self.n_coords}, acf1={lag1:.3g}, "
                f"n_eff={self.n_eff:.4g}, spread_ratio={self.spread_ratio:.3g}, "
                f"max_step_share={self.max_step_share:.3g}, "
                f"scale_persistence={self.scale_persistence:.3g}, "
                f"tail_index={self.tail_index:.3g}, decay={self.decay!r})")

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k not in ("acf", "decay")}
        out["acf_lag1"] = self.acf[0] if self.acf else float("nan")
        out.update({f"decay_{k}": v for k, v in self.decay.to_dict().items()})
        return out


def trajectory_diagnostics(
    steps: Any, updates: Any, *, max_lag: int | None = None, curve: pd.DataFrame | None = None
) -> TrajectoryDiagnostics:
    """Measure independence, identical spread, Lindeberg share, scale structure and the decay.

    Parameters
    ----------
    steps : array_like of shape (T,) or None
        Recorded optimiser step of each update (None: 1..T).
    updates : array_like of shape (T, C)
        Update of each sampled coordinate at each recorded step.
    max_lag : int, optional
        Largest autocorrelation lag (default ``min(50, T // 4)``, at least 1).
    curve : DataFrame, optional
        A :func:`kurtosis_curve` already computed for these trajectories.
    """
    steps, u = as_trajectories(steps, updates)
    t, c = u.shape
    if max_lag is None:
        max_lag = max(1, min(50, t // 4))
    if int(max_lag) < 1:
        raise InputDataError(f"`max_lag` must be at least 1; got {max_lag}.")
    # Independence: centre and scale each step across coordinates, so that a drifting spread
    # or a common shift does not masquerade as autocorrelation.
    sd = u.std(axis=1, keepdims=True)
    z = np.divide(u - u.mean(axis=1, keepdims=True), sd, out=np.zeros_like(u), where=sd > 0)
    rho = pooled_acf(z, int(max_lag))
    tau, truncated = integrated_autocorrelation_time(rho)
    # Identical spread over time.
    v = u.var(axis=1)
    q = max(1, t // 4)
    first, last = float(v[:q].mean()), float(v[-q:].mean())
    spread_ratio = last / first if first > 0 else float("nan")
    vsum = float(v.sum())
    n_equiv = vsum**2 / float(np.sum(v * v)) if vsum > 0 else float("nan")
    max_var_share = float(v.max() / vsum) if vsum > 0 else float("nan")
    # Lindeberg-style share of the largest single step, per coordinate.
    sq = u * u
    tot = sq.sum(axis=0)
    moving = tot > 0
    share = sq[:, moving].max(axis=0) / tot[moving] if moving.any() else np.array([np.nan])
    # Persistence of per-coordinate scales between the two halves of the run.
    h = t // 2
    m1, m2 = sq[:h].mean(axis=0), sq[h:].mean(axis=0)
    if np.ptp(m1) > 0 and np.ptp(m2) > 0:
        persistence = float(_sps.spearmanr(m1, m2).statistic)
        psk = float(3.0 * np.cov(m1, m2)[0, 1] / (m1.mean() * m2.mean()))
    else:
        persistence, psk = 0.0, 0.0
    # Tail index of single updates, each step standardised by its own spread.
    k = max(50, int(0.002 * z.size))
    tail = hill_tail_index(z[sd[:, 0] > 0], k=k)
    if curve is None:
        curve = kurtosis_curve(steps, u)
    return TrajectoryDiagnostics(
        n_steps=t, n_coords=c, acf=tuple(float(r) for r in rho[1:]), tau=tau,
        n_eff=t / tau if np.isfinite(tau) else float("nan"), tau_truncated=truncated,
        spread_ratio=spread_ratio, n_equivalent_spread=n_equiv,
        max_step_variance_share=max_var_share, max_step_share=float(np.median(share)),
        scale_persistence=persistence, persistent_scale_kurtosis=psk, tail_index=tail,
        decay=fit_kurtosis_decay(curve),
    )


@dataclass(frozen=True)
class Decomposition:
    """How the trained tensor W_T = W_0 + dW splits between initialisation and update.

    Attributes
    ----------
    numel : int
    relative_change : float
        ``||dW|| / ||W_0||`` (Frobenius): small for lazy training, large for rich training.
    corr_init_final : float
        Pearson correlation of W_0 and W_T over the entries.
    init_variance_share : float
        Share of W_T's variance explained (linearly) by W_0, ``corr**2``.
    shape_distance : float
        Two-sample Kolmogorov-Smirnov statistic between the standardised W_0 and W_T (0: same
        shape up to location and scale), from ``scipy.stats.ks_2samp``.
    """

    numel: int
    relative_change: float
    corr_init_final: float
    init_variance_share: float
    shape_distance: float

    def __repr__(self) -> str:
        return (f"Decomposition(numel={self.numel}, relative_change={self.relative_change:.3g}, "
                f"corr_init_final={self.corr_init_final:.3g}, "
                f"init_variance_share={self.init_variance_share:.3g}, "
                f"shape_distance={self.shape_distance:.3g})")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _standardise(x: np.ndarray) -> np.ndarray:
    sd = x.std()
    return (x - x.mean()) / sd if sd > 0 else x - x.mean()


def decomposition(w0: np.ndarray, wt: np.ndarray, *, rng: np.random.Generator,
                  max_samples: int = 50_000) -> Decomposition:
    """Compute :class:`Decomposition` for flat, equally long float64 arrays ``w0`` and ``wt``."""
    dw = wt - w0
    n0 = float(np.linalg.norm(w0))
    rel = float(np.linalg.norm(dw)) / n0 if n0 > 0 else float("inf")
    if np.ptp(w0) > 0 and np.ptp(wt) > 0:
        corr = float(np.corrcoef(w0, wt)[0, 1])
    else:
        corr = float("nan")
    a, b = _standardise(w0), _standardise(wt)
    if a.size > max_samples:
        a = rng.choice(a, max_samples, replace=False)
        b = rng.choice(b, max_samples, replace=False)
    dist = float(_sps.ks_2samp(a, b, method="asymp").statistic) if np.ptp(w0) > 0 and np.ptp(wt) > 0 else (
        float("nan"))
    return Decomposition(numel=int(w0.size), relative_change=rel, corr_init_final=corr,
                         init_variance_share=corr**2 if np.isfinite(corr) else float("nan"),
                         shape_distance=dist)
