"""The block path of the WeightRecorder's per-step work: for CUDA and half-precision
parameters, and where numba is missing (:func:`~weightstats.capture._group.make_group`).

All tracked parameters of a group live, for the recorder, in a block: a buffer of shape
``(planes, rows + 1, N)`` with ``N = sum(numel)``. Row 0 of plane 0 holds the weights before the
block's first step, and the optimizer's step post-hook copies the weights after each step into
the next row, one batched kernel per step on the training thread whatever the number of tensors
(``_foreach_copy_(row_views, params)``). Per-tensor views of each row have the parameters' shapes.

When the block's rows are full (or before a flush), one reduction reads the whole block:

* the exact differences, in place: ``row[r] = w_{r} - w_{r+1} = -Δw``;
* ``index_select`` of the sampled coordinates with precomputed flat offsets;
* with moments: per-tensor row sums (the means, the shift), an in-place centring ``y``, the
  squares ``y**2`` into plane 1, per-tensor sums of ``y`` and, for ``y**2, y**3, y**4``, one
  batched Gram matrix ``[y, y**2] [y, y**2]^T`` per tensor (power sums 1-4;
  :func:`finish` combines them in float64).

The update of a step is thus the change of the weights between two optimizer steps (or since
the recorder attached), whatever changed them, so the recorded updates add up exactly to the
difference of two snapshots.

The reduction's cost has two parts: a fixed cost per torch call (about 2-3 us on a CPU, which
reducing a block of `rows` steps at once divides by `rows`; see :func:`block_rows`) and about
0.6 ns per value and step of arithmetic (about 55 us per step for the 85k weights of the
digits MLP, some 9 % of its 0.65 ms training step at batch 64 on one thread, measured with
``bench/capture_overhead.py --floor``). That second part does not shrink with batching, so on
the CPU the reduction runs by default on a thread of its own when the process leaves a core
free (see :func:`use_step_thread`): the reduction is one TorchScript call
(:mod:`~weightstats.capture._kernels`) that releases the GIL once, so it overlaps the next steps
while the training thread fills a second block. The flush that follows a block does not wait
for its reduction: the store's writer thread does. The worker runs the same kernel on the same
data, so results are bitwise the same threaded or inline. On CUDA the kernels are
asynchronous already, so they are always queued inline.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

import numpy as np
import torch

from . import _kernels
from ._group import Group, update_moments_from_sums
from ._io import JobThread

__all__ = ["BLOCK_BYTES", "MAX_BLOCK_ROWS", "BlockGroup", "block_rows", "finish",
           "use_step_thread"]

#: most steps reduced together: each reduction has a fixed cost (some 40 torch calls and a
#: wake-up of the thread that runs it). Digits MLP, reduction on a second core, 1000
#: steps, 7 interleaved repeats: training ran 1.19x slower with 1 row per block, 1.12x with
#: 4, 1.11x with 10 and 1.08x with 20 (bench/capture_overhead.py's kernels line)
MAX_BLOCK_ROWS = 25

#: bytes one block may take (planes x (rows + 1) x N values); large models get one row
BLOCK_BYTES = 32 << 20


def block_rows(numel: int, itemsize: int, planes: int, flush_every: int) -> int:
    """Rows (steps) per block: as many as fit in :data:`BLOCK_BYTES`, at most
    :data:`MAX_BLOCK_ROWS`, and a divisor of `flush_every` so that blocks end at flushes."""
    fit = BLOCK_BYTES // max(1, planes * numel * itemsize) - 1
    rows = max(1, min(MAX_BLOCK_ROWS, flush_every, fit))
    while flush_every % rows:
        rows -= 1
    return rows


def use_step_thread() -> bool:
    """Whether a CPU reduction thread would find a core that torch's own threads leave free."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return torch.get_num_threads() < cores


