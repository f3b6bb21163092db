"""Speed of the normality battery plus effect sizes, relative to one ``np.sort``.

Run ``python bench/normality_speed.py``. It draws 10^6 heavy-tailed float32 values (Student t
with 4 degrees of freedom, the shape of many trained weight tensors), times one ``np.sort`` of
that array and one ``normality_with_effects`` call (every test in the battery, Shapiro-Wilk on
its 5,000-value subsample, and all effect sizes) side by side, and prints the ratio of the best
of several repeats. The target is a ratio below 5.
"""

from __future__ import annotations

import time

import numpy as np

from weightstats.stats.normality import normality_with_effects


def _best(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main(n: int = 10**6, *, repeats: int = 7, seed: int = 0) -> float:
    """Print and return (battery + effect sizes time) / (np.sort time) on `n` float32 values."""
    x = np.random.default_rng(seed).standard_t(4, size=n).astype(np.float32)
    normality_with_effects(x, rng=seed)  # warm caches (statsmodels' Lilliefors table, imports)
    t_sort = t_battery = float("inf")
    for _ in range(repeats):  # interleave, so both see the same machine load
        t_sort = min(t_sort, _best(lambda: np.sort(x), 1))
        t_battery = min(t_battery, _best(lambda: normality_with_effects(x, rng=seed), 1))
    ratio = t_battery / t_sort
    print(
        f"n={n} float32 t(4): np.sort {t_sort * 1e3:.2f} ms, "
        f"normality_with_effects {t_battery * 1e3:.2f} ms, ratio {ratio:.2f} (target < 5)"
    )
    return ratio


if __name__ == "__main__":
    main()
