"""The WeightRecorder's per-step work on the CPU as one compiled loop (numba).

:func:`fused_step`, right after an optimizer step, reads each tracked
parameter once and, in the same pass,

* takes the exact difference with the weights after the previous step (kept in a flat buffer
  that the same pass then overwrites with the current weights);
* writes the differences at the sampled coordinates;
* accumulates, in float64, the shifted power sums 1-4 of the differences of each tensor.

One pass over the weights replaces a copy into a block of rows plus a reduction of some 40
torch calls that each read the whole block (:mod:`~weightstats.capture._block`). Measured on
the digits MLP (85k weights, one torch thread, 2-core machine, 2000 steps, medians of 7
interleaved runs, ``bench/capture_overhead.py``): training with this kernel inline ran 1.05x
as long as without a recorder when it was written (1.07-1.11x in later runs on the same
noisy VM, docs/capture.md), against 1.11x for the block copy plus the TorchScript
reduction on a second thread and 1.03x (later 1.01-1.05x) for a bare copy of the weights
(the least any recorder of exact updates must do). Alone in a hot cache it takes 18-19 us
a step, against 59 us for the TorchScript reduction.

The kernel reads the parameters through their data pointers, so that a step costs one call
whatever the number of tensors; the caller checks, every step, that no parameter changed
address, dtype or strides, and stages them through a copy when one is no longer a contiguous
CPU tensor of the group's dtype (see :class:`~weightstats.capture._fused_group.FusedGroup`).
On a snapshot step the pass writes the current weights into the snapshot buffer instead
of back into the previous-weights buffer (the snapshot is then the next step's "previous
weights", only read until the store has written it), and accumulates their own power sums,
so a snapshot costs no extra copy and the store does not read it again for statistics.

The sampled differences are Δw, laid out per tensor as the store writes them; the power sums
are, as in the block reduction, of ``y = -Δw - shift``, the shift being the mean of the sampled
differences of the step (the exact mean when every coordinate is sampled), so that ``sum(y)``
is small and the central moments follow without cancellation
(:func:`~weightstats.capture._group.update_moments_from_sums`).

This module imports numba; :func:`weightstats.capture._kernels.step_kernel` imports it when
the recorder first needs it and returns None where numba is missing or fails to compile,
and the recorder then uses the block reduction.
"""

from __future__ import annotations

import numba
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["fused_step"]


@intrinsic
def _as_pointer(typingctx, address):
    """An int64 address as a void pointer (for ``numba.carray``)."""

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], cgutils.voidptr_t)

    return types.voidptr(address), codegen


@numba.njit(nogil=True, fastmath=True, cache=True, inline="always")
def _accumulate(s1, s2, s3, s4, z):
    """The running sums of ``z, z**2, z**3, z**4`` with one more value."""
    z2 = z * z
    return s1 + z, s2 + z2, s3 + z2 * z, s4 + z2 * z2


@numba.njit(nogil=True, fastmath=True, cache=True, inline="always")
def _store_sums(sums, k, s1, s2, s3, s4, shift):
    sums[0, k] = s1
    sums[1, k] = s2
    sums[2, k] = s3
    sums[3, k] = s4
    sums[4, k] = shift


@numba.njit(nogil=True, fastmath=True, cache=True)
def _power_sums(x, shift, sums, k):
    """``sums[:, k]`` = the sums of ``z, z**2, z**3, z**4`` (``z = x - shift``) and the
    shift, accumulated in float64."""
    s1 = s2 = s3 = s4 = 0.0
    for t in range(x.shape[0]):
        s1, s2, s3, s4 = _accumulate(s1, s2, s3, s4, x[t] - shift)
    _store_sums(sums, k, s1, s2, s3, s4, shift)


