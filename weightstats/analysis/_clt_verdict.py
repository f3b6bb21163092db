"""The per-tensor CLT verdict: a pure rule over evidence already computed.

Labels, checked in this order (the first that applies wins):

``undetermined`` (degenerate)
    W_0 or dW is constant, so there is nothing to decompose.
``inherited-from-init``
    W_0 explains at least ``INHERIT_SHARE`` of W_T's variance (``corr(W_0, W_T)**2``): the
    updates are too small to have changed the distribution, whatever their own shape.
``structured``
    dW's shape is a mixture (statistics engine), or the recorded trajectories show persistent
    per-coordinate update scales whose implied excess kurtosis (a Gaussian scale mixture's)
    stands above the noise floor: the accumulated update tends to a scale mixture, not to a
    Gaussian.
``heavy-tailed-updates``
    Single updates have a Hill tail index below 4 (infinite fourth moment, so the 1/n law does
    not hold), or the accumulated kurtosis never reaches its noise floor while decaying more
    slowly than ``n**-0.5``; with only two checkpoints, dW itself is heavy-tailed.
``clt-accumulation``
    dW dominates and the accumulated update's excess kurtosis decays at the CLT's rate (slope
    at most ``-0.5`` against the predicted -1), or the single updates are already within the
    noise floor of Gaussian. Autocorrelation is reported in the reason (n_eff instead of T).
``undetermined``
    Otherwise, saying what is missing (for two checkpoints: the trajectories that test the rate).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

__all__ = [
    "CLTVerdict",
    "decide_clt",
    "CLT_LABELS",
    "INHERIT_SHARE",
    "SLOPE_CONSISTENT",
    "TAIL_INDEX_HEAVY",
    "PERSISTENCE_MIN",
    "AUTOCORR_NEFF_RATIO",
]

CLT_LABELS = (
    "inherited-from-init",
    "clt-accumulation",
    "heavy-tailed-updates",
    "structured",
    "undetermined",
)

#: share of W_T's variance W_0 must explain for the tensor to count as inherited.
INHERIT_SHARE = 0.8
#: a fitted decay slope at or below this counts as consistent with the CLT's -1.
SLOPE_CONSISTENT = -0.5
#: Hill tail index below which the fourth moment is infinite.
TAIL_INDEX_HEAVY = 4.0
#: Spearman correlation of first- and second-half update scales that counts as persistent.
PERSISTENCE_MIN = 0.3
#: n_eff / T below which the updates are reported as autocorrelated.
AUTOCORR_NEFF_RATIO = 0.5
#: persistent-scale kurtosis above this many noise floors counts as structure.
FLOOR_MULTIPLE = 3.0


@dataclass(frozen=True)
class CLTVerdict:
    """A tensor's CLT label and the reason, in words, with the numbers that decided it.

    Attributes
    ----------
    label : str
        One of :data:`CLT_LABELS`.
    reason : str
        One sentence a reader can check against the table.
    """

    label: str
    reason: str

    def __repr__(self) -> str:
        return f"CLTVerdict({self.label!r}: {self.reason})"


def _f(x: Any) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return float("nan")


def _fin(x: Any) -> bool:
    return math.isfinite(_f(x))


def decide_clt(ev: Mapping[str, Any]) -> CLTVerdict:
    """Decide a tensor's CLT label from its evidence.

    Parameters
    ----------
    ev : mapping
        Keys (missing ones count as unavailable): ``init_variance_share``, ``relative_change``,
        ``shape_distance``, ``label_init``, ``label_update``, ``label_final``,
        ``has_trajectories``, and with trajectories ``n_steps``, ``n_coords``, ``n_eff``,
        ``tail_index``, ``scale_persistence``, ``persistent_scale_kurtosis``, ``decay_slope``,
        ``decay_fit_last``, ``decay_noise_floor``, ``decay_kappa1``, ``decay_final_kurtosis``.

    Returns
    -------
    CLTVerdict
    """
    share = _f(ev.get("init_variance_share"))
    rel = _f(ev.get("relative_change"))
    lab0, labd, labt = (ev.get("label_init"), ev.get("label_update"), ev.get("label_final"))
    traj = bool(ev.get("has_trajectories"))

    if labd == "degenerate" or (_fin(rel) and rel == 0):
        return CLTVerdict("undetermined", "dW is zero: the tensor did not change in training")
    if not _fin(share) or not _fin(rel):
        return CLTVerdict("undetermined", "W_0 or W_T is constant, so the correlation between "
                          "them (and the decomposition) is undefined")

    if share >= INHERIT_SHARE:
        return CLTVerdict(
            "inherited-from-init",
            f"W_0 explains {share:.0%} of W_T's variance (||dW||/||W_0|| = {rel:.3g}, shape "
            f"distance {_f(ev.get('shape_distance')):.3g}); W_T keeps W_0's shape "
            f"({lab0} -> {labt})",
        )
    lead = f"dW dominates (W_0 explains {share:.0%} of W_T's variance, ||dW||/||W_0|| = {rel:.3g})"

    if not traj:
        if labd == "mixture":
            return CLTVerdict("structured", f"{lead}; dW is a mixture")
        if labd == "heavy-tailed":
            return CLTVerdict("heavy-tailed-updates", f"{lead}; dW is heavy-tailed "
                              "(whether its kurtosis decays needs recorded trajectories)")
        what = ("consistent with CLT accumulation" if labd == "gaussian"
                else f"dW is {labd}")
        return CLTVerdict("undetermined", f"{lead}; {what}, but the rate at which dW approaches "
                          "a Gaussian needs recorded trajectories (only two checkpoints given)")

    floor = _f(ev.get("decay_noise_floor"))
    t = int(_f(ev.get("n_steps")))
    neff = _f(ev.get("n_eff"))
    slope = _f(ev.get("decay_slope"))
    alpha = _f(ev.get("tail_index"))
    kfin = _f(ev.get("decay_final_kurtosis"))
    kappa1 = _f(ev.get("decay_kappa1"))
    psk = _f(ev.get("persistent_scale_kurtosis"))
    pers = _f(ev.get("scale_persistence"))
    fit_last = int(_f(ev.get("decay_fit_last"))) if _fin(ev.get("decay_fit_last")) else 0

    if labd == "mixture":
        return CLTVerdict("structured", f"{lead}; dW is a mixture")
    if _fin(psk) and _fin(pers) and pers >= PERSISTENCE_MIN and psk > FLOOR_MULTIPLE * floor:
        return CLTVerdict(
            "structured",
            f"{lead}; per-coordinate update scales persist over the run (Spearman {pers:.2f} "
            f"between halves), implying excess kurtosis {psk:.3g} for the accumulated update "
            f"instead of 0 (observed {kfin:.3g})",
        )
    if _fin(alpha) and alpha < TAIL_INDEX_HEAVY:
        return CLTVerdict(
            "heavy-tailed-updates",
            f"{lead}; single updates have tail index {alpha:.3g} < 4 (infinite fourth moment), "
            f"so the kurtosis of the accumulated update cannot fall like 1/n (slope "
            f"{slope:.3g}, still {kfin:.3g} after {t} steps)",
        )
    if _fin(slope) and slope > SLOPE_CONSISTENT and fit_last >= t:
        return CLTVerdict(
            "heavy-tailed-updates",
            f"{lead}; the accumulated update's kurtosis does not decay (slope {slope:.3g} "
            f"against -1, still {kfin:.3g} after {t} steps)",
        )
    autocorr = ""
    if _fin(neff) and t > 0 and neff / t < AUTOCORR_NEFF_RATIO:
        autocorr = (f"; updates are autocorrelated (n_eff = {neff:.3g} of {t} steps), so the "
                    "kurtosis falls like kappa_1/n_eff rather than kappa_1/n")
    if _fin(slope) and slope <= SLOPE_CONSISTENT:
        return CLTVerdict(
            "clt-accumulation",
            f"{lead}; the accumulated update's excess kurtosis decays with slope {slope:.3g} "
            f"(CLT: -1) from kappa_1 = {kappa1:.3g} to {kfin:.3g} after {t} steps{autocorr}",
        )
    if not _fin(slope) and _fin(kappa1) and abs(kappa1) <= FLOOR_MULTIPLE * floor:
        return CLTVerdict(
            "clt-accumulation",
            f"{lead}; single updates are already Gaussian-shaped (kappa_1 = {kappa1:.3g}, "
            f"noise floor {floor:.3g}), so their sum is Gaussian; the 1/n rate is not "
            f"measurable{autocorr}",
        )
    return CLTVerdict(
        "undetermined",
        f"{lead}; the decay of the accumulated update's kurtosis could not be measured "
        f"(slope {slope:.3g}, kappa_1 = {kappa1:.3g}, floor {floor:.3g}){autocorr}",
    )