class BlockGroup(Group):
    """The block path: one copy of the weights per step into a block of rows, one reduction
    per block (see the module note); for CUDA and half-precision parameters, and where
    numba is missing. With ``moments="sampled"`` or none a row holds only the sampled
    coordinates (gathered from each parameter), which the same reduction treats as the
    tracked values."""

    def __init__(self, named: list[tuple[str, torch.Tensor, torch.Tensor]], *,
                 moments: bool | str, flush_every: int, worker: JobThread) -> None:
        super().__init__(named, moments=moments, flush_every=flush_every, worker=worker)
        kw = {"device": self.device, "dtype": self.wdtype}
        # what a row holds, per tensor: all its values, or its sampled coordinates
        self.row_numels = self.coord_counts if self.sampled else self.numels
        self.row_offsets = np.cumsum([0, *self.row_numels[:-1]]).tolist()
        row_shapes = [(c,) for c in self.coord_counts] if self.sampled else self.shapes
        n_total = sum(self.row_numels)
        n_planes = 2 if self.moments else 1
        itemsize = torch.empty(0, dtype=self.wdtype).element_size()
        self.rows = block_rows(n_total, itemsize, n_planes, flush_every)
        # CUDA kernels are asynchronous already: queue them inline, on one block
        self.threaded = self.device.type == "cpu" and worker.threaded
        self.blocks = [torch.empty((n_planes, self.rows + 1, n_total), **kw)
                       for _ in range(2 if self.threaded else 1)]
        spans = list(zip(self.row_offsets, self.row_numels))
        self.kernel = _kernels.block_kernel()
        # per block, an event set when the reduction last submitted for it has finished
        self.done: list[threading.Event | None] = [None] * len(self.blocks)
        # per block, per row: the parameters' shapes in plane 0 (the per-step kernel's target)
        self.row_views = [[[blk[0, r, o:o + n].view(sh) for (o, n), sh in zip(spans, row_shapes)]
                           for r in range(self.rows + 1)] for blk in self.blocks]
        self.free = [threading.Event() for _ in self.blocks]
        for ev in self.free:
            ev.set()
        self.b = 0  # block being filled
        self.j = 0  # rows (steps) in it so far
        self.r0 = 0  # flush row of its first step
        if self.sampled:  # each parameter's coordinates; the row is the sample itself
            self.coords_dev = [c.to(self.device) for c in self.coords]
            self.coords_all = torch.arange(n_total, device=self.device)
        else:
            self.coords_all = torch.cat([c + o for c, o in zip(self.coords, self.offsets)]
                                        ).to(self.device)
        self._start_block()

    def new_buffers(self) -> None:
        if self.spare:
            self.upd, self.mom = self.spare.pop()
            return
        kw = {"device": self.device, "dtype": self.wdtype}
        self.upd = torch.empty((self.flush_every, sum(self.coord_counts)), **kw)
        # per row: sums of y, y**2, y**3, y**4 (y = -Δw - shift) and the shift, per tensor
        self.mom = (torch.empty((self.flush_every, 5, len(self.numels)), **kw)
                    if self.moments else None)

    def give_back(self, upd: torch.Tensor, mom: torch.Tensor | None) -> None:
        if upd._base is not None and upd._base.shape[0] == self.flush_every and len(self.spare) < 2:
            self.spare.append((upd._base, None if mom is None else mom._base))

    def _copy_row(self, views: list[torch.Tensor], ps: list[torch.Tensor]) -> None:
        """The current weights (or their sampled coordinates) into one row's views."""
        if not self.sampled:
            torch._foreach_copy_(views, ps)
            return
        for v, p, c in zip(views, ps, self.coords_dev):  # straight into the row: no temporary
            torch.take(p.detach(), c, out=v)

    def finished(self, upd: torch.Tensor, mom: torch.Tensor | None, n: int
                 ) -> tuple[list[torch.Tensor], torch.Tensor | None, Callable[[], None] | None]:
        """The gathered ``-Δw`` negated per tensor (one pass, contiguous); the raw buffers
        are free at once."""
        cols = torch.split(upd[:n], self.coord_counts, dim=1)
        updates = [torch.neg(c) for c in cols]  # one pass: negated and contiguous
        moments = None if mom is None else update_moments_from_sums(mom[:n],
                                                                    self.moment_counts)
        self.give_back(upd, mom)
        return updates, moments, None

    def take(self, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The first `n` raw rows (updates (n, C) of -Δw, power sums (n, 5, K) or None).

        The buffers are handed over, not copied: fresh ones are allocated for the next
        steps. Call only after :meth:`drain` and when the worker is idle
        (:meth:`JobThread.wait`).
        """
        upd, mom = self.upd[:n], None if self.mom is None else self.mom[:n]
        self.new_buffers()
        return upd, mom

    def post(self, row: int, snapshot: torch.dtype | None = None) -> None:
        """After an optimizer step: copy the weights into the block's next row (snapshots are
        taken by :meth:`snapshot_flat`)."""
        ps = self.params()
        if ps is None:
            return
        if self.j == 0:
            self.r0 = row
        self.j += 1
        self._copy_row(self.row_views[self.b][self.j], ps)
        if self.j == self.rows:
            self._submit_block()

    def drain(self) -> None:
        """Reduce the rows of a block that is not full yet (before a flush)."""
        if self.j:
            self._submit_block()

    def running(self) -> list[threading.Event]:
        """Events of the reductions submitted and not finished yet (each is set once, when
        its reduction ends, even on error): a flush's writer waits for these before it reads
        the buffers, so the training thread does not."""
        return [ev for ev in self.done if ev is not None and not ev.is_set()]

    def _start_block(self) -> None:
        """Wait until block `b` is free, then copy the current weights into its row 0."""
        free = self.free[self.b]
        if not free.is_set():  # the worker thread is a whole block behind
            free.wait()
            self.worker._raise_pending()
        free.clear()
        ps = self.params()
        if ps is not None:
            with torch.no_grad():
                self._copy_row(self.row_views[self.b][0], ps)

    def _submit_block(self) -> None:
        b, j, r0, upd, mom = self.b, self.j, self.r0, self.upd, self.mom
        self.j = 0
        self.b = (b + 1) % len(self.blocks)
        if not self.threaded:
            try:
                with torch.no_grad():
                    self._reduce(b, j, r0, upd, mom)
            finally:
                self.free[b].set()
        else:
            done = self.done[b] = threading.Event()

            def job() -> None:
                try:
                    self._reduce(b, j, r0, upd, mom)
                finally:
                    self.free[b].set()
                    done.set()

            self.worker.submit(job)
        self._start_block()

    def _reduce(self, b: int, j: int, r0: int, upd: torch.Tensor, mom: torch.Tensor | None
                ) -> None:
        """Updates, sampled coordinates and power sums of the `j` steps in block `b`, into
        flush rows ``[r0, r0 + j)`` of `upd` and `mom` (:func:`~._kernels.reduce_block`)."""
        self.kernel(self.blocks[b], j, self.coords_all, upd[r0:r0 + j],
                    None if mom is None else mom[r0:r0 + j], self.row_offsets, self.row_numels)


def finish(upd: torch.Tensor, mom: torch.Tensor | None, numels: list[int]
           ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Raw rows of the block path (updates ``-Δw`` (n, C), power sums (n, 5, K)) ->
    (updates Δw (n, C), raw moment rows (n, 4, K) float64); see
    :func:`update_moments_from_sums`."""
    return torch.neg(upd), None if mom is None else update_moments_from_sums(mom, numels)
