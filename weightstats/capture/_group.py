"""Per-step work of the WeightRecorder, batched over all parameters that share a device and dtype.

Two paths record the same thing (:func:`make_group` picks one per group):

* :class:`FusedGroup`, for CPU float32/float64 parameters where numba is installed: after
  each step one compiled loop (:mod:`~weightstats.capture._fused`) reads every weight once,
  takes the exact difference with the previous step's weights (kept in a flat buffer it
  overwrites in the same pass), writes the sampled differences and accumulates the power sums
  in float64. Nothing is left for another thread.
* :class:`BlockGroup`, for CUDA and half-precision parameters and where numba is missing:
  a copy per step into a block of rows and one reduction per block, described below.

Measured on the digits MLP (``bench/capture_overhead.py``, 2-core machine, one torch thread):
the fused kernel takes 18-19 us a step alone in a hot cache and 20-23 us inside the training
loop (3 % of the 0.65 ms step), and training ran 1.05-1.11x as long with it as without a
recorder (runs of 7 repeats over several sessions); the block path's per-step copy and
reduction on a second thread ran 1.11x (cache and memory-bandwidth contention between the
two cores, and the thread hand-overs, cost more than the arithmetic).

The block path
--------------
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

Both paths accumulate the power sums of ``y = -Δw - shift``, finished in float64 once per flush
by the store's writer thread (:func:`update_moments_from_sums`), off the per-step path. The
fused pass writes the sampled Δw itself; the block path gathers ``-Δw``, negated (exactly) on
the writer thread (:meth:`Group.finished`).
"""

from __future__ import annotations

import os
import threading
import warnings
import weakref
from collections.abc import Callable

import numpy as np
import torch

from . import _io, _kernels
from ._io import JobThread

__all__ = ["BLOCK_BYTES", "MAX_BLOCK_ROWS", "MOMENT_MODES", "SMALL_FLOATS", "BlockGroup",
           "FusedGroup", "Group", "SampledFusedGroup", "block_rows", "finish", "make_group",
           "moment_mode", "update_moments_from_sums", "use_step_thread"]

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

#: most steps reduced together: each reduction has a fixed cost (some 40 torch calls and a
#: wake-up of the thread that runs it). Digits MLP, reduction on a second core, 1000
#: steps, 7 interleaved repeats: training ran 1.19x slower with 1 row per block, 1.12x with
#: 4, 1.11x with 10 and 1.08x with 20 (bench/capture_overhead.py's kernels line)
MAX_BLOCK_ROWS = 25

#: bytes of snapshot buffers a group keeps for reuse
SNAP_POOL_BYTES = 128 << 20

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


