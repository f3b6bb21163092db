"""The importance-weighted bound of Burda, Grosse & Salakhutdinov (2015).

``L_k(x) = log (1/k) sum_i p(x, z_i) / q(z_i | x)``, z_i ~ q(z|x), is a lower bound on
log p(x) that tightens as k grows (E L_1 <= E L_k <= E L_m <= log p(x) for k <= m); L_1 is the
ELBO. ``-mean_x L_k`` with k = 5,000 is the "IWAE NLL" of the comparison table.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..errors import InputDataError
from .train import as_data

__all__ = ["iwae_bound", "iwae_nll"]


@torch.no_grad()
def iwae_bound(
    model: torch.nn.Module,
    x: Any,
    *,
    k: int = 5000,
    seed: int = 0,
    chunk_size: int = 500,
    batch_size: int = 64,
    num_threads: int | None = None,
) -> np.ndarray:
    """Per-example importance-weighted lower bound L_k(x) on log p(x).

    Parameters
    ----------
    model : BaseVAE
        Any model of :mod:`weightstats.vae` (it provides ``log_importance_weights``).
    x : array_like or torch.Tensor
        Data, shape (n, input_dim), values in [0, 1].
    k : int
        Number of importance samples per example (k = 1 is a one-sample ELBO estimate).
    seed : int
        Seed of the ``torch.Generator`` for the samples.
    chunk_size : int
        Importance samples evaluated at once; the log-mean-exp is accumulated over chunks, so
        memory does not grow with `k`.
    batch_size : int
        Examples evaluated at once.
    num_threads : int or None
        Torch intra-op threads during the evaluation (restored afterwards); ``None`` keeps
        torch's setting. Which is faster depends on the machine's load (bench/vae_threads.py,
        k = 1,000-5,000 on the 450 test digits, 2 cores): idle-ish (load 4), 2 threads took
        0.61-0.65x the time of 1; heavily shared (load 10), 1 thread took 12.0 s against
        68.5 s for 2.

    Returns
    -------
    numpy.ndarray
        float64, shape (n,): L_k for every row of `x`.
    """
    if int(k) != k or k < 1:
        raise InputDataError(f"`k` must be a positive integer; got {k!r}.")
    x = as_data(x, name="x")
    gen = torch.Generator().manual_seed(int(seed))
    was_training = model.training
    model.eval()
    out = np.empty(x.shape[0])
    previous_threads = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(int(num_threads))
    try:
        for i in range(0, x.shape[0], batch_size):
            xb = x[i : i + batch_size]
            acc = torch.full((xb.shape[0],), -math.inf, dtype=torch.float64)
            done = 0
            while done < k:
                m = min(chunk_size, k - done)
                logw = model.log_importance_weights(xb, m, generator=gen).to(torch.float64)
                acc = torch.logaddexp(acc, torch.logsumexp(logw, dim=0))
                done += m
            out[i : i + batch_size] = (acc - math.log(k)).numpy()
    finally:
        model.train(was_training)
        torch.set_num_threads(previous_threads)
    return out


def iwae_nll(model: torch.nn.Module, x: Any, *, k: int = 5000, seed: int = 0) -> float:
    """Mean negative importance-weighted bound, -mean_x L_k(x), in nats per example."""
    return float(-iwae_bound(model, x, k=k, seed=seed).mean())
