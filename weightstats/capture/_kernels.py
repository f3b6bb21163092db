"""The WeightRecorder's block reduction, as one function that torch can run without the GIL.

:func:`reduce_block` turns a block of weight rows into exact updates, sampled coordinates and
power sums (see :mod:`weightstats.capture._block` for the layout). It is some 40 torch calls.
Called from Python, every call releases and takes back the GIL; on a reduction thread that
hands the GIL back and forth with the training thread, which runs many small torch calls of
its own, and each hand-over costs the training thread a thread wake-up. Compiled with
``torch.jit.script``, the whole reduction is one call that releases the GIL once.

Measured on the digits MLP (85k weights, one torch thread, 2-core machine, 1000 steps, blocks
of 5 steps reduced on a second thread): the training loop ran 17 % slower with the reduction in
Python and 9 % slower with the scripted one (``bench/capture_overhead.py``, ``kernels`` line).
Forking the scripted kernel onto torch's inter-op pool (``torch.jit.fork``), which needs no
Python thread at all, measured the same (1.081 against 1.076 with blocks of 25 steps), and it
leaves that pool without threads in processes forked later: a ``torch.distributed`` job forked
after a recording hung. So a Python thread runs it. ``torch.jit.script`` is deprecated in
recent torch releases; where it is missing or fails, :func:`block_kernel` falls back to the
same function run by Python (same results).

:func:`moments_of` (float64 moments of the tensors of one or more snapshots) is scripted for
the same reason: the store's writer thread runs it while training goes on.

This module does not use ``from __future__ import annotations``: TorchScript reads the
annotations.
"""

# TorchScript reads these annotations: it needs typing.List / Optional, not list[...] / X | None
# ruff: noqa: UP006, UP035, UP045
import threading
import warnings
from typing import Callable, Dict, List, Optional

import torch

__all__ = ["block_kernel", "moments_kernel", "moments_of", "reduce_block", "step_kernel"]


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


def moments_of(pieces: List[torch.Tensor]) -> torch.Tensor:
    """Raw moments of each tensor in `pieces`, two-pass, in float64.

    One call for a whole shard of snapshots, so that the writer thread releases the GIL once
    rather than once per tensor (see the module note). Each tensor is copied into one float64
    buffer reused for all of them, which stays in the CPU's cache (fresh float64 copies of a
    stack of snapshots ran at 13 ns per value, page faults and cache misses included).

    Returns
    -------
    Tensor of float64, shape (len(pieces), 4)
        ``(mean, var, sum c**3, sum c**4)`` per tensor, ``c`` the centred values and ``var``
        with divisor n (NaN for an empty tensor): the input of
        :func:`weightstats.capture._io.finish_moments`.
    """
    largest = 1
    for p in pieces:
        largest = max(largest, p.numel())
    c_buf = torch.empty(largest, dtype=torch.float64)
    c2_buf = torch.empty(largest, dtype=torch.float64)
    nan = torch.full((4,), float("nan"), dtype=torch.float64)
    rows: List[torch.Tensor] = []
    for p in pieces:
        n = p.numel()
        if n == 0:
            rows.append(nan)
            continue
        c = c_buf[:n]
        c2 = c2_buf[:n]
        c.copy_(p.reshape(-1))
        mean = c.mean()
        c.sub_(mean)
        torch.mul(c, c, out=c2)
        rows.append(torch.stack([mean, c2.sum() / n, torch.dot(c2, c), torch.dot(c2, c2)]))
    if len(rows) == 0:
        return torch.empty((0, 4), dtype=torch.float64)
    return torch.stack(rows)


_LOCK = threading.Lock()
_SCRIPTED: Dict[str, Callable] = {}


def _scripted(fn: Callable) -> Callable:
    """`fn` compiled by TorchScript (once per process), or `fn` itself where TorchScript is
    unavailable."""
    with _LOCK:
        if fn.__name__ not in _SCRIPTED:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # torch.jit.script is deprecated
                    _SCRIPTED[fn.__name__] = torch.jit.script(fn)
            except Exception:  # noqa: BLE001 - no TorchScript here: the same code in Python
                _SCRIPTED[fn.__name__] = fn
        return _SCRIPTED[fn.__name__]


def block_kernel() -> Callable:
    """:func:`reduce_block`, scripted where TorchScript is available."""
    return _scripted(reduce_block)


def moments_kernel() -> Callable:
    """:func:`moments_of`, scripted where TorchScript is available."""
    return _scripted(moments_of)


#: numba's per-step kernels by name, or None where numba is missing (filled on first use)
_STEP: Dict[str, Optional[Callable]] = {}


def step_kernel(sampled: bool = False) -> Optional[Callable]:
    """The per-step CPU kernel compiled by numba: :func:`weightstats.capture._fused.fused_step`
    (every weight read), or with `sampled` :func:`~weightstats.capture._fused.sampled_step`
    (the sampled coordinates read; all weights on snapshot steps). Loaded once per process:
    about 0.3 s from numba's on-disk cache, 1-2 s the first time. None where numba is missing
    or cannot compile it; the recorder then uses the block reduction."""
    name = "sampled_step" if sampled else "fused_step"
    with _LOCK:
        if "module" not in _STEP:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # numba's cache warnings (read-only installs)
                    from . import _fused
                    _STEP["module"] = _fused
            except Exception:  # noqa: BLE001 - no numba here: the block path records the same
                _STEP["module"] = None
        module = _STEP["module"]
        return None if module is None else getattr(module, name)
