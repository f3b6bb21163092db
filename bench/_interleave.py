"""Interleaved, shuffled repeats for the capture benches: runs side by side in one process.

On a noisy machine the speed of the host drifts over a bench's minutes; running every
configuration once per repeat, in a new random order each time, spreads that drift over all
of them instead of charging it to whichever ran last.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import TypeVar

Result = TypeVar("Result")


def interleaved(configs: Sequence[Hashable], run: Callable[[Hashable, Path], Result], *,
                repeats: int, folder: Path, warm_up: Callable[[Hashable, Path], object],
                seed: int = 0) -> dict[Hashable, list[Result]]:
    """Each configuration's results over `repeats` shuffled rounds.

    Parameters
    ----------
    configs : sequence
        The configurations, each passed to `run` and `warm_up`.
    run : callable
        ``run(config, folder) -> result``; `folder` (under `folder`) is removed after each run.
    repeats : int
        Rounds; each runs every configuration once, in an order drawn with `seed`.
    folder : Path
        Where the runs write (a scratch folder of the caller's).
    warm_up : callable
        ``warm_up(config, folder)``, once per configuration before the first round
        (allocator, file cache, compiled kernels).
    seed : int
        Seed of the order.

    Returns
    -------
    dict
        Configuration -> its results, in round order.
    """
    for config in configs:
        warm = folder / "warm"
        warm_up(config, warm)
        shutil.rmtree(warm, ignore_errors=True)
    results: dict[Hashable, list[Result]] = {c: [] for c in configs}
    rng = random.Random(seed)
    for rep in range(repeats):
        order = list(configs)
        rng.shuffle(order)
        for config in order:
            where = folder / f"r{rep}"
            results[config].append(run(config, where))
            shutil.rmtree(where, ignore_errors=True)
    return results
