"""Student-t maximum likelihood: Newton on (loc, log scale, log df) with an ECME fallback.

With ``z = (x - loc) / s``, ``w = (df + 1) / (df + z**2)`` and ``eta = log s``, the score is::

    d/dloc = sum(w z) / s
    d/deta = sum(w z**2) - n
    d/ddf  = n/2 [psi((df+1)/2) - psi(df/2) - 1/df] - 1/2 sum log(1 + z**2/df)
             + 1/2 sum(w z**2) / df

and the Hessian is written out in :func:`_grad_hess` (checked against finite differences in
the tests). A Newton step is taken on (loc, eta, log df) with step halving; if it cannot
increase the likelihood, one ECME step (EM update of loc and scale given the weights ``w``,
then a 1-D maximisation in df) is taken instead, which never decreases it.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize, special

from ._core import subsample_start

__all__ = ["fit_t", "t_loglik", "T_DF_MIN", "T_DF_MAX"]

T_DF_MIN = 0.05
T_DF_MAX = 1e6
_LOG_DF_BOUNDS = (math.log(T_DF_MIN), math.log(T_DF_MAX))


def _const(n: int, df: float, scale: float) -> float:
    # gammaln((df+1)/2) - gammaln(df/2) = gammaln(1/2) - betaln(df/2, 1/2); the betaln form keeps
    # its digits at large df, where the difference of two gammalns loses them.
    return n * (
        special.gammaln(0.5) - special.betaln(0.5 * df, 0.5)
        - 0.5 * math.log(df * math.pi) - math.log(scale)
    )


def t_loglik(x: np.ndarray, df: float, loc: float, scale: float) -> float:
    """Sum of ``scipy.stats.t.logpdf(x, df, loc, scale)``."""
    z = (x - loc) / scale
    z *= z
    z /= df
    return float(_const(x.size, df, scale) - 0.5 * (df + 1) * np.log1p(z).sum())


def _grad_hess(x: np.ndarray, df: float, loc: float, scale: float):
    """Score and Hessian of the log-likelihood in (loc, eta = log s, df)."""
    n = x.size
    z = (x - loc) / scale
    z2 = z * z
    denom = df + z2
    w = (df + 1) / denom
    wz = w * z
    wz2 = wz * z
    c = 2.0 / (df + 1)
    # d(w z)/dz = w - c w^2 z^2 ; d w / d df = (z^2 - 1) / (df + z^2)^2
    dwz = w - c * wz * wz
    dw_ddf = (z2 - 1.0) / (denom * denom)
    s_wz, s_wz2 = wz.sum(), wz2.sum()
    g_loc = s_wz / scale
    g_eta = s_wz2 - n
    g_df = (
        0.5 * n * (special.digamma(0.5 * (df + 1)) - special.digamma(0.5 * df) - 1.0 / df)
        - 0.5 * np.log1p(z2 / df).sum() + 0.5 * s_wz2 / df
    )
    h_ll = -dwz.sum() / scale**2
    h_le = -g_loc - (dwz * z).sum() / scale
    h_ld = (z * dw_ddf).sum() / scale
    h_ee = -(2.0 * wz2 - c * wz2 * wz2).sum()
    h_ed = (z2 * dw_ddf).sum()
    h_dd = (
        0.25 * n * (special.polygamma(1, 0.5 * (df + 1)) - special.polygamma(1, 0.5 * df))
        + 0.5 * n / df**2
        + 0.5 * (z2 * (df * z2 - 2.0 * df - z2) / (denom * denom)).sum() / df**2
    )
    g = np.array([g_loc, g_eta, g_df])
    h = np.array([[h_ll, h_le, h_ld], [h_le, h_ee, h_ed], [h_ld, h_ed, h_dd]])
    return g, h


def _ecme_step(x: np.ndarray, df: float, loc: float, scale: float):
    z = (x - loc) / scale
    w = (df + 1) / (df + z * z)
    sw = w.sum()
    loc = float((w * x).sum() / sw)
    scale = float(math.sqrt((w * (x - loc) ** 2).sum() / x.size))
    res = optimize.minimize_scalar(
        lambda ld: -t_loglik(x, math.exp(ld), loc, scale),
        bounds=_LOG_DF_BOUNDS, method="bounded", options={"xatol": 1e-6},
    )
    df = math.exp(res.x)
    return df, loc, scale


def fit_t(x: np.ndarray, *, max_iter: int = 200, tol: float = 1e-13):
    """Return ``(params, loglik, converged, message)`` for the Student-t MLE of `x`.

    On more than 80,000 values the start is the fit on a fixed-seed subsample of 20,000, so
    the full sample is only used by the final Newton iterations (deterministic).
    """
    n = x.size
    sub = subsample_start(x)
    if sub is not None:
        start, _, _, _ = fit_t(sub, max_iter=max_iter, tol=tol)
        df, loc, scale = start["df"], start["loc"], start["scale"]
    else:
        loc = float(np.median(x))
        q75, q25 = np.quantile(x, [0.75, 0.25])
        scale = float(q75 - q25) / 1.349 or float(x.std())
        df = 5.0
        for _ in range(2):  # two ECME steps give Newton a start in its basin
            df, loc, scale = _ecme_step(x, df, loc, scale)
    ll = t_loglik(x, df, loc, scale)
    converged = False
    it = 0
    n_ecme = 0
    for it in range(1, max_iter + 1):
        g, h = _grad_hess(x, df, loc, scale)
        # Chain rule to theta = (loc, eta, log df).
        gt = g * np.array([1.0, 1.0, df])
        ht = h * np.outer([1.0, 1.0, df], [1.0, 1.0, df])
        ht[2, 2] += df * g[2]
        at_bound = (math.log(df) >= _LOG_DF_BOUNDS[1] - 1e-9 and gt[2] > 0) or (
            math.log(df) <= _LOG_DF_BOUNDS[0] + 1e-9 and gt[2] < 0)
        step = None
        if at_bound:
            sub = np.linalg.solve(ht[:2, :2], gt[:2]) if np.all(np.isfinite(ht)) else None
            if sub is not None:
                step = np.array([-sub[0], -sub[1], 0.0])
        else:
            try:
                step = -np.linalg.solve(ht, gt)
            except np.linalg.LinAlgError:
                step = None
        improved = False
        if step is not None and np.all(np.isfinite(step)) and step @ gt > 0:
            lam = 1.0
            for _ in range(30):
                new_df = math.exp(min(max(math.log(df) + lam * step[2], _LOG_DF_BOUNDS[0]),
                                      _LOG_DF_BOUNDS[1]))
                new_loc = loc + lam * step[0]
                new_scale = scale * math.exp(lam * step[1])
                new_ll = t_loglik(x, new_df, new_loc, new_scale)
                if new_ll >= ll:
                    improved = True
                    break
                lam *= 0.5
        if not improved:
            n_ecme += 1
            new_df, new_loc, new_scale = _ecme_step(x, df, loc, scale)
            new_ll = t_loglik(x, new_df, new_loc, new_scale)
            if new_ll < ll:
                new_df, new_loc, new_scale, new_ll = df, loc, scale, ll
        change = new_ll - ll
        small = (abs(new_loc - loc) <= 1e-10 * scale and abs(math.log(new_scale / scale)) <= 1e-10
                 and abs(math.log(new_df / df)) <= 1e-8)
        df, loc, scale, ll = new_df, new_loc, new_scale, new_ll
        if change <= tol * n and small:
            converged = True
            break
    if converged:
        message = f"Newton converged in {it} iterations ({n_ecme} ECME fallbacks)"
    else:
        message = f"stopped at max_iter={max_iter}"
    if df >= T_DF_MAX * (1 - 1e-9):
        message += f"; df at its upper bound {T_DF_MAX:g} (tails as light as a normal's)"
    elif df <= T_DF_MIN * (1 + 1e-9):
        message += f"; df at its lower bound {T_DF_MIN:g}"
    return {"df": df, "loc": loc, "scale": scale}, ll, converged, message
