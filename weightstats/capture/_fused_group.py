"""The fused path of the WeightRecorder's per-step work: numba's one-pass kernels, inline.

:class:`FusedGroup` (``moments="exact"``) runs :func:`~weightstats.capture._fused.fused_step`
after each step, :class:`SampledFusedGroup` (``"sampled"``, none) runs
:func:`~weightstats.capture._fused.sampled_step`; :func:`~weightstats.capture._group.make_group`
picks them for CPU float32/float64 parameters where numba compiles the kernels.

Measured on the digits MLP (``bench/capture_overhead.py``, 2-core machine, one torch thread):
the fused kernel takes 18-19 us a step alone in a hot cache and 20-23 us inside the training
loop (3 % of the 0.65 ms step), and training ran 1.05-1.11x as long with it as without a
recorder (runs of 7 repeats over several sessions); the block path's per-step copy and
reduction on a second thread ran 1.11x (cache and memory-bandwidth contention between the
two cores, and the thread hand-overs, cost more than the arithmetic).

Alone, the exact pass took 20 us in a hot cache and 23 us with every buffer evicted first (a
16 MB array written before each call): it is bound by its float64 arithmetic, not by memory
traffic. Timed inside the training loop (a ``perf_counter`` pair around the hook, 2,000 steps
of a 0.68 ms step), the hook took 30 us with ``moments="exact"`` and 18 us with
``"sampled"``, and the training step outside it ran about 3 % slower in both modes.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ._group import Group, update_moments_from_sums
from ._io import JobThread

__all__ = ["FusedGroup", "SampledFusedGroup"]


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
            self._plain_step(pointers, row)
            return
        # a snapshot step: the kernel also writes every weight into a snapshot buffer, with
        # their power sums, kept for snapshot_flat()
        flat, views = self._snapshot_buffer(snapshot)
        sums = np.empty((5, len(self.numels)))
        self._run(pointers, row, flat, sums)
        self._snapshot_taken(flat)
        self._taken = (flat, views, sums)

    def _plain_step(self, pointers: np.ndarray, row: int) -> None:
        """A step without a snapshot: the current weights over :attr:`prev`, in place, unless
        prev is a snapshot the store may still be reading: then into the group's own buffer."""
        if not self._prev_shared:
            self._run(pointers, row)
            return
        own = self._own if self._own is not None else torch.empty_like(self.prev)
        self._own = None
        self._run(pointers, row, own)
        self._set_prev(own, shared=False)

    def _snapshot_taken(self, flat: torch.Tensor) -> None:
        """After a snapshot step: the snapshot buffer, which holds the current weights, is the
        next step's previous weights (only read from then on)."""
        if not self._prev_shared:
            self._own = self.prev  # free until the next step without a snapshot
        self._set_prev(flat, shared=True)

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

    def _plain_step(self, pointers: np.ndarray, row: int) -> None:
        self._run(pointers, row)  # prev is the sample's own buffer, always overwritten

    def _snapshot_taken(self, flat: torch.Tensor) -> None:
        """Nothing to hand over: the snapshot is not this group's previous values."""
