"""Differentiable log I_v(kappa) and the ratio I_{v+1}(kappa) / I_v(kappa) for torch.

The von Mises-Fisher normaliser and mean need the modified Bessel function of the first kind
I_v at order ``v = d/2 - 1`` (0 ... 31 for d = 2 ... 64) and concentrations from 1e-3 to 1e4.
``I_v(1e4)`` overflows float64 (it is about e^10000), and torch only has ``i0e``/``i1e``, so the
values come from :func:`scipy.special.ive` (the exponentially scaled ``I_v(x) e^{-x}``, which
lies in (0, 1] and never overflows) inside :class:`torch.autograd.Function` objects, computed in
float64 and returned in the caller's dtype.

``ive`` *underflows* to 0 (or loses precision in the subnormal range) when the order is large
and the argument small, roughly when ``v log(2v / (e x)) > 700``: ``ive(60, 1e-3)`` is 1e-280 but
``ive(100, 1e-3)`` is 0, and so is ``ive(1000, 500)``. There we switch to

* the power series ``I_v(x) = (x/2)^v / Gamma(v+1) * sum_k (x^2/4)^k / (k! (v+1)_k)`` summed in
  log space when ``x^2 / 4 <= v + 1`` (every term is at most half the previous one), and
* the uniform (Debye) asymptotic expansion in ``v`` (DLMF 10.41.3, four correction terms)
  otherwise, which is only reached for ``v > 100`` where its relative error is below 1e-12;

and, for the ratio, to the backward recurrence ``r_v = x / (2(v+1) + x r_{v+1})`` (Gauss's
continued fraction) started 64 orders higher from Amos's (1974) approximation
``r_v ~ x / (v + 1/2 + sqrt((v + 3/2)^2 + x^2))``; an error in the start is damped by a factor
``r^2 << 1`` at every step in the region where it is used (x small against v).

Derivatives (DLMF 10.29.2): ``d/dx log I_v(x) = r_v(x) + v / x`` and
``d/dx r_v(x) = 1 - r_v^2 - (2v + 1) r_v / x``. Both backward passes are written with
differentiable torch operations on :func:`bessel_ratio`, so second derivatives work too. Neither
function is differentiable in the order ``v``.

References
----------
DLMF, NIST Digital Library of Mathematical Functions, sections 10.25, 10.29, 10.33, 10.41.
D. E. Amos (1974), Computation of modified Bessel functions and their ratios, Math. Comp. 28.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import special

from ..errors import InputDataError

__all__ = ["bessel_ratio", "log_bessel_iv", "log_bessel_iv_reduced", "log_bessel_ive"]

#: below this, ive's result is treated as underflowed (subnormal values lose digits).
_TINY = 1e-280
_SERIES_TERMS = 40
_RECURRENCE_DEPTH = 64


def _check(v, kappa, fname: str) -> tuple[torch.Tensor, torch.Tensor, torch.dtype]:
    if not torch.is_tensor(kappa):
        kappa = torch.as_tensor(kappa, dtype=torch.float64)
    out_dtype = kappa.dtype if kappa.is_floating_point() else torch.float64
    if torch.is_tensor(v) and v.requires_grad:
        raise InputDataError(f"{fname}: the order `v` cannot require grad; pass a plain number.")
    v = torch.as_tensor(v, dtype=torch.float64, device=kappa.device).detach()
    if not bool(torch.isfinite(v).all()) or bool((v < 0).any()):
        raise InputDataError(f"{fname}: the order `v` must be finite and >= 0; got {v.tolist()}.")
    k = kappa.detach()
    if not bool(torch.isfinite(k).all()) or bool((k < 0).any()):
        raise InputDataError(
            f"{fname}: `kappa` must be finite and >= 0; got min {float(k.min()):.6g}, "
            f"max {float(k.max()):.6g} (NaN/Inf present: {not bool(torch.isfinite(k).all())})."
        )
    return v, kappa, out_dtype


# ---------------------------------------------------------------------------------------------
# numpy kernels (float64)
# ---------------------------------------------------------------------------------------------


def _log_iv_series(v: np.ndarray, x: np.ndarray) -> np.ndarray:
    """log I_v(x) by the power series; accurate to 1e-15 relative when x^2/4 <= v + 1."""
    q = x * x / 4.0
    term = np.zeros_like(x)  # log of the k-th term over the 0-th
    logs = [term.copy()]
    for k in range(1, _SERIES_TERMS):
        term = term + np.log(q, where=q > 0, out=np.full_like(q, -np.inf)) - np.log(k * (v + k))
        logs.append(term.copy())
    with np.errstate(divide="ignore"):
        lead = v * np.log(x / 2.0) - special.gammaln(v + 1.0)
    lead = np.where(v == 0, -special.gammaln(1.0), lead)  # 0 * log(0) is 0 when v = 0
    return lead + special.logsumexp(np.stack(logs), axis=0)


def _log_iv_debye(v: np.ndarray, x: np.ndarray) -> np.ndarray:
    """log I_v(x) by the uniform asymptotic expansion for large v (DLMF 10.41.3)."""
    z = x / v
    s = np.sqrt(1.0 + z * z)
    t = 1.0 / s
    eta = s + np.log(z / (1.0 + s))
    t2 = t * t
    u1 = t * (3.0 - 5.0 * t2) / 24.0
    u2 = t2 * (81.0 - 462.0 * t2 + 385.0 * t2 * t2) / 1152.0
    u3 = t * t2 * (30375.0 - 369603.0 * t2 + 765765.0 * t2**2 - 425425.0 * t2**3) / 414720.0
    u4 = (
        t2
        * t2
        * (
            4465125.0
            - 94121676.0 * t2
            + 349922430.0 * t2**2
            - 446185740.0 * t2**3
            + 185910725.0 * t2**4
        )
        / 39813120.0
    )
    corr = 1.0 + u1 / v + u2 / v**2 + u3 / v**3 + u4 / v**4
    return v * eta - 0.5 * np.log(2.0 * np.pi * v) + 0.5 * np.log(t) + np.log(corr)


def _log_ive_np(v: np.ndarray, x: np.ndarray) -> np.ndarray:
    """log(I_v(x) e^{-x}) in float64 for v >= 0, x >= 0 (broadcast)."""
    v, x = np.broadcast_arrays(np.asarray(v, dtype=np.float64), np.asarray(x, dtype=np.float64))
    shape = v.shape
    v, x = v.reshape(-1), x.reshape(-1)
    val = special.ive(v, x)
    with np.errstate(divide="ignore"):
        out = np.log(val)
    bad = ~(val > _TINY)
    if bad.any():
        vb, xb = v[bad], x[bad]
        series = xb * xb / 4.0 <= vb + 1.0
        fb = np.empty_like(xb)
        fb[series] = _log_iv_series(vb[series], xb[series])
        # ive only underflows with x < v here, so the Debye branch always has v > 100.
        deb = ~series
        fb[deb] = _log_iv_debye(vb[deb], xb[deb])
        out[bad] = fb - xb
    return out.reshape(shape)


def _ratio_np(v: np.ndarray, x: np.ndarray) -> np.ndarray:
    """I_{v+1}(x) / I_v(x) in float64 (broadcast)."""
    v, x = np.broadcast_arrays(np.asarray(v, dtype=np.float64), np.asarray(x, dtype=np.float64))
    shape = v.shape
    v, x = v.reshape(-1), x.reshape(-1)
    num = special.ive(v + 1.0, x)
    den = special.ive(v, x)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = num / den
    bad = ~((num > _TINY) & (den > _TINY))
    if bad.any():
        vb, xb = v[bad], x[bad]
        top = vb + _RECURRENCE_DEPTH
        r = xb / (top + 0.5 + np.sqrt((top + 1.5) ** 2 + xb * xb))  # Amos (1974) start
        for j in range(_RECURRENCE_DEPTH - 1, -1, -1):
            r = xb / (2.0 * (vb + j + 1.0) + xb * r)
        out[bad] = r
    return out.reshape(shape)


def _log_reduced_np(v: np.ndarray, x: np.ndarray) -> np.ndarray:
    """log(Gamma(v+1) (2/x)^v I_v(x)) in float64; 0 at x = 0, about x^2 / (4(v+1)) near it."""
    v, x = np.broadcast_arrays(np.asarray(v, dtype=np.float64), np.asarray(x, dtype=np.float64))
    shape = v.shape
    v, x = v.reshape(-1), x.reshape(-1)
    out = np.empty_like(x)
    small = x * x / 4.0 <= v + 1.0
    # series 1 + sum_k (x^2/4)^k / (k! (v+1)_k): each term at most half the previous one
    q, vs = x[small] ** 2 / 4.0, v[small]
    term, total = np.ones_like(q), np.zeros_like(q)
    for k in range(1, _SERIES_TERMS):
        term = term * q / (k * (vs + k))
        total += term
    out[small] = np.log1p(total)
    vb, xb = v[~small], x[~small]
    out[~small] = _log_ive_np(vb, xb) + xb - vb * np.log(xb / 2.0) + special.gammaln(vb + 1.0)
    return out.reshape(shape)


# ---------------------------------------------------------------------------------------------
# autograd functions
# ---------------------------------------------------------------------------------------------


class _LogIve(torch.autograd.Function):
    """log I_v(x) - x, with d/dx = r_v(x) + v/x - 1."""

    @staticmethod
    def forward(ctx, v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        out = _log_ive_np(v.cpu().numpy(), x.detach().to(torch.float64).cpu().numpy())
        ctx.save_for_backward(v, x)
        return torch.as_tensor(out, dtype=torch.float64, device=x.device)

    @staticmethod
    def backward(ctx, grad):
        v, x = ctx.saved_tensors
        x64 = x.to(torch.float64)
        # v / x is 0 for v = 0 even at x = 0; elsewhere x > 0 is required for a finite slope.
        v_over_x = torch.where(v == 0, torch.zeros_like(x64), v / x64)
        slope = bessel_ratio(v, x64) + v_over_x - 1.0
        return None, _sum_to(grad * slope, x.shape).to(x.dtype)


class _Ratio(torch.autograd.Function):
    """r_v(x) = I_{v+1}(x) / I_v(x), with d/dx = (1 - r)(1 + r) - (2v + 1) r / x."""

    @staticmethod
    def forward(ctx, v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        out = _ratio_np(v.cpu().numpy(), x.detach().to(torch.float64).cpu().numpy())
        out = torch.as_tensor(out, dtype=torch.float64, device=x.device)
        ctx.save_for_backward(v, x, out)
        return out

    @staticmethod
    def backward(ctx, grad):
        v, x, r = ctx.saved_tensors
        x64 = x.to(torch.float64)
        if torch.is_grad_enabled():  # double backward: make r differentiable again
            r = _Ratio.apply(v, x64)
        # r / x -> 1 / (2(v+1)) as x -> 0 (the leading term of the series).
        r_over_x = torch.where(x64 > 0, r / x64, 1.0 / (2.0 * (v + 1.0)))
        slope = (1.0 - r) * (1.0 + r) - (2.0 * v + 1.0) * r_over_x
        return None, _sum_to(grad * slope, x.shape).to(x.dtype)


class _LogReduced(torch.autograd.Function):
    """log(Gamma(v+1) (2/x)^v I_v(x)), with d/dx = r_v(x)."""

    @staticmethod
    def forward(ctx, v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        out = _log_reduced_np(v.cpu().numpy(), x.detach().to(torch.float64).cpu().numpy())
        ctx.save_for_backward(v, x)
        return torch.as_tensor(out, dtype=torch.float64, device=x.device)

    @staticmethod
    def backward(ctx, grad):
        v, x = ctx.saved_tensors
        return None, _sum_to(grad * bessel_ratio(v, x.to(torch.float64)), x.shape).to(x.dtype)


def _sum_to(g: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Reduce a broadcast gradient back to `shape`."""
    if g.shape == shape:
        return g
    return g.sum_to_size(shape) if len(shape) else g.sum()


