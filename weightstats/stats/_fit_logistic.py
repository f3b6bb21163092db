"""Logistic maximum likelihood by Newton's method on (loc, log scale).

The log-density is ``-z - 2 log(1 + exp(-z)) - log s`` with ``z = (x - loc) / s``; with
``t = tanh(z / 2)`` the score is ``(sum t / s, sum z t - n)`` and the Hessian follows from
``dt/dz = (1 - t**2) / 2``. Steps are halved until the log-likelihood increases.
"""

from __future__ import annotations

import math

import numpy as np

from ._core import subsample_start

__all__ = ["fit_logistic", "logistic_loglik"]


def logistic_loglik(x: np.ndarray, loc: float, scale: float) -> float:
    """Sum of ``scipy.stats.logistic.logpdf(x, loc, scale)``, computed stably."""
    a = np.abs(x - loc)
    a /= scale
    return float(-a.sum() - 2.0 * np.log1p(np.exp(-a)).sum() - x.size * math.log(scale))


def fit_logistic(x: np.ndarray, *, max_iter: int = 100, tol: float = 1e-12):
    """Return ``(params, loglik, converged, message)`` for the logistic MLE of `x`."""
    n = x.size
    sub = subsample_start(x)  # > 80,000 values: start from a fixed-seed subsample's fit
    if sub is not None:
        start = fit_logistic(sub, max_iter=max_iter, tol=tol)[0]
        loc, scale = start["loc"], start["scale"]
    else:
        loc = float(np.median(x))
        scale = float(x.std()) * math.sqrt(3.0) / math.pi
    ll = logistic_loglik(x, loc, scale)
    converged = False
    it = 0
    for it in range(1, max_iter + 1):
        z = (x - loc) / scale
        t = np.tanh(0.5 * z)
        h = 0.5 * (1.0 - t * t)
        zt = z * t
        g = np.array([t.sum() / scale, zt.sum() - n])
        hzz = (h * z).sum()
        hess = np.array(
            [
                [-h.sum() / scale**2, -(hzz + t.sum()) / scale],
                [-(hzz + t.sum()) / scale, -(zt.sum() + (h * z * z).sum())],
            ]
        )
        try:
            step = -np.linalg.solve(hess, g)
        except np.linalg.LinAlgError:
            step = np.array([g[0] * scale**2 / n, g[1] / n])
        if not (step @ g > 0):  # not an ascent direction: use a scaled gradient step
            step = np.array([g[0] * scale**2 / n, g[1] / n])
        lam = 1.0
        for _ in range(40):
            new_loc = loc + lam * step[0]
            new_scale = scale * math.exp(lam * step[1])
            new_ll = logistic_loglik(x, new_loc, new_scale)
            if new_ll >= ll:
                break
            lam *= 0.5
        else:
            new_loc, new_scale, new_ll = loc, scale, ll
        change = new_ll - ll
        loc, scale, ll = new_loc, new_scale, new_ll
        small = abs(step[0]) * lam <= 1e-10 * scale and abs(step[1]) * lam <= 1e-10
        if change <= tol * n and small:
            converged = True
            break
    message = f"Newton converged in {it} iterations" if converged else (
        f"Newton stopped at max_iter={max_iter}")
    return {"loc": loc, "scale": scale}, ll, converged, message