@numba.njit(nogil=True, fastmath=True, cache=True)
def fused_step(pointers, prev, after, in_place, offsets, numels, coords, coord_bounds, upd, row,
               rows, mom, moments, snap_sums, snapshot):
    """After a step: Δw at the sampled coordinates into row `row` of `upd`; ``mom`` (5, K) =
    the sums of ``y, y**2, y**3, y**4`` (``y = -Δw - shift``) and the shift per tensor, when
    `moments`; ``after`` (N,) = the current weights, ``prev`` (N,) being the previous ones,
    or ``prev`` itself when `in_place` (``after`` is then ignored: a loop that writes the
    array it reads vectorises, one that writes another array that may overlap does not,
    and ran 5x slower); ``snap_sums`` (5, K) = the shifted power sums of the current
    weights when `snapshot` (never in place), and also, as scratch, whenever the weights
    are written to another array with moments (one loop computes both sets of sums).

    ``pointers[k]`` is the address of tensor k's values (``numels[k]`` of prev's dtype),
    ``offsets[k]`` where they start in ``prev``; ``coords`` are indices within each
    tensor, those of tensor k at ``coords[coord_bounds[k]:coord_bounds[k + 1]]``. ``upd``
    is flat: tensor k's updates are a contiguous ``(rows, C_k)`` slab starting at
    ``rows * coord_bounds[k]``, so that the store writes each slab as it is. Shifts are the
    means over the sampled coordinates (exact means when all are sampled).
    """
    for k in range(offsets.shape[0]):
        n = numels[k]
        w = numba.carray(_as_pointer(pointers[k]), n, prev.dtype)
        before = prev[offsets[k]:offsets[k] + n]
        now_out = before if in_place else after[offsets[k]:offsets[k] + n]
        first, last = coord_bounds[k], coord_bounds[k + 1]
        out = upd[rows * first + row * (last - first):rows * first + (row + 1) * (last - first)]
        total = 0.0
        level = 0.0
        for c in range(first, last):
            i = coords[c]
            d = w[i] - before[i]  # Δw, the exact difference of two floats
            out[c - first] = d
            total -= d
            level += w[i]
        m = max(last - first, 1)
        shift = total / m
        wshift = level / m
        s1 = s2 = s3 = s4 = 0.0
        if moments and not in_place:  # a snapshot step, or the step after one: both sums
            z1 = z2 = z3 = z4 = 0.0
            for t in range(n):
                now = w[t]
                now_out[t] = now
                s1, s2, s3, s4 = _accumulate(s1, s2, s3, s4, (before[t] - now) - shift)
                z1, z2, z3, z4 = _accumulate(z1, z2, z3, z4, now - wshift)
            _store_sums(snap_sums, k, z1, z2, z3, z4, wshift)
        elif moments:  # in place: the loop writes the array it reads, which vectorises
            for t in range(n):
                now = w[t]
                s1, s2, s3, s4 = _accumulate(s1, s2, s3, s4, (before[t] - now) - shift)
                before[t] = now
        else:
            for t in range(n):  # a loop: a slice assignment copies through a temporary
                now_out[t] = w[t]
            if snapshot:
                _power_sums(now_out, wshift, snap_sums, k)
        if moments:
            _store_sums(mom, k, s1, s2, s3, s4, shift)


@numba.njit(nogil=True, fastmath=True, cache=True)
def sampled_step(pointers, prev, offsets, numels, coords, coord_bounds, upd, row, rows, mom,
                 moments, snap, snap_sums, snapshot):
    """After a step, reading only the sampled coordinates (``moments="sampled"`` or none):
    Δw there into row `row` of `upd`, and ``prev`` (C,), their values after the previous
    step, overwritten with the current ones; ``mom`` (5, K) = the sums of ``y, y**2, y**3,
    y**4`` (``y = -Δw - shift``) over the sampled coordinates and the shift, when `moments`;
    on a `snapshot` step ``snap`` (N,) = all current weights and ``snap_sums`` (5, K) their
    shifted power sums, as :func:`fused_step` gives them. Arguments as for
    :func:`fused_step`; the shifts are the same (means over the sampled coordinates), so
    when every coordinate is sampled the sums are those of :func:`fused_step`.
    """
    for k in range(offsets.shape[0]):
        n = numels[k]
        w = numba.carray(_as_pointer(pointers[k]), n, prev.dtype)
        first, last = coord_bounds[k], coord_bounds[k + 1]
        m = last - first
        out = upd[rows * first + row * m:rows * first + (row + 1) * m]
        ks = coords[first:last]
        before = prev[first:last]
        # the gather first, then the differences over contiguous arrays: 9.2 us a step for the
        # digits MLP's 11,274 sampled values, against 13.5 us for one loop that gathers and
        # subtracts (numba, alone in a hot cache, medians of 5,000 calls; the same bits)
        for c in range(m):
            out[c] = w[ks[c]]
        total = 0.0
        level = 0.0
        for c in range(m):
            now = out[c]
            d = now - before[c]  # Δw, the exact difference of two floats
            before[c] = now
            out[c] = d
            total -= d
            level += now
        count = max(m, 1)
        if moments:
            shift = total / count
            s1 = s2 = s3 = s4 = 0.0
            for c in range(m):
                s1, s2, s3, s4 = _accumulate(s1, s2, s3, s4, -out[c] - shift)
            _store_sums(mom, k, s1, s2, s3, s4, shift)
        if snapshot:
            dst = snap[offsets[k]:offsets[k] + n]
            for t in range(n):
                dst[t] = w[t]
            _power_sums(dst, level / count, snap_sums, k)
