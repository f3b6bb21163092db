"""Per-step work of the WeightRecorder, batched over all parameters that share a device and dtype.

Two paths record the same thing (:func:`make_group` picks one per group):

* :class:`~weightstats.capture._fused_group.FusedGroup` (and its ``moments="sampled"`` form,
  :class:`~weightstats.capture._fused_group.SampledFusedGroup`), for CPU float32/float64
  parameters where numba is installed: after each step one compiled loop
  (:mod:`~weightstats.capture._fused`) reads every weight once, takes the exact difference
  with the previous step's weights (kept in a flat buffer it overwrites in the same pass),
  writes the sampled differences and accumulates the power sums in float64. Nothing is left
  for another thread.
* :class:`~weightstats.capture._block.BlockGroup`, for CUDA and half-precision parameters
  and where numba is missing: a copy per step into a block of rows and one reduction per
  block (see :mod:`~weightstats.capture._block`).

This module holds what both share: the :class:`Group` base (the buffers of the steps since
the last flush, handed to the store, and pooled snapshot buffers), the moment modes, and the
float64 finish of the power sums.

Both paths accumulate the power sums of ``y = -Δw - shift``, finished in float64 once per flush
by the store's writer thread (:func:`update_moments_from_sums`), off the per-step path. The
fused pass writes the sampled Δw itself; the block path gathers ``-Δw``, negated (exactly) on
the writer thread (:meth:`Group.finished`).
"""

from __future__ import annotations

import threading
import warnings
import weakref
from collections.abc import Callable

import numpy as np
import torch

from . import _io, _kernels
from ._io import JobThread

__all__ = ["MOMENT_MODES", "SMALL_FLOATS", "Group", "make_group", "moment_mode",
           "update_moments_from_sums"]

SMALL_FLOATS = (torch.float16, torch.bfloat16)

#: what the recorder computes of each tensor's whole update at every step: ``"exact"`` the
#: moments of all its values (it keeps a copy of the weights and reads all of them each
#: step); ``"sampled"`` the moments of the sampled coordinates' updates (only those are kept
#: and read, except on snapshot steps); ``"none"`` no moments (only the sampled coordinates)
MOMENT_MODES = ("exact", "sampled", "none")


def moment_mode(moments: bool | str | None) -> str:
    """`moments` as one of :data:`MOMENT_MODES`: True is ``"exact"``, False and None
    ``"none"``."""
    if moments is True:
        return "exact"
    if moments is False or moments is None:
        return "none"
    if isinstance(moments, str) and moments in MOMENT_MODES:
        return moments
    raise ValueError(f"`moments` must be one of {', '.join(map(repr, MOMENT_MODES))}, True or "
                     f"False; got {moments!r}.")


#: bytes of snapshot buffers a group keeps for reuse
SNAP_POOL_BYTES = 128 << 20


