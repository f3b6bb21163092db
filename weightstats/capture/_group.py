"""Per-step work of the WeightRecorder, batched over all parameters that share a device and dtype.

All tracked parameters of a group live, for the recorder, in flat buffers ("slots") of
``N = sum(numel)`` values whose views have the parameters' shapes. The exact difference
costs two kernels per step, on the training thread, whatever the number of tensors:

* pre-step hook:  ``_foreach_copy_(slot_views, params)``                      (w_{t-1})
* post-step hook: ``_foreach_sub_(slot_views, params)``   -> slot = -Δw_t, exact

Everything else reads only the slot: ``index_select`` of the sampled coordinates with
precomputed flat offsets and, with moments, per-tensor sums (the mean), an in-place centring,
three products and one sum per tensor of the power rows (power sums 1-4; :func:`finish`
combines them in float64). It runs inline by default; with a threaded :class:`~weightstats.capture._io.JobThread`
(``WeightRecorder(step_thread=True)``) CPU groups run it on that thread instead (torch kernels
release the GIL, so it overlaps the next training step), and a ring of :data:`CPU_SLOTS` slots
lets the training thread run up to that many steps ahead; it waits only when the worker is
further behind. The worker runs the same kernels on the same data, in step order, so results
are bitwise the same threaded or inline. On CUDA the kernels are asynchronous already, so
they are always queued inline on one slot.

Signs are fixed (negated) and the moments finished in float64 once per flush, by the store's
writer thread (:func:`finish`), off the per-step path; negation is exact.

Measured on the 64-256-256-10 digits MLP (6 tensors, 85k weights, one torch thread, loaded
2-core machine, ``bench/capture_overhead.py --floor``), alone in a hot cache: the two
training-thread kernels 15 us per step, the gather 5 us, the moment kernels 85 us (a 0.67 ms
step). Inside the training loop the same kernels cost about twice that (cache misses: with
moments they stream some 15 copies' worth of the parameters per step, about as much as
Adam's own update); ``bench/capture_overhead.py``'s ``kernels`` line measures that floor.
The step thread did not pay on that machine: at 1000 steps, 7 interleaved repeats, the run
took 1.074 s threaded against 1.045 s inline (0.69 s without a recorder).
"""

from __future__ import annotations

import threading
import weakref

import torch

from ._io import JobThread

__all__ = ["CPU_SLOTS", "SMALL_FLOATS", "Group", "finish"]

SMALL_FLOATS = (torch.float16, torch.bfloat16)

#: slots of the ring on the CPU (memory: CPU_SLOTS + 3 copies of the parameters with moments)
CPU_SLOTS = 3


