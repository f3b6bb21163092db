"""Per-tensor sampling and the structure-aware (per output unit) view, memory-bounded.

A tensor arrives in its storage dtype (a torch tensor, possibly memory-mapped, or a numpy
array). Nothing here converts the whole tensor to float64: per-unit means and standard
deviations are accumulated over blocks of at most :data:`BLOCK_VALUES` values, and the
subsample used for the fits is gathered by index and only then upcast. Peak extra memory is
therefore ``O(BLOCK_VALUES + max_samples + n_units)`` float64 values, whatever the tensor's size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import special, stats

__all__ = ["Prepared", "Units", "prepare", "row_shapiro_pass_rate", "ks_distance", "BLOCK_VALUES"]

#: Values converted to float64 at a time when scanning a tensor (8 MB of float64).
BLOCK_VALUES = 1 << 20
#: Shapiro-Wilk p-values are accurate up to 5,000 values (scipy's documented bound).
SHAPIRO_MAX = 5000
#: P(|Z| > 3) for a standard normal, 2 * scipy.stats.norm.sf(3).
GAUSS_BEYOND_3SD = 0.0026997960632601866


def _as_torch(values: Any):
    import torch

    if isinstance(values, torch.Tensor):
        return values.detach().cpu()
    arr = np.asarray(values)
    if arr.dtype.kind not in "fiu" or arr.dtype == np.float16 or not arr.dtype.isnative:
        arr = arr.astype(np.float64)
    return torch.from_numpy(np.ascontiguousarray(arr))


@dataclass(frozen=True)
class Prepared:
    """What one pass over a tensor yields.

    Attributes
    ----------
    pooled : numpy.ndarray
        Finite values of the (sub)sample, float64.
    rowwise : numpy.ndarray or None
        The same values standardised by their own unit's mean and sd (None when the tensor has
        no unit structure: 1-D, or one unit).
    n_finite : int
        Finite values in the whole tensor.
    n_nonfinite : int
        NaN and infinite values in the whole tensor.
    n_units : int
        Output units (rows or channels).
    n_constant_units : int
        Units whose values are all equal (left out of ``rowwise``).
    units : Units
        The tensor's units, read block by block (for the per-unit tests).
    moments : dict
        Over **every** finite value (not the subsample): ``mean``, ``sd`` (ddof=1),
        ``skewness`` (G1), ``excess_kurtosis`` (G2) and, when the tensor was subsampled,
        ``tail_mass_ratio`` = P(|x - mean| > 3 sd) / 0.0026998 (else NaN: the subsample is
        every value and the stats engine's own figure is exact).
    """

    pooled: np.ndarray
    rowwise: np.ndarray | None
    n_finite: int
    n_nonfinite: int
    n_units: int
    n_constant_units: int
    units: Any
    moments: dict


class Units:
    """A tensor seen as ``(n_units, unit_size)``: one row per output unit, read in blocks.

    `values` is a torch tensor or numpy array (any float dtype), or a *row source*: an object
    with ``rows(start, stop)`` returning the tensor's slices ``[start:stop]`` along axis 0 as a
    torch tensor (:meth:`weightstats.io.checkpoint.Checkpoint.row_source`), so a memory-mapped
    tensor is read one block of units at a time and never copied whole.
    """

    def __init__(self, values: Any, shape: tuple[int, ...], out_axis: int) -> None:
        self.structured = len(shape) >= 2 and shape[out_axis] > 1
        numel = math.prod(shape)
        self._t = None
        self._src = None
        if hasattr(values, "rows") and (not self.structured or out_axis in (0, -len(shape))):
            if self.structured:
                self._src = values
            else:  # 1-D (or a single unit): small, read at once
                self._t = values.rows(0, shape[0] if shape else 1).reshape(1, -1)
        else:
            import torch

            t = values if not hasattr(values, "rows") else values.rows(0, shape[0])
            t = _as_torch(t).reshape(shape)
            if self.structured and out_axis not in (0, -len(shape)):
                t = torch.movedim(t, out_axis, 0)
            self._t = t.reshape(shape[out_axis] if self.structured else 1, -1)
        self.n_units = shape[out_axis] if self.structured else 1
        self.unit_size = numel // self.n_units if self.n_units else 0

    def block(self, start: int, stop: int):
        """Units ``start:stop`` as a ``(stop - start, unit_size)`` tensor in storage dtype."""
        if self._t is not None:
            return self._t[start:stop]
        return self._src.rows(start, stop).reshape(stop - start, self.unit_size)

    def blocks(self):
        """``(start, stop, block)`` over whole units, about :data:`BLOCK_VALUES` values each."""
        step = max(1, BLOCK_VALUES // max(self.unit_size, 1))
        for start in range(0, self.n_units, step):
            stop = min(self.n_units, start + step)
            yield start, stop, self.block(start, stop)


def prepare(
    values: Any,
    shape: tuple[int, ...],
    *,
    out_axis: int,
    max_samples: int | None,
    rng: np.random.Generator,
) -> Prepared:
    """Scan a tensor block by block: subsample it, standardise per unit, exact moments.

    Parameters
    ----------
    values : torch.Tensor, numpy.ndarray or row source
        The tensor, any float dtype (see :class:`Units`).
    shape : tuple of int
        Its shape.
    out_axis : int
        Axis of the output units (0 for PyTorch, -1 for Keras).
    max_samples : int or None
        Size of the uniform random subsample (without replacement); None uses every value.
    rng : numpy.random.Generator
        Draws the subsample.
    """
    import torch

    units = Units(values, tuple(shape), out_axis)
    n_units, unit_size = units.n_units, units.unit_size
    numel = n_units * unit_size
    subsample = max_samples is not None and numel > max_samples
    idx = np.sort(rng.choice(numel, size=max_samples, replace=False)) if subsample else None
    sample = np.empty(max_samples if subsample else numel)

    # one pass over blocks of whole units: central moments per unit and the subsample
    means = np.zeros(n_units)
    counts = np.zeros(n_units, dtype=np.int64)
    m2 = np.zeros(n_units)
    m3 = np.zeros(n_units)
    m4 = np.zeros(n_units)
    with np.errstate(invalid="ignore", divide="ignore"):
        for start, stop, native in units.blocks():
            lo, hi = start * unit_size, stop * unit_size
            if subsample:  # gathered in storage dtype, then upcast
                a, b = np.searchsorted(idx, [lo, hi])
                picked = native.reshape(-1)[torch.from_numpy(idx[a:b] - lo)]
                sample[a:b] = picked.to(torch.float64).numpy()
            block = native.to(torch.float64).numpy()
            if not subsample:
                sample[lo:hi] = block.reshape(-1)
            finite = np.isfinite(block)
            count = finite.sum(axis=1)
            mean = np.where(finite, block, 0.0).sum(axis=1) / count
            dev = np.where(finite, block - mean[:, None], 0.0)
            dev2 = dev * dev
            counts[start:stop] = count
            means[start:stop] = mean
            m2[start:stop] = dev2.sum(axis=1)
            m3[start:stop] = np.einsum("ij,ij->i", dev2, dev)
            m4[start:stop] = np.einsum("ij,ij->i", dev2, dev2)
        sds = np.sqrt(m2 / np.maximum(counts - 1, 1))
    n_finite = int(counts.sum())
    moments = _pooled_moments(counts, means, m2, m3, m4)

    if idx is None:
        idx = np.arange(numel)
    keep = np.isfinite(sample)
    pooled = sample[keep]
    rowwise = None
    constant = int(np.count_nonzero((sds == 0) | ~np.isfinite(sds)))
    if units.structured:
        unit = (idx // unit_size)[keep]
        sd = sds[unit]
        good = np.isfinite(sd) & (sd > 0)
        rowwise = (pooled[good] - means[unit][good]) / sd[good]
    if n_finite > pooled.size and moments["sd"] > 0:  # subsampled: count the tails exactly
        lo, hi = moments["mean"] - 3 * moments["sd"], moments["mean"] + 3 * moments["sd"]
        beyond = 0
        for _, _, native in units.blocks():
            block = native.to(torch.float64).numpy()
            beyond += int(np.count_nonzero((block < lo) | (block > hi)))
        moments["tail_mass_ratio"] = beyond / n_finite / GAUSS_BEYOND_3SD
    return Prepared(pooled, rowwise, n_finite, numel - n_finite, n_units, constant, units, moments)


def _pooled_moments(counts, means, m2, m3, m4) -> dict[str, float]:
    """Mean, ddof=1 sd, bias-corrected skewness G1 and excess kurtosis G2 of all finite values.

    Per-unit central sums are combined exactly (the shift identities
    ``sum (x - M)^k = sum (d + delta)^k`` with ``sum d = 0`` within a unit), so the result
    equals ``scipy.stats.skew(x, bias=False)`` and ``kurtosis(x, bias=False)`` on the full
    tensor (checked in the tests) without holding it in float64.
    """
    n = float(counts.sum())
    out = {
        "mean": math.nan,
        "sd": math.nan,
        "skewness": math.nan,
        "excess_kurtosis": math.nan,
        "tail_mass_ratio": math.nan,
    }
    if n < 2:
        return out
    ok = counts > 0
    c, mu = counts[ok].astype(float), means[ok]
    grand = float(np.sum(c * mu) / n)
    d = mu - grand
    s2 = float(np.sum(m2[ok] + c * d**2))
    s3 = float(np.sum(m3[ok] + 3 * d * m2[ok] + c * d**3))
    s4 = float(np.sum(m4[ok] + 4 * d * m3[ok] + 6 * d**2 * m2[ok] + c * d**4))
    out.update(mean=grand, sd=math.sqrt(s2 / (n - 1)))
    if s2 > 0 and n > 3:
        g1 = (s3 / n) / (s2 / n) ** 1.5
        g2 = (s4 / n) / (s2 / n) ** 2 - 3.0
        out["skewness"] = g1 * math.sqrt(n * (n - 1)) / (n - 2)
        out["excess_kurtosis"] = ((n + 1) * g2 + 6) * (n - 1) / ((n - 2) * (n - 3))
    return out


def row_shapiro_pass_rate(
    prep: Prepared, *, max_rows: int, alpha: float, rng: np.random.Generator
) -> tuple[float, int]:
    """Share of output units whose Shapiro-Wilk test does not reject normality at `alpha`.

    At most `max_rows` units (a seeded random choice) are tested, each on at most 5,000 of its
    values. Under normality the expected pass rate is ``1 - alpha``.

    Returns
    -------
    rate : float
        NaN when no unit has at least 3 distinct finite values.
    n_rows : int
        Units tested.
    """
    import torch

    units = prep.units
    n_units, unit_size = units.n_units, units.unit_size
    if n_units < 2 or unit_size < 3:
        return math.nan, 0
    chosen = np.sort(rng.choice(n_units, size=min(max_rows, n_units), replace=False))
    passed = tested = 0
    for r in chosen:  # one unit at a time, subsampled before the upcast (memory stays small)
        native = units.block(int(r), int(r) + 1).reshape(-1)
        if unit_size > SHAPIRO_MAX:
            native = native[
                torch.from_numpy(np.sort(rng.choice(unit_size, SHAPIRO_MAX, replace=False)))
            ]
        row = native.to(torch.float64).numpy()
        row = row[np.isfinite(row)]
        if row.size < 3 or row.min() == row.max():
            continue
        tested += 1
        passed += stats.shapiro(row).pvalue > alpha
    return (passed / tested if tested else math.nan), tested


def ks_distance(sorted_x: np.ndarray, dist: str, scale: float) -> float:
    """Kolmogorov-Smirnov statistic of sorted data against U(-scale, scale) or N(0, scale).

    Equals ``scipy.stats.kstest(x, 'uniform', args=(-scale, 2 * scale)).statistic`` and
    ``kstest(x, 'norm', args=(0, scale)).statistic`` (checked in the tests); written with numpy
    on the already sorted sample to skip scipy's re-sort and its p-value computation.
    """
    n = sorted_x.size
    if n == 0 or not (scale > 0) or not math.isfinite(scale):
        return math.nan
    if dist == "uniform":
        cdf = np.clip((sorted_x + scale) / (2 * scale), 0.0, 1.0)
    else:
        cdf = special.ndtr(sorted_x / scale)
    i = np.arange(1, n + 1)
    return float(max(np.max(i / n - cdf), np.max(cdf - (i - 1) / n)))