def _apply(fn, v, kappa, fname):
    v, kappa, out_dtype = _check(v, kappa, fname)
    v_b, _ = torch.broadcast_tensors(v, kappa.detach().to(torch.float64))
    return fn.apply(v_b.contiguous(), kappa).to(out_dtype)


def log_bessel_ive(v, kappa) -> torch.Tensor:
    """log(I_v(kappa) e^{-kappa}), differentiable in `kappa` (see :func:`log_bessel_iv`)."""
    return _apply(_LogIve, v, kappa, "log_bessel_ive")


def log_bessel_iv_reduced(v, kappa) -> torch.Tensor:
    """``log(Gamma(v+1) (2/kappa)^v I_v(kappa))``: log I_v without its small-kappa leading term.

    Equals ``log I_v(kappa) - v log(kappa/2) + lgamma(v+1)`` but is computed from the power
    series where ``kappa^2/4 <= v + 1``, so it keeps full *relative* precision as kappa -> 0
    (value about ``kappa^2 / (4(v+1))``) instead of cancelling two numbers of size v log kappa.
    Its derivative is :func:`bessel_ratio`. The vMF KL to the uniform prior is
    ``kappa A - log_bessel_iv_reduced(d/2 - 1, kappa)``.
    """
    return _apply(_LogReduced, v, kappa, "log_bessel_iv_reduced")