class Group:
    """Buffers for parameters sharing one device and one dtype: the sampled updates and
    moment sums of the steps since the last flush, and pooled snapshot buffers. The per-step
    work is a subclass's (:class:`FusedGroup`, :class:`BlockGroup`; :func:`make_group` picks).
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


class FusedGroup(Group):
    """CPU float32/float64 parameters: numba's one-pass kernel
    (:func:`~weightstats.capture._fused.fused_step`), inline after each step.

    The weights after the previous step live in one flat buffer (:attr:`prev`) that the
    kernel reads and overwrites in the same pass. On a snapshot step it writes the current
    weights into a pooled snapshot buffer instead, which the store writes and which is the
    next step's :attr:`prev`; it is only read from then on, and the next step without a
    snapshot writes into the group's own buffer again. The kernel reads the parameters
    through their addresses:
    every step checks that their addresses, dtypes and strides did not change (a
    ``param.data = ...`` or ``model.to(...)`` after the recorder attached); when one did and
    is not a contiguous CPU tensor of the group's dtype any more, that step's weights are
    first copied into a staging buffer.
    """

    fused = True

    def __init__(self, named: list[tuple[str, torch.Tensor, torch.Tensor]], *,
                 moments: bool | str, flush_every: int, worker: JobThread, kernel) -> None:
        super().__init__(named, moments=moments, flush_every=flush_every, worker=worker)
        self.kernel = kernel
        ps = [p for _, p, _ in named]
        self.prev = self._initial_prev(ps)
        self._prev_np = self.prev.numpy()
        self._offsets_np = np.array(self.offsets, dtype=np.int64)
        self._numels_np = np.array(self.numels, dtype=np.int64)
        self._coords_np = torch.cat(self.coords).numpy().astype(np.int64)
        self._bounds_np = np.cumsum([0, *self.coord_counts]).astype(np.int64)
        # stands for the sums the kernel need not keep: mom without moments (never written
        # then), the weights' sums on a step that is no snapshot
        self._scratch_sums = np.zeros((5, len(self.numels)))
        self._layout: list[tuple] = []
        self._pointers_np = np.zeros(len(ps), dtype=np.int64)
        self._staging: torch.Tensor | None = None
        # the snapshot that post() took for the next snapshot_flat(): (flat, views, sums)
        self._taken: tuple[torch.Tensor, list[torch.Tensor], np.ndarray] | None = None
        # prev may be a snapshot buffer that the store reads (then never written over), and
        # the group's own buffer is then free
        self._prev_shared = False
        self._own: torch.Tensor | None = None
        # one call now (the weights against themselves: zeros into row 0, which the first
        # step overwrites), so that numba compiles or loads the kernel here, where
        # make_group falls back to the block path if it cannot
        self._run(self._addresses(ps), 0)

    def _initial_prev(self, ps: list[torch.Tensor]) -> torch.Tensor:
        """The buffer of the weights the first step is compared with: all of them."""
        return torch.cat([p.detach().reshape(-1) for p in ps]).to(self.wdtype)

    def new_buffers(self) -> None:
        if self.spare:
            self.upd, self.mom = self.spare.pop()
        else:  # per tensor a contiguous (flush_every, C_k) slab of Δw, written as it is
            self.upd = torch.empty(self.flush_every * sum(self.coord_counts), dtype=self.wdtype)
            # the kernel's float64 sums, kept as they are
            self.mom = (torch.empty((self.flush_every, 5, len(self.numels)),
                                    dtype=torch.float64) if self.moments else None)
        # numpy views: the per-step call indexes these (a torch index and .numpy() cost
        # some 3 us a step)
        self._upd_np = self.upd.numpy()
        self._mom_np = None if self.mom is None else self.mom.numpy()

    def take(self, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The whole update buffer (its first `n` rows per tensor written) and the first `n`
        moment rows, handed over: :meth:`finished` gives them back once written."""
        upd, mom = self.upd, None if self.mom is None else self.mom[:n]
        self.new_buffers()
        return upd, mom

    def finished(self, upd: torch.Tensor, mom: torch.Tensor | None, n: int
                 ) -> tuple[list[torch.Tensor], torch.Tensor | None, Callable[[], None] | None]:
        """Views of the update buffer (the kernel wrote Δw, per tensor, contiguous): nothing
        is copied; the buffers return to the group once the store has written them."""
        updates = []
        for a, c in zip(self._bounds_np[:-1].tolist(), self.coord_counts):
            start = self.flush_every * a
            updates.append(upd[start:start + n * c].view(n, c))
        moments = None if mom is None else update_moments_from_sums(mom, self.moment_counts)
        return updates, moments, lambda: self.give_back(upd, mom)

    def give_back(self, upd: torch.Tensor, mom: torch.Tensor | None) -> None:
        if len(self.spare) < 2:
            self.spare.append((upd, None if mom is None else mom._base))

    def _addresses(self, ps: list[torch.Tensor]) -> np.ndarray:
        """The addresses of the parameters' values, as the kernel may read them."""
        # address, dtype and strides: a parameter given new storage, another dtype, another
        # device or another layout since the last step (1 us a step for six tensors)
        layout = [(p.data_ptr(), p.dtype, p.stride()) for p in ps]
        if layout == self._layout:  # the same tensors as last step (checked then)
            return self._pointers_np
        if all(p.device.type == "cpu" and p.dtype == self.wdtype and p.is_contiguous()
               and p.numel() == n for p, n in zip(ps, self.numels)):
            self._layout = layout
            self._pointers_np = np.array([a for a, _, _ in layout], dtype=np.int64)
            return self._pointers_np
        # moved, converted or made non-contiguous since the recorder attached: stage a copy
        self._layout = []
        if self._staging is None:
            self._staging = torch.empty(sum(self.numels), dtype=self.wdtype)
        views = [self._staging[o:o + n].view(p.shape) for o, n, p in
                 zip(self.offsets, self.numels, ps)]
        torch._foreach_copy_(views, [p.detach() for p in ps])
        return np.array([v.data_ptr() for v in views], dtype=np.int64)

    def _run(self, pointers: np.ndarray, row: int, after: torch.Tensor | None = None,
             snap_sums: np.ndarray | None = None) -> None:
        """One kernel call: differences against :attr:`prev`, the current weights into
        `after` (default: over :attr:`prev`), the weights' power sums into `snap_sums` (a
        snapshot) or scratch."""
        in_place = after is None
        mom = self._scratch_sums if self._mom_np is None else self._mom_np[row]
        self.kernel(pointers, self._prev_np, self._prev_np if in_place else after.numpy(),
                    in_place, self._offsets_np, self._numels_np, self._coords_np,
                    self._bounds_np, self._upd_np, row, self.flush_every, mom,
                    self._mom_np is not None,
                    self._scratch_sums if snap_sums is None else snap_sums,
                    snap_sums is not None)

    def _set_prev(self, flat: torch.Tensor, shared: bool) -> None:
        self.prev = flat
        self._prev_np = flat.numpy()
        self._prev_shared = shared

    def post(self, row: int, snapshot: torch.dtype | None = None) -> None:
        ps = self.params()
        if ps is None:
            return
        pointers = self._addresses(ps)
        if snapshot != self.wdtype:  # none, or one in another dtype (snapshot_flat copies)
            if not self._prev_shared:
                self._run(pointers, row)  # in place
                return
            # the previous weights are a snapshot the store may still be reading: write the
            # current ones into the group's own buffer
            own = self._own if self._own is not None else torch.empty_like(self.prev)
            self._own = None
            self._run(pointers, row, own)
            self._set_prev(own, shared=False)
            return
        # a snapshot step: the weights go into a snapshot buffer instead of back into prev,
        # with their power sums; that buffer is the next step's previous weights
        flat, views = self._snapshot_buffer(snapshot)
        sums = np.empty((5, len(self.numels)))
        self._run(pointers, row, flat, sums)
        if not self._prev_shared:
            self._own = self.prev  # free until the next step without a snapshot
        self._set_prev(flat, shared=True)
        self._taken = (flat, views, sums)

    def snapshot_flat(self, dtype: torch.dtype
                      ) -> tuple[torch.Tensor, list[torch.Tensor], np.ndarray | None] | None:
        taken, self._taken = self._taken, None
        if taken is not None and taken[0].dtype == dtype:
            return taken
        return super().snapshot_flat(dtype)

    def give_back_snapshot(self, flat: torch.Tensor, views: list[torch.Tensor]) -> None:
        """Pool a written snapshot buffer, unless it is still :attr:`prev` (written before
        the next step): it is read then, so it must not be handed out to be written into."""
        if flat is not self.prev:
            super().give_back_snapshot(flat, views)