class Group:
    """Buffers for parameters sharing one device and one dtype: the sampled updates and
    moment sums of the steps since the last flush, and pooled snapshot buffers. The per-step
    work is a subclass's (:class:`~._fused_group.FusedGroup`, :class:`~._block.BlockGroup`;
    :func:`make_group` picks).
    """

    #: numba's per-step kernel does the work inline (the flush need not wait for anything)
    fused = False

    def __init__(self, named: list[tuple[str, torch.Tensor, torch.Tensor]], *,
                 moments: bool | str, flush_every: int, worker: JobThread) -> None:
        first = named[0][1]
        self.device = first.device
        # work dtype: float32 for half types (differences of two bf16 values are exact in fp32)
        self.wdtype = torch.float32 if first.dtype in SMALL_FLOATS else first.dtype
        self.names = [n for n, _, _ in named]
        self.refs = [weakref.ref(p) for _, p, _ in named]
        self.shapes = [tuple(p.shape) for _, p, _ in named]
        self.numels = [p.numel() for _, p, _ in named]
        self.mode = moment_mode(moments)
        self.moments = self.mode != "none"
        # only the sampled coordinates are kept and read each step (all weights on snapshots)
        self.sampled = self.mode != "exact"
        self.flush_every = flush_every
        self.worker = worker
        offsets = [0]
        for n in self.numels[:-1]:
            offsets.append(offsets[-1] + n)
        self.offsets = offsets
        self.coords = [c for _, _, c in named]  # per tensor, CPU int64, sorted
        self.coord_counts = [c.numel() for c in self.coords]
        #: per tensor, the number of values its update moments are over
        self.moment_counts = self.coord_counts if self.sampled else self.numels
        self.spare: list[tuple[torch.Tensor, torch.Tensor | None]] = []
        # flat snapshot buffers given back, with their views
        self.snap_pool: list[tuple[torch.Tensor, list[torch.Tensor]]] = []
        self.new_buffers()

    def new_buffers(self) -> None:
        """Set :attr:`upd` and :attr:`mom` for the next `flush_every` steps: a pair given back
        by :meth:`give_back` (its pages already mapped: a fresh 5 MB buffer costs about a
        thousand page faults on the training thread) or new ones."""
        raise NotImplementedError

    def give_back(self, upd: torch.Tensor, mom: torch.Tensor | None) -> None:
        """Return the buffers of :meth:`take` once read (any thread; list ops are atomic)."""
        raise NotImplementedError

    def params(self) -> list[torch.Tensor] | None:
        ps = [r() for r in self.refs]
        return None if any(p is None for p in ps) else ps

    # ---------------------------------------------------------------- per step
    def post(self, row: int, snapshot: torch.dtype | None = None) -> None:
        """After an optimizer step: record it in flush row `row`; `snapshot` (the store's
        dtype) when :meth:`snapshot_flat` will be asked for this step's weights."""
        raise NotImplementedError

    def drain(self) -> None:
        """Finish (or submit) the work on the steps recorded so far (before a flush)."""

    def running(self) -> list[threading.Event]:
        """Events of work submitted and not finished yet (each is set once, when it ends,
        even on error): a flush's writer waits for these before it reads the buffers, so the
        training thread does not."""
        return []

    # ---------------------------------------------------------------- flush
    def take(self, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The buffers of the last `n` steps, handed over (fresh ones for the next steps).
        Call only after :meth:`drain`; read them once :meth:`running` events are set."""
        raise NotImplementedError

    def finished(self, upd: torch.Tensor, mom: torch.Tensor | None, n: int
                 ) -> tuple[list[torch.Tensor], torch.Tensor | None, Callable[[], None] | None]:
        """Buffers of :meth:`take` (`n` steps) -> (per tensor, the updates Δw (n, C_k) as
        contiguous tensors; float64 moment rows (n, 4, K) or None; a function to call once
        the updates are written, or None). Runs on the store's writer thread."""
        raise NotImplementedError

    def snapshot_flat(self, dtype: torch.dtype
                      ) -> tuple[torch.Tensor, list[torch.Tensor], np.ndarray | None] | None:
        """The current parameters concatenated into one flat tensor of `dtype`, its views with
        the parameters' shapes, and their shifted power sums (5, K) when already computed
        (else None: the store computes the statistics): a buffer from the pool (see
        :meth:`give_back_snapshot`) when one is free, else a new one."""
        ps = self.params()
        if ps is None:
            return None
        taken = self._pooled_snapshot(dtype)
        if taken is None:
            flat = torch.cat([p.detach().reshape(-1) for p in ps]).to(dtype)
            return flat, self.views_of(flat), None
        flat, views = taken
        if dtype == ps[0].dtype:
            torch.cat([p.detach().reshape(-1) for p in ps], out=flat)
        else:
            torch._foreach_copy_(views, [p.detach() for p in ps])
        return flat, views, None

    def _snapshot_buffer(self, dtype: torch.dtype) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """A flat snapshot buffer of `dtype` and its views: a pooled one, else a new one."""
        taken = self._pooled_snapshot(dtype)
        if taken is not None:
            return taken
        flat = torch.empty(sum(self.numels), dtype=dtype, device=self.device)
        return flat, self.views_of(flat)

    def _pooled_snapshot(self, dtype: torch.dtype
                         ) -> tuple[torch.Tensor, list[torch.Tensor]] | None:
        while self.snap_pool:
            flat, views = self.snap_pool.pop()
            if flat.dtype == dtype:
                return flat, views
        return None

    def views_of(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """Views of a flat snapshot with the parameters' shapes."""
        return [v.view(sh) for v, sh in zip(torch.split(flat, self.numels), self.shapes)]

    def give_back_snapshot(self, flat: torch.Tensor, views: list[torch.Tensor]) -> None:
        """Return a CPU snapshot buffer once written (any thread), to be reused: a fresh 340 KB
        buffer cost some 85 page faults on the training thread, about 50-80 us, more than the
        copy itself (digits MLP, 2-core machine)."""
        if (self.device.type == "cpu" and flat.device.type == "cpu"
                and len(self.snap_pool) * flat.numel() * flat.element_size() < SNAP_POOL_BYTES):
            self.snap_pool.append((flat, views))


def make_group(named: list[tuple[str, torch.Tensor, torch.Tensor]], *, moments: bool | str,
               flush_every: int, worker: JobThread) -> Group:
    """The group for parameters sharing one device and dtype:
    :class:`~weightstats.capture._fused_group.FusedGroup` (moments ``"exact"``) or
    :class:`~weightstats.capture._fused_group.SampledFusedGroup` (``"sampled"``, none) for CPU
    float32/float64 where numba compiles its kernel, else
    :class:`~weightstats.capture._block.BlockGroup`."""
    # imported here: both subclass Group, defined above
    from ._block import BlockGroup
    from ._fused_group import FusedGroup, SampledFusedGroup

    first = named[0][1]
    sampled = moment_mode(moments) != "exact"
    kernel = (_kernels.step_kernel(sampled=sampled)
              if first.device.type == "cpu" and first.dtype in (torch.float32, torch.float64)
              else None)
    if kernel is not None:
        try:
            with warnings.catch_warnings():
                # the first call compiles the kernel, or loads it from numba's cache (which
                # warns where no cache folder is writable, and then compiles once per process)
                warnings.simplefilter("ignore")
                fused = SampledFusedGroup if sampled else FusedGroup
                return fused(named, moments=moments, flush_every=flush_every, worker=worker,
                             kernel=kernel)
        except Exception:  # noqa: BLE001 - numba could not compile it here: the block path
            pass
    return BlockGroup(named, moments=moments, flush_every=flush_every, worker=worker)


def update_moments_from_sums(mom: torch.Tensor, numels: list[int]) -> torch.Tensor:
    """Power-sum rows (n, 5, K) of :meth:`Group.take` -> raw moment rows (n, 4, K) float64:
    ``(mean, var, sum c**3, sum c**4)`` of Δw.

    The sums are of ``y = -Δw - a`` (the shift `a` is the step's mean, or the mean of its
    sampled coordinates), so :func:`~weightstats.capture._io.moments_from_sums` gives the
    moments of ``-Δw``; the mean and the third moment change sign.
    """
    signs = [-1.0, 1.0, -1.0, 1.0]
    if mom.device.type == "cpu":  # numpy: the store's writer thread runs this at every flush,
        # and each of the ~20 torch calls would hand the GIL to the training thread and back
        # (100 steps of the digits MLP's six tensors: 73 us in torch, 39 us in numpy, alone)
        raw = _io.moments_from_sums(mom.numpy().transpose(0, 2, 1), np.asarray(numels))
        return torch.from_numpy(np.ascontiguousarray((raw * signs).transpose(0, 2, 1)))
    nn = torch.tensor(numels, dtype=torch.float64, device=mom.device)
    raw = _io.moments_from_sums(mom.transpose(1, 2), nn)  # (n, K, 4) of -Δw
    signs = torch.tensor(signs, dtype=torch.float64, device=mom.device)
    return (raw * signs).transpose(1, 2)
