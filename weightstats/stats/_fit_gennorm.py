"""Generalized normal maximum likelihood by profiling the shape beta.

The log-density is ``log beta - log 2 - log s - gammaln(1/beta) - |z|**beta``. For fixed beta and
loc the scale has the closed form ``s**beta = beta/n * sum|x - loc|**beta``; for fixed beta the
loc minimises ``S(loc) = sum|x - loc|**beta``, found as the root of the monotone
``S'(loc)`` for beta > 1 (Brent's method, warm-started), the median for beta = 1 and a bounded
1-D search (a local optimum; S is not convex) for beta < 1. The profile log-likelihood in beta
is then maximised by root-finding its derivative (envelope theorem: loc and scale are optimal)::

    dl/dbeta = n [1/b + psi(1/b)/b**2 + log(b S / n)/b**2] - S_log / S * n / b

where ``S_log = sum|d|**b log|d|``, on a bracket located by a bounded search on a seeded
subsample; if the bracket cannot be established the bounded search runs on the full sample.
All of this happens on the sample scaled to ``|z| <= 1`` (so ``|z|**beta`` cannot overflow).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize, special

__all__ = ["fit_gennorm", "gennorm_loglik", "BETA_MIN", "BETA_MAX"]

BETA_MIN = 0.1
BETA_MAX = 1e6
_SUBSAMPLE = 20_000


def gennorm_loglik(x: np.ndarray, beta: float, loc: float, scale: float) -> float:
    """Sum of ``scipy.stats.gennorm.logpdf(x, beta, loc, scale)``."""
    a = np.abs(x - loc) / scale
    return float(
        x.size * (math.log(beta) - math.log(2.0 * scale) - special.gammaln(1.0 / beta))
        - np.power(a, beta).sum()
    )


class _Profile:
    """Profile likelihood of beta on a standardised sample, remembering the last loc."""

    def __init__(self, z: np.ndarray) -> None:
        self.z = z
        self.n = z.size
        self.mu = float(np.median(z))
        self.width = 1e-2

    def loc(self, beta: float) -> float:
        z = self.z
        if beta == 1.0:
            return float(np.median(z))
        if beta < 1.0:
            lo, hi = np.quantile(z, [0.4, 0.6])
            res = optimize.minimize_scalar(
                lambda m: np.power(np.abs(z - m), beta).sum(), bounds=(lo, hi),
                method="bounded", options={"xatol": 1e-10},
            )
            return float(res.x)

        def score(m: float) -> float:
            # S'(m) up to a positive factor: |d|**(beta-1) rescaled by its maximum, so that it
            # neither overflows nor underflows to all zeros at large beta.
            d = z - m
            a = np.abs(d)
            top = float(a.max())
            return float((np.sign(d) * np.power(a / top, beta - 1.0)).sum())

        lo, hi = self.mu - self.width, self.mu + self.width
        f_lo, f_hi = score(lo), score(hi)
        for _ in range(60):
            if f_lo >= 0 and f_hi <= 0:
                break
            if f_lo < 0:
                lo -= 2 * (hi - lo)
                f_lo = score(lo)
            if f_hi > 0:
                hi += 2 * (hi - lo)
                f_hi = score(hi)
        if f_lo == 0:
            return lo
        if f_hi == 0:
            return hi
        return float(optimize.brentq(score, lo, hi, xtol=1e-13, rtol=1e-14))

    def evaluate(self, beta: float) -> tuple[float, float, float, float]:
        """Return (profile loglik, d loglik / d beta, loc, scale) at `beta`."""
        mu = self.loc(beta)
        self.width = max(abs(mu - self.mu) * 2, 1e-6)
        self.mu = mu
        d = np.abs(self.z - mu)
        with np.errstate(divide="ignore"):
            logd = np.log(d)
        logd[d == 0] = -1e300
        # S = sum|d|**beta in the log domain: log S = top + log sum exp(beta log d - top).
        bl = beta * logd
        top = float(bl.max())
        p = np.exp(bl - top)
        p_sum = float(p.sum())
        mean_logd = float((p * logd).sum()) / p_sum  # = S_log / S
        n = self.n
        log_bsn = math.log(beta) + top + math.log(p_sum) - math.log(n)  # log(beta S / n)
        log_scale = log_bsn / beta
        ll = n * (math.log(beta) - math.log(2.0) - log_scale - special.gammaln(1.0 / beta)
                  - 1.0 / beta)
        dll = n * (1.0 / beta + special.digamma(1.0 / beta) / beta**2
                   + log_bsn / beta**2) - n * mean_logd / beta
        scale = math.exp(log_scale)
        return ll, dll, mu, scale


def _bounded_search(prof: _Profile, lo: float, hi: float, xatol: float) -> float:
    res = optimize.minimize_scalar(
        lambda lb: -prof.evaluate(math.exp(lb))[0], bounds=(math.log(lo), math.log(hi)),
        method="bounded", options={"xatol": xatol},
    )
    return math.exp(res.x)


def fit_gennorm(x: np.ndarray, *, rng_seed: int = 0):
    """Return ``(params, loglik, converged, message)`` for the generalized normal MLE of `x`.

    The subsample that brackets beta is drawn with a fixed seed, so the fit is deterministic.
    """
    center = float(np.median(x))
    # Dividing by the largest deviation keeps |z| <= 1, so |z|**beta cannot overflow at any beta.
    spread = float(np.max(np.abs(x - center)))
    z = (x - center) / spread
    n = z.size
    how = "profile root"
    if n > _SUBSAMPLE:
        sub = z[np.random.default_rng(rng_seed).choice(n, _SUBSAMPLE, replace=False)]
        beta0 = _bounded_search(_Profile(sub), BETA_MIN, BETA_MAX, 1e-3)
    else:
        beta0 = _bounded_search(_Profile(z), BETA_MIN, BETA_MAX, 1e-3)
    prof = _Profile(z)
    lo, hi = max(beta0 / 1.15, BETA_MIN), min(beta0 * 1.15, BETA_MAX)
    g_lo, g_hi = prof.evaluate(lo)[1], prof.evaluate(hi)[1]
    for _ in range(20):
        if g_lo > 0 and g_hi < 0:
            break
        if g_lo <= 0 and lo > BETA_MIN:
            lo = max(lo / 1.5, BETA_MIN)
            g_lo = prof.evaluate(lo)[1]
        elif g_hi >= 0 and hi < BETA_MAX:
            hi = min(hi * 1.5, BETA_MAX)
            g_hi = prof.evaluate(hi)[1]
        else:
            break
    if g_lo > 0 and g_hi < 0:
        beta = optimize.brentq(lambda b: prof.evaluate(b)[1], lo, hi, xtol=1e-12, rtol=1e-12)
    else:
        how = "bounded search"
        beta = _bounded_search(prof, BETA_MIN, BETA_MAX, 1e-10)
    _, _, mu, scale = prof.evaluate(beta)
    loc = center + spread * mu
    scale = spread * scale
    ll = gennorm_loglik(x, beta, loc, scale)
    message = f"{how} in beta"
    if beta >= BETA_MAX * (1 - 1e-6):
        message += f"; beta at its upper bound {BETA_MAX:g} (uniform-like)"
    elif beta <= BETA_MIN * (1 + 1e-6):
        message += f"; beta at its lower bound {BETA_MIN:g}"
    if beta < 1:
        message += "; loc is a local optimum for beta < 1"
    return {"beta": beta, "loc": loc, "scale": scale}, ll, True, message