class SampledFusedGroup(FusedGroup):
    """CPU float32/float64 parameters with ``moments="sampled"`` or none: numba's
    :func:`~weightstats.capture._fused.sampled_step`, inline after each step, reads only the
    sampled coordinates (and, on snapshot steps, copies every weight into the snapshot
    buffer with their power sums). :attr:`prev` holds the sampled coordinates' values after
    the previous step, not a copy of the weights: the recorder's memory and per-step reads
    are those of the sample, whatever the size of the model. The moments (``"sampled"``)
    are those of the sampled coordinates' updates; the coordinates are the same as with
    ``moments="exact"``, so are the recorded updates (bitwise).
    """

    def _initial_prev(self, ps: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat([p.detach().reshape(-1)[c] for p, c in zip(ps, self.coords)]
                         ).to(self.wdtype)

    def _run(self, pointers: np.ndarray, row: int, after: torch.Tensor | None = None,
             snap_sums: np.ndarray | None = None) -> None:
        """One kernel call: differences at the sampled coordinates against :attr:`prev`
        (overwritten); on a snapshot step (`after` given) all weights into `after` and their
        power sums into `snap_sums`."""
        snapshot = after is not None
        mom = self._scratch_sums if self._mom_np is None else self._mom_np[row]
        self.kernel(pointers, self._prev_np, self._offsets_np, self._numels_np,
                    self._coords_np, self._bounds_np, self._upd_np, row, self.flush_every, mom,
                    self._mom_np is not None, after.numpy() if snapshot else self._prev_np,
                    snap_sums if snapshot else self._scratch_sums, snapshot)

    def post(self, row: int, snapshot: torch.dtype | None = None) -> None:
        ps = self.params()
        if ps is None:
            return
        pointers = self._addresses(ps)
        if snapshot != self.wdtype:  # none, or one in another dtype (snapshot_flat copies)
            self._run(pointers, row)
            return
        flat, views = self._snapshot_buffer(snapshot)
        sums = np.empty((5, len(self.numels)))
        self._run(pointers, row, flat, sums)
        self._taken = (flat, views, sums)


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
        for v, p, c in zip(views, ps, self.coords_dev):
            v.copy_(torch.take(p.detach(), c))

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


def make_group(named: list[tuple[str, torch.Tensor, torch.Tensor]], *, moments: bool | str,
               flush_every: int, worker: JobThread) -> Group:
    """The group for parameters sharing one device and dtype: :class:`FusedGroup` (moments
    ``"exact"``) or :class:`SampledFusedGroup` (``"sampled"``, none) for CPU float32/float64
    where numba compiles its kernel, else :class:`BlockGroup`."""
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
    nn = torch.tensor(numels, dtype=torch.float64, device=mom.device)
    raw = _io.moments_from_sums(mom.transpose(1, 2), nn)  # (n, K, 4) of -Δw
    signs = torch.tensor([-1.0, 1.0, -1.0, 1.0], dtype=torch.float64, device=mom.device)
    return (raw * signs).transpose(1, 2)


def finish(upd: torch.Tensor, mom: torch.Tensor | None, numels: list[int]
           ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Raw rows of the block path (updates ``-Δw`` (n, C), power sums (n, 5, K)) ->
    (updates Δw (n, C), raw moment rows (n, 4, K) float64); see
    :func:`update_moments_from_sums`."""
    return torch.neg(upd), None if mom is None else update_moments_from_sums(mom, numels)
