"""The WeightRecorder's block reduction, as one function that torch can run without the GIL.

:func:`reduce_block` turns a block of weight rows into exact updates, sampled coordinates and
power sums (see :mod:`weightstats.capture._group` for the layout). It is some 40 torch calls.
Called from Python, every call releases and takes back the GIL; on a reduction thread that
hands the GIL back and forth with the training thread, which runs many small torch calls of
its own, and each hand-over costs the training thread a thread wake-up. Compiled with
``torch.jit.script``, the whole reduction is one call that releases the GIL once.

Measured on the digits MLP (85k weights, one torch thread, 2-core machine, 1000 steps, blocks
of 5 steps reduced on a second thread): the training loop ran 17 % slower with the reduction in
Python and 2-5 % slower with the scripted one (``bench/capture_overhead.py``, ``kernels``
line). ``torch.jit.script`` is deprecated in recent torch releases; where it is missing or
fails, :func:`block_kernel` falls back to the same function run by Python (same results).

This module does not use ``from __future__ import annotations``: TorchScript reads the
annotations.
"""

import threading
import warnings
from typing import Callable, List, Optional

import torch

__all__ = ["block_kernel", "reduce_block"]


def reduce_block(block: torch.Tensor, j: int, coords: torch.Tensor, upd: torch.Tensor,
                 mom: Optional[torch.Tensor], offsets: List[int], numels: List[int]) -> None:
    """Reduce the first `j` steps of `block` in place.

    Parameters
    ----------
    block : Tensor, shape (planes, rows + 1, N)
        Plane 0, rows 0..j: the weights before the first step and after each of `j` steps.
        On return rows 0..j-1 of plane 0 hold ``y = -Δw - shift`` and plane 1 (with moments)
        ``y**2``.
    j : int
        Steps in the block.
    coords : Tensor of int64, shape (C,)
        Flat indices of the sampled coordinates.
    upd : Tensor, shape (j, C)
        Receives ``-Δw`` at the sampled coordinates.
    mom : Tensor, shape (j, 5, K), optional
        Receives, per step and tensor, the sums of ``y, y**2, y**3, y**4`` and the shift
        (the float32 mean of ``-Δw``).
    offsets, numels : list of int
        Where each tensor's values start in a row, and how many there are.
    """
    w = block[0]
    for r in range(j):  # in row order: row r + 1 still holds w_{r+1} when row r is written
        w[r].sub_(w[r + 1])  # -Δw, the exact difference of two floats
    d = w[:j]
    torch.index_select(d, 1, coords, out=upd)
    if mom is None:
        return
    k_count = len(numels)
    sums: List[torch.Tensor] = []
    for k in range(k_count):
        sums.append(d[:, offsets[k]:offsets[k] + numels[k]].sum(1))
    # shift = this step's mean (two passes): a lagged shift was tried and lost 0.5 % of the
    # variance when the mean moved by hundreds of standard deviations between steps
    shift = torch.stack(sums, 1) / torch.tensor(numels, dtype=d.dtype, device=d.device)
    for k in range(k_count):
        d[:, offsets[k]:offsets[k] + numels[k]].sub_(shift[:, k:k + 1])
    torch.mul(d, d, out=block[1, :j])
    s1: List[torch.Tensor] = []
    grams: List[torch.Tensor] = []
    for k in range(k_count):
        v = block[:, :j, offsets[k]:offsets[k] + numels[k]]  # (2, j, n): y and y**2
        s1.append(v[0].sum(1))
        # [[Σy², Σy³], [Σy³, Σy⁴]] per step, as one batched matrix product
        grams.append(torch.bmm(v.transpose(0, 1), v.permute(1, 2, 0)))
    g = torch.stack(grams, 2)  # (j, 2, K, 2)
    mom[:, 0] = torch.stack(s1, 1)
    mom[:, 1] = g[:, 0, :, 0]
    mom[:, 2] = g[:, 0, :, 1]
    mom[:, 3] = g[:, 1, :, 1]
    mom[:, 4] = shift


_LOCK = threading.Lock()
_KERNEL: Optional[Callable] = None


def block_kernel() -> Callable:
    """:func:`reduce_block` compiled by TorchScript (once per process), or as is where
    TorchScript is unavailable."""
    global _KERNEL
    with _LOCK:
        if _KERNEL is None:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # torch.jit.script is deprecated
                    _KERNEL = torch.jit.script(reduce_block)
            except Exception:  # noqa: BLE001 - no TorchScript here: the same code in Python
                _KERNEL = reduce_block
        return _KERNEL
