"""Numpy-only kernels shared by the statistics modules.

Nothing here validates user data (that is :func:`weightstats._validation.as_sample`'s job) and
nothing imports pandas or torch. Functions take float64 arrays and return floats or arrays.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from ..errors import InputDataError

__all__ = [
    "LOG_2PI",
    "EXP_FLOOR",
    "as_generator",
    "subsample_start",
    "SUBSAMPLE_START",
    "information_criteria",
    "check_int",
    "check_positive",
    "check_choice",
    "normal_logpdf",
]

LOG_2PI = math.log(2.0 * math.pi)

# Exponents are clipped here before np.exp in the kernels: exp(-700) ~ 1e-304 is still a normal
# float, whereas smaller results are subnormal, and arithmetic on subnormals is ~50x slower on
# x86 (measured: one gennorm derivative pass at n = 10^5 took 61 ms instead of ~3 ms). The terms
# clipped are below 1e-304 relative to the largest, so no sum changes.
EXP_FLOOR = -700.0


#: Above this many values, iterative fitters first converge on a seeded subsample of
#: ``SUBSAMPLE_START`` values and then polish on the full sample (Newton converges
#: quadratically from there, so the full data are passed over a few times only).
SUBSAMPLE_START = 20_000


def subsample_start(x: np.ndarray, seed: int = 0) -> np.ndarray | None:
    """A fixed-seed subsample for starting values, or None when `x` is small enough."""
    if x.size <= 4 * SUBSAMPLE_START:
        return None
    return x[np.random.default_rng(seed).choice(x.size, SUBSAMPLE_START, replace=False)]


def as_generator(rng: Any) -> np.random.Generator:
    """Return a numpy Generator from ``None``, an int seed, a SeedSequence or a Generator.

    A Generator is returned as is (so a caller's stream advances); ``None`` draws fresh entropy,
    as scipy and numpy do.
    """
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or isinstance(rng, (numbers.Integral, np.random.SeedSequence)):
        if isinstance(rng, numbers.Integral) and int(rng) < 0:
            raise InputDataError(f"`rng` must be a non-negative seed; got {rng}.")
        return np.random.default_rng(rng)
    raise InputDataError(
        f"`rng` must be None, an int seed or a numpy.random.Generator; got {type(rng).__name__}."
    )


def information_criteria(loglik: float, n_params: int, n: int) -> tuple[float, float]:
    """Return ``(aic, bic)`` for a maximised log-likelihood with `n_params` free parameters."""
    aic = -2.0 * loglik + 2.0 * n_params
    bic = -2.0 * loglik + n_params * math.log(n)
    return float(aic), float(bic)


def check_int(value: Any, *, name: str, minimum: int = 1) -> int:
    """Return `value` as an int >= `minimum`, or raise InputDataError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InputDataError(f"`{name}` must be an integer >= {minimum}; got {value!r}.")
    if int(value) < minimum:
        raise InputDataError(f"`{name}` must be an integer >= {minimum}; got {value}.")
    return int(value)


def check_positive(value: Any, *, name: str, upper: float | None = None) -> float:
    """Return `value` as a finite float > 0 (and < `upper` if given), or raise InputDataError."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise InputDataError(f"`{name}` must be a positive number; got {value!r}.") from None
    if not (math.isfinite(out) and out > 0) or (upper is not None and out >= upper):
        bound = f" and below {upper}" if upper is not None else ""
        raise InputDataError(f"`{name}` must be a positive number{bound}; got {value!r}.")
    return out


def check_choice(value: Any, choices: Any, *, name: str) -> str:
    """Return `value` if it is one of `choices`, else raise InputDataError listing them."""
    if not isinstance(value, str) or value not in choices:
        raise InputDataError(f"`{name}` must be one of {sorted(choices)}; got {value!r}.")
    return value


def normal_logpdf(x: np.ndarray, loc: float, scale: float) -> np.ndarray:
    """Pointwise log-density of N(loc, scale**2); same as ``scipy.stats.norm.logpdf``."""
    z = (np.asarray(x, dtype=np.float64) - loc) / scale
    return -0.5 * z * z - math.log(scale) - 0.5 * LOG_2PI
