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

__all__ = ["Prepared", "prepare", "row_shapiro_pass_rate", "ks_distance", "BLOCK_VALUES"]

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
    units : object
        The tensor viewed as ``(n_units, unit_size)`` in storage dtype (for the per-unit tests).
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


def prepare(values: Any, shape: tuple[int, ...], *, out_axis: int, max_samples: int | None,
            rng: np.random.Generator) -> Prepared:
    """Scan a tensor once: subsample it and compute the per-unit standardisation.

    Parameters
    ----------
    values : torch.Tensor or numpy.ndarray
        The tensor, any float dtype.
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

    t = _as_torch(values).reshape(shape)
    structured = len(shape) >= 2 and shape[out_axis] > 1
    if structured:
        t = torch.movedim(t, out_axis, 0) if out_axis != 0 else t
        units = t.reshape(shape[out_axis], -1)
    else:
        units = t.reshape(1, -1)
    n_units, unit_size = units.shape
    numel = n_units * unit_size

    # one pass over blocks of whole units: finite counts and central moments per unit
    means = np.zeros(n_units)
    sds = np.zeros(n_units)
    counts = np.zeros(n_units, dtype=np.int64)
    m2 = np.zeros(n_units)
    m3 = np.zeros(n_units)
    m4 = np.zeros(n_units)
    rows_per_block = max(1, BLOCK_VALUES // max(unit_size, 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        for start in range(0, n_units, rows_per_block):
            stop = min(n_units, start + rows_per_block)
            block = units[start:stop].to(torch.float64).numpy()
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

    # the subsample: positions drawn uniformly, gathered in storage dtype, then upcast
    flat = units.reshape(-1)
    if max_samples is not None and numel > max_samples:
        idx = np.sort(rng.choice(numel, size=max_samples, replace=False))
        sample = flat[torch.from_numpy(idx)].to(torch.float64).numpy()
    else:
        idx = np.arange(numel)
        sample = flat.to(torch.float64).numpy()
    keep = np.isfinite(sample)
    pooled = sample[keep]
    rowwise = None
    constant = int(np.count_nonzero((sds == 0) | ~np.isfinite(sds)))
    if structured:
        unit = (idx // unit_size)[keep]
        sd = sds[unit]
        good = np.isfinite(sd) & (sd > 0)
        rowwise = (pooled[good] - means[unit][good]) / sd[good]
    if n_finite > pooled.size and moments["sd"] > 0:  # subsampled: count the tails exactly
        lo, hi = moments["mean"] - 3 * moments["sd"], moments["mean"] + 3 * moments["sd"]
        beyond = 0
        for start in range(0, numel, BLOCK_VALUES):
            block = flat[start:start + BLOCK_VALUES].to(torch.float64).numpy()
            beyond += int(np.count_nonzero((block < lo) | (block > hi)))
        moments["tail_mass_ratio"] = beyond / n_finite / GAUSS_BEYOND_3SD
    return Prepared(pooled, rowwise, n_finite, numel - n_finite, n_units, constant, units,
                    moments)


def _pooled_moments(counts, means, m2, m3, m4) -> dict[str, float]:
    """Mean, ddof=1 sd, bias-corrected skewness G1 and excess kurtosis G2 of all finite values.

    Per-unit central sums are combined exactly (the shift identities
    ``sum (x - M)^k = sum (d + delta)^k`` with ``sum d = 0`` within a unit), so the result
    equals ``scipy.stats.skew(x, bias=False)`` and ``kurtosis(x, bias=False)`` on the full
    tensor (checked in the tests) without holding it in float64.
    """
    n = float(counts.sum())
    out = {"mean": math.nan, "sd": math.nan, "skewness": math.nan, "excess_kurtosis": math.nan,
           "tail_mass_ratio": math.nan}
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


def row_shapiro_pass_rate(prep: Prepared, *, max_rows: int, alpha: float,
                          rng: np.random.Generator) -> tuple[float, int]:
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
    n_units, unit_size = units.shape
    if n_units < 2 or unit_size < 3:
        return math.nan, 0
    chosen = np.sort(rng.choice(n_units, size=min(max_rows, n_units), replace=False))
    passed = tested = 0
    for r in chosen:  # one unit at a time, subsampled before the upcast (memory stays small)
        native = units[int(r)]
        if unit_size > SHAPIRO_MAX:
            native = native[torch.from_numpy(np.sort(rng.choice(unit_size, SHAPIRO_MAX, replace=False)))]
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