class Group:
    """Buffers and per-step kernels for parameters sharing one device and one dtype."""

    def __init__(self, named: list[tuple[str, torch.Tensor, torch.Tensor]], *, moments: bool,
                 flush_every: int, worker: JobThread) -> None:
        first = named[0][1]
        self.device = first.device
        # work dtype: float32 for half types (differences of two bf16 values are exact in fp32)
        self.wdtype = torch.float32 if first.dtype in SMALL_FLOATS else first.dtype
        self.names = [n for n, _, _ in named]
        self.refs = [weakref.ref(p) for _, p, _ in named]
        self.shapes = [tuple(p.shape) for _, p, _ in named]
        self.numels = [p.numel() for _, p, _ in named]
        self.moments = moments
        self.flush_every = flush_every
        self.worker = worker
        kw = {"device": self.device, "dtype": self.wdtype}
        n_total = sum(self.numels)
        # CUDA kernels are asynchronous already: queue them inline, on one slot
        self.threaded = self.device.type == "cpu" and worker.threaded
        n_slots = CPU_SLOTS if self.threaded else 1
        self.slots = [torch.empty(n_total, **kw) for _ in range(n_slots)]
        self.slot_flat = [list(torch.split(s, self.numels)) for s in self.slots]
        self.slot_views = [[v.view(sh) for v, sh in zip(fl, self.shapes)]
                           for fl in self.slot_flat]
        self.free = [threading.Event() for _ in self.slots]
        for ev in self.free:
            ev.set()
        self.k = 0  # slot of the current step
        self.armed = False  # pre() copied the weights into slot k
        # rows 0-2: y**2, y**3, y**4 of the centred update y (the worker's scratch)
        self.scratch = torch.empty((3, n_total), **kw) if moments else None
        self.scratch_views = (list(torch.split(self.scratch, self.numels, dim=1))
                              if moments else None)
        offsets = [0]
        for n in self.numels[:-1]:
            offsets.append(offsets[-1] + n)
        self.coords = [c for _, _, c in named]  # per tensor, CPU int64, sorted
        self.coord_counts = [c.numel() for c in self.coords]
        self.coords_all = torch.cat([c + o for c, o in zip(self.coords, offsets)]).to(self.device)
        self.lengths = torch.tensor(self.numels, **kw)
        # per-tensor shift (the update's float32 mean) that centres the power sums;
        # `shift_list` are views into `shift`, which is overwritten in place every step
        self.shift = torch.zeros(len(self.numels), **kw)
        self.shift_list = list(self.shift.unbind())
        self.spare: list[tuple[torch.Tensor, torch.Tensor | None]] = []
        self.new_buffers()

    def new_buffers(self) -> None:
        """Buffers for the next `flush_every` steps: a pair given back by :meth:`give_back`
        (its pages already mapped: a fresh 5 MB buffer costs about a thousand page faults on
        the training thread) or new ones."""
        if self.spare:
            self.upd, self.mom = self.spare.pop()
            return
        kw = {"device": self.device, "dtype": self.wdtype}
        self.upd = torch.empty((self.flush_every, self.coords_all.numel()), **kw)
        # per row: sums of y, y**2, y**3, y**4 (y = -Δw - shift) and the shift, per tensor
        self.mom = (torch.empty((self.flush_every, 5, len(self.numels)), **kw)
                    if self.moments else None)

    def give_back(self, upd: torch.Tensor, mom: torch.Tensor | None) -> None:
        """Return buffers from :meth:`take` once read (any thread; list ops are atomic)."""
        if upd._base is not None and upd._base.shape[0] == self.flush_every and len(self.spare) < 2:
            self.spare.append((upd._base, None if mom is None else mom._base))

    def params(self) -> list[torch.Tensor] | None:
        ps = [r() for r in self.refs]
        return None if any(p is None for p in ps) else ps

    # ---------------------------------------------------------------- per step
    def pre(self) -> None:
        ps = self.params()
        if ps is None:
            return
        k = self.k
        if not self.armed:  # (armed: a step raised between the hooks; reuse the slot)
            free = self.free[k]
            if not free.is_set():  # the worker is len(slots) steps behind: wait for it
                free.wait()
                self.worker._raise_pending()
            free.clear()
            self.armed = True
        torch._foreach_copy_(self.slot_views[k], ps)

    def post(self, row: int) -> None:
        ps = self.params()
        if ps is None or not self.armed:
            return
        k = self.k
        torch._foreach_sub_(self.slot_views[k], ps)  # slot = w_{t-1} - w_t = -Δw_t, exact
        self.armed = False
        self.k = (k + 1) % len(self.slots)
        upd_row = self.upd[row]
        mom_row = None if self.mom is None else self.mom[row]
        if not self.threaded:
            self._reduce(k, upd_row, mom_row)
            self.free[k].set()
            return

        def job() -> None:
            try:
                self._reduce(k, upd_row, mom_row)
            finally:
                self.free[k].set()

        self.worker.submit(job)

    def _reduce(self, k: int, upd_row: torch.Tensor, mom_row: torch.Tensor | None) -> None:
        """Sampled coordinates and power sums of slot `k` (= -Δw) into this step's rows."""
        slot = self.slots[k]
        torch.index_select(slot, 0, self.coords_all, out=upd_row)
        if mom_row is None:
            return
        views = self.slot_flat[k]
        # shift = this step's mean (two passes): a lagged shift was tried and lost 0.5 % of the
        # variance when the mean moved by hundreds of standard deviations between steps
        torch.div(torch.stack([v.sum() for v in views]), self.lengths, out=self.shift)
        torch._foreach_sub_(views, self.shift_list)  # y = -Δw - shift, per tensor
        s = self.scratch
        torch.mul(slot, slot, out=s[0])
        torch.mul(s[0], slot, out=s[1])
        torch.mul(s[0], s[0], out=s[2])
        torch.stack([v.sum() for v in views], out=mom_row[0])
        torch.stack([sv.sum(1) for sv in self.scratch_views], dim=1, out=mom_row[1:4])
        mom_row[4].copy_(self.shift)

    # ---------------------------------------------------------------- flush
    def take(self, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The first `n` raw rows (updates (n, C) of -Δw, power sums (n, 5, K) or None).

        The buffers are handed over, not copied: fresh ones are allocated for the next
        steps. Call only when the worker is idle (:meth:`JobThread.wait`).
        """
        upd, mom = self.upd[:n], None if self.mom is None else self.mom[:n]
        self.new_buffers()
        return upd, mom

    def snapshot_flat(self, dtype: torch.dtype) -> torch.Tensor | None:
        """The current parameters concatenated into one new flat tensor of `dtype`."""
        ps = self.params()
        if ps is None:
            return None
        return torch.cat([p.detach().reshape(-1) for p in ps]).to(dtype)


def finish(upd: torch.Tensor, mom: torch.Tensor | None, numels: list[int]
           ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Raw rows of :meth:`Group.take` -> (updates Δw (n, C), raw moments (n, 4, K) float64).

    Raw moment rows are ``(mean, var, sum c**3, sum c**4)`` of Δw, computed in float64 from
    the shifted power sums: with ``E_k = mean(y**k)`` and ``y = -Δw - a``,
    ``mean = -(a + E_1)``, ``m2 = E_2 - E_1**2``, ``m3 = -(E_3 - 3 E_1 E_2 + 2 E_1**3)``,
    ``m4 = E_4 - 4 E_1 E_3 + 6 E_1**2 E_2 - 3 E_1**4``. The shift keeps ``E_1`` small
    near zero (the shift is the float32 mean), so the combination loses no accuracy.
    """
    upd = torch.neg(upd)
    if mom is None:
        return upd, None
    raw = mom.to(torch.float64)
    nn = torch.tensor(numels, dtype=torch.float64, device=raw.device)
    e1, e2, e3, e4 = (raw[:, k] / nn for k in range(4))
    m2 = (e2 - e1 * e1).clamp_min(0)
    m3 = e3 - 3 * e1 * e2 + 2 * e1**3
    m4 = (e4 - 4 * e1 * e3 + 6 * e1**2 * e2 - 3 * e1**4).clamp_min(0)
    return upd, torch.stack([-(raw[:, 4] + e1), m2, -m3 * nn, m4 * nn], dim=1)