def log_bessel_iv(v, kappa) -> torch.Tensor:
    """Natural log of the modified Bessel function of the first kind, ``log I_v(kappa)``.

    Finite for every ``v >= 0`` and ``kappa > 0`` (``log I_31(1e4)`` is about 9994.43, far beyond
    float64's ``I_v`` range), differentiable in `kappa` to any order with
    ``d/dkappa log I_v(kappa) = I_{v+1}(kappa) / I_v(kappa) + v / kappa``.

    Parameters
    ----------
    v : float or torch.Tensor
        Order(s), ``>= 0``; broadcast against `kappa`. Not differentiable.
    kappa : torch.Tensor or float
        Argument(s), ``>= 0`` and finite. float32 inputs are computed in float64 and returned as
        float32.

    Returns
    -------
    torch.Tensor
        ``log I_v(kappa)`` with the broadcast shape and `kappa`'s floating dtype.

    Raises
    ------
    weightstats.errors.InputDataError
        If `v` or `kappa` is negative or not finite, or `v` requires grad.

    Examples
    --------
    >>> import torch
    >>> float(log_bessel_iv(31, torch.tensor(1e4, dtype=torch.float64)))  # doctest: +ELLIPSIS
    9994.42785...
    """
    v_t, kappa_t, out_dtype = _check(v, kappa, "log_bessel_iv")
    k64 = kappa_t.to(torch.float64)
    return (log_bessel_ive(v_t, k64) + k64).to(out_dtype)


