"""Calibration and cost of the von Mises-Fisher reparameterised gradient.

For a grid of (d, kappa) it estimates d/dkappa E[mu^T z] from N pathwise samples with

* ``implicit``: VonMisesFisher.rsample (Wood's sampler + implicit reparameterisation), and
* ``naive``: the straight-through gradient of Wood's transform with the accepted proposal held
  fixed (what widely copied code does; biased),

and prints each estimate's z-score against the exact derivative of A_d(kappa), Wood's
acceptance rate, and the time of rsample + backward for implicit, naive and Power Spherical,
measured side by side in this run (ratios, not absolute times).

Run: ``python bench/vmf_gradient_check.py [N]``.
"""

from __future__ import annotations

import math
import sys
import time

import torch

from weightstats.vae._wood import _wood_angle, _wood_eps
from weightstats.vae.spherical import PowerSpherical, VonMisesFisher, bessel_ratio

F64 = torch.float64


def exact_dA(d: int, kappa: float) -> float:
    k = torch.tensor(kappa, dtype=F64, requires_grad=True)
    (g,) = torch.autograd.grad(bessel_ratio(d / 2 - 1, k), k)
    return float(g)


def z(samples: torch.Tensor, truth: float) -> float:
    return float((samples.mean() - truth) / (samples.std() / math.sqrt(samples.numel())))


def calibration(n: int) -> None:
    print(
        f"{'d':>3} {'kappa':>8} {'dA/dk':>11} {'z_implicit':>10} {'z_naive':>9} "
        f"{'rel_bias_naive':>14} {'accept':>7}"
    )
    for d in (2, 3, 5, 16, 64):
        for kappa in (1e-3, 0.5, 2.0, 10.0, 100.0, 1e4):
            gen = torch.Generator().manual_seed(1000 * d + int(kappa))
            mu = torch.zeros(d, dtype=F64)
            mu[0] = 1.0
            k = torch.full((n,), kappa, dtype=F64, requires_grad=True)
            zs = VonMisesFisher(mu.expand(n, d), k).rsample(generator=gen)
            (zs @ mu).sum().backward()
            implicit = k.grad
            k2 = torch.full((n,), kappa, dtype=F64, requires_grad=True)
            counts: dict = {}
            eps = _wood_eps(k2.detach(), d, gen, counts=counts)
            torch.cos(_wood_angle(eps, k2, d)).sum().backward()
            truth = exact_dA(d, kappa)
            print(
                f"{d:>3} {kappa:>8g} {truth:>11.4e} {z(implicit, truth):>10.2f} "
                f"{z(k2.grad, truth):>9.2f} {float(k2.grad.mean()) / truth - 1:>14.2e} "
                f"{n / counts['proposals']:>7.3f}"
            )


def timing(batch: int = 128, d: int = 16, repeats: int = 20) -> None:
    gen = torch.Generator().manual_seed(0)
    loc = torch.nn.functional.normalize(torch.randn(batch, d), dim=-1)
    kappa0 = torch.rand(batch) * 50 + 1

    def run(kind: str) -> float:
        best = math.inf
        for _ in range(repeats):
            k = kappa0.clone().requires_grad_()
            t0 = time.perf_counter()
            if kind == "implicit":
                out = VonMisesFisher(loc, k).rsample(generator=gen)
            elif kind == "naive":
                eps = _wood_eps(k.detach().double(), d, gen)
                out = torch.cos(_wood_angle(eps, k.double(), d))
            else:
                out = PowerSpherical(loc, k).rsample(generator=gen)
            out.sum().backward()
            best = min(best, time.perf_counter() - t0)
        return best

    base = run("power_spherical")
    for kind in ("power_spherical", "naive", "implicit"):
        print(
            f"rsample+backward, batch {batch}, d={d}: {kind:>16} {run(kind) / base:6.2f}x "
            "Power Spherical"
        )


if __name__ == "__main__":
    torch.set_num_threads(1)
    calibration(int(sys.argv[1]) if len(sys.argv) > 1 else 20000)
    timing()
