"""Per-step work of the WeightRecorder, batched over all parameters that share a device and dtype.

All tracked parameters of a group live, for the recorder, in one flat buffer ``prev`` of
``N = sum(numel)`` values (views ``prev_views`` have the parameters' shapes). One step costs a
fixed number of kernels whatever the number of tensors:

* pre-step hook:  ``_foreach_copy_(prev_views, params)``                      (w_{t-1})
* post-step hook: ``_foreach_sub_(prev_views, params)``       -> prev = -Δw_t, exact
  ``index_select(prev, coords)``                               -> the sampled coordinates
  and, with moments, per-tensor sums (the mean), an in-place centring, three products and one
  sum per tensor of the four rows (power sums 1-4; :meth:`Group.take` combines them in float64).

Signs are fixed (negated) once per flush, off the per-step path; negation is exact. Measured
on the 64-256-256-10 digits MLP (6 tensors, 85k weights, one CPU thread, a loaded 2-core
machine): both hooks together take 0.3-0.6 ms per step with moments and 0.1-0.2 ms without
(a first, per-tensor version took 0.6 ms with moments under a lighter load).
"""

from __future__ import annotations

import weakref

import torch

__all__ = ["SMALL_FLOATS", "Group"]

SMALL_FLOATS = (torch.float16, torch.bfloat16)


class Group:
    """Buffers and per-step kernels for parameters sharing one device and one dtype."""

    def __init__(self, named: list[tuple[str, torch.Tensor, torch.Tensor]], *, moments: bool,
                 flush_every: int) -> None:
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
        kw = {"device": self.device, "dtype": self.wdtype}
        n_total = sum(self.numels)
        # row 0: prev (w_{t-1}, then -Δw_t shifted); rows 1-3: its 2nd, 3rd, 4th powers
        self.work = torch.empty((4 if moments else 1, n_total), **kw)
        self.prev = self.work[0]
        self.prev_flat_views = list(torch.split(self.prev, self.numels))
        self.prev_views = [v.view(s) for v, s in zip(self.prev_flat_views, self.shapes)]
        self.work_views = list(torch.split(self.work, self.numels, dim=1))
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
        self.new_buffers()

    def new_buffers(self) -> None:
        kw = {"device": self.device, "dtype": self.wdtype}
        self.upd = torch.empty((self.flush_every, self.coords_all.numel()), **kw)
        # per row: sums of y, y**2, y**3, y**4 (y = -Δw - shift) and the shift, per tensor
        self.mom = (torch.empty((self.flush_every, 5, len(self.numels)), **kw)
                    if self.moments else None)

    def params(self) -> list[torch.Tensor] | None:
        ps = [r() for r in self.refs]
        return None if any(p is None for p in ps) else ps

    # ---------------------------------------------------------------- per step
    def pre(self) -> None:
        ps = self.params()
        if ps is not None:
            torch._foreach_copy_(self.prev_views, ps)

    def post(self, row: int) -> None:
        ps = self.params()
        if ps is None:
            return
        torch._foreach_sub_(self.prev_views, ps)  # prev = w_{t-1} - w_t = -Δw_t, exact
        torch.index_select(self.prev, 0, self.coords_all, out=self.upd[row])
        if not self.moments:
            return
        views, mom = self.prev_flat_views, self.mom[row]
        # shift = this step's mean (two passes): a lagged shift was tried and lost 0.5 % of the
        # variance when the mean moved by hundreds of standard deviations between steps
        torch.div(torch.stack([v.sum() for v in views]), self.lengths, out=self.shift)
        torch._foreach_sub_(views, self.shift_list)  # y = -Δw - shift, per tensor
        w = self.work
        torch.mul(w[0], w[0], out=w[1])
        torch.mul(w[1], w[0], out=w[2])
        torch.mul(w[1], w[1], out=w[3])
        torch.stack([wv.sum(1) for wv in self.work_views], dim=1, out=mom[:4])
        mom[4].copy_(self.shift)

    # ---------------------------------------------------------------- flush
    def take(self, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The first `n` rows as (updates (n, C), raw moments (n, 4, K)) with signs fixed.

        Raw moment rows are ``(mean, var, sum c**3, sum c**4)`` of Δw, computed in float64 from
        the shifted power sums: with ``E_k = mean(y**k)`` and ``y = -Δw - a``,
        ``mean = -(a + E_1)``, ``m2 = E_2 - E_1**2``, ``m3 = -(E_3 - 3 E_1 E_2 + 2 E_1**3)``,
        ``m4 = E_4 - 4 E_1 E_3 + 6 E_1**2 E_2 - 3 E_1**4``. The shift keeps ``E_1`` small
        near zero (the shift is the float32 mean), so the combination loses no accuracy.
        """
        upd = torch.neg(self.upd[:n])
        mom = None
        if self.mom is not None:
            raw = self.mom[:n].to(torch.float64)
            nn = self.lengths.to(torch.float64)
            e1, e2, e3, e4 = (raw[:, k] / nn for k in range(4))
            m2 = (e2 - e1 * e1).clamp_min(0)
            m3 = e3 - 3 * e1 * e2 + 2 * e1**3
            m4 = (e4 - 4 * e1 * e3 + 6 * e1**2 * e2 - 3 * e1**4).clamp_min(0)
            mom = torch.stack([-(raw[:, 4] + e1), m2, -m3 * nn, m4 * nn], dim=1)
        return upd, mom

    def snapshot_flat(self, dtype: torch.dtype) -> torch.Tensor | None:
        """The current parameters concatenated into one new flat tensor of `dtype`."""
        ps = self.params()
        if ps is None:
            return None
        return torch.cat([p.detach().reshape(-1) for p in ps]).to(dtype)