def bessel_ratio(v, kappa) -> torch.Tensor:
    """``A = I_{v+1}(kappa) / I_v(kappa)``, differentiable in `kappa` to any order.

    For the von Mises-Fisher distribution on S^{d-1}, ``bessel_ratio(d/2 - 1, kappa)`` is the
    mean resultant length ``A_d(kappa) = E[mu^T z]``. It lies in [0, 1) and its derivative is
    ``1 - A^2 - (2v + 1) A / kappa``.

    Parameters
    ----------
    v : float or torch.Tensor
        Order(s), ``>= 0``; broadcast against `kappa`. Not differentiable.
    kappa : torch.Tensor or float
        Argument(s), ``>= 0`` and finite.

    Returns
    -------
    torch.Tensor
        The ratio with the broadcast shape and `kappa`'s floating dtype.

    Raises
    ------
    weightstats.errors.InputDataError
        If `v` or `kappa` is negative or not finite, or `v` requires grad.
    """
    return _apply(_Ratio, v, kappa, "bessel_ratio")


def log_sphere_area(dim: int) -> float:
    """log of the surface area of S^{dim-1} in R^dim: ``log(2 pi^{dim/2} / Gamma(dim/2))``."""
    return math.log(2.0) + 0.5 * dim * math.log(math.pi) - math.lgamma(0.5 * dim)
