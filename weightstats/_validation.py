"""The one input validator every public function calls.

:func:`as_sample` turns whatever a user hands us (a numpy array, a torch tensor of any floating
or integer dtype, a list) into a flat, finite ``float64`` numpy array, or raises
:class:`~weightstats.errors.InputDataError` with a message that names the argument and the fix.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from .errors import DegenerateDataWarning, InputDataError, SmallSampleWarning

__all__ = ["as_sample", "MAX_ABS", "MIN_SPREAD", "NAN_POLICIES", "to_numpy"]

NAN_POLICIES = frozenset({"raise", "omit"})

#: Largest magnitude accepted: squares of 10^7 values up to 1e150 still sum below float64's
#: maximum (1.8e308), so moments, variances and likelihoods cannot overflow.
MAX_ABS = 1e150
#: Smallest non-zero spread (max - min) accepted: squared deviations of 1e-150 stay normal
#: float64 numbers (above 2.2e-308) instead of underflowing to zero.
MIN_SPREAD = 1e-150


def to_numpy(x: Any, *, name: str = "x") -> np.ndarray:
    """Convert an array-like or torch tensor to a float64 numpy array of the same shape.

    Torch tensors of every floating dtype (float16, bfloat16, float8, float32, float64) and every
    integer or boolean dtype are accepted; they are detached and copied to the CPU. Torch is never
    imported here: a tensor is recognised by its type's module.
    """
    if type(x).__module__.split(".")[0] == "torch":
        if getattr(x, "is_complex", lambda: False)():
            raise InputDataError(f"`{name}` is a complex tensor; weightstats analyses real values.")
        import torch  # only reached when the caller already has torch loaded

        with torch.no_grad():
            return x.detach().to(device="cpu", dtype=torch.float64).numpy()
    try:
        arr = np.asarray(x)
    except Exception as exc:  # ragged lists and the like
        raise InputDataError(f"`{name}` cannot be read as an array of numbers: {exc}") from None
    if arr.dtype.kind == "c":
        raise InputDataError(f"`{name}` has complex values; weightstats analyses real values.")
    if arr.dtype.kind not in "fiub":
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError):
            raise InputDataError(
                f"`{name}` must hold numbers; got an array of dtype {arr.dtype}."
            ) from None
    return arr.astype(np.float64, copy=False)


def as_sample(
    x: Any,
    *,
    name: str = "x",
    min_size: int = 2,
    nan_policy: str = "raise",
    allow_constant: bool = False,
    warn_below: int | None = None,
) -> np.ndarray:
    """Validate a sample and return it as a flat, finite float64 array.

    Parameters
    ----------
    x : array_like or torch.Tensor
        Values of any shape; they are flattened.
    name : str
        The argument's name, used in error messages.
    min_size : int
        Fewest finite values accepted; fewer raise :class:`InputDataError`.
    nan_policy : {'raise', 'omit'}
        ``'raise'`` rejects NaN and +-Inf, saying how many there are; ``'omit'`` drops them.
        Finite values beyond :data:`MAX_ABS` in magnitude, or a non-zero spread below
        :data:`MIN_SPREAD`, raise :class:`InputDataError` asking for a rescaling.
    allow_constant : bool
        If False, a sample whose values are all equal raises :class:`InputDataError`; if True it
        only warns with :class:`DegenerateDataWarning`.
    warn_below : int, optional
        Emit :class:`SmallSampleWarning` when fewer values than this remain.

    Returns
    -------
    numpy.ndarray
        One-dimensional, finite, ``float64``. May share memory with `x` when `x` already is one.
    """
    if nan_policy not in NAN_POLICIES:
        raise InputDataError(
            f"`nan_policy` must be one of {sorted(NAN_POLICIES)}; got {nan_policy!r}."
        )
    arr = to_numpy(x, name=name).reshape(-1)
    # min and max propagate NaN, so two reductions prove every value finite without a boolean
    # temporary (0.14 ms instead of 0.35 ms for isfinite + count + min + max at 10^6 values).
    lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        finite = np.isfinite(arr)
        n_bad = arr.size - int(np.count_nonzero(finite))
        if nan_policy == "raise":
            n_nan = int(np.count_nonzero(np.isnan(arr)))
            raise InputDataError(
                f"`{name}` has {n_bad} non-finite value(s) ({n_nan} NaN, {n_bad - n_nan} Inf) "
                f"among {arr.size}; clean them or pass nan_policy='omit'."
            )
        arr = arr[finite]
        lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
    if arr.size == 0:
        raise InputDataError(f"`{name}` is empty; at least {min_size} finite values are needed.")
    if arr.size < min_size:
        raise InputDataError(
            f"`{name}` has {arr.size} finite value(s); at least {min_size} are needed."
        )
    biggest = max(-lo, hi)
    if biggest > MAX_ABS:
        raise InputDataError(
            f"`{name}` has values as large as {biggest:.3g}; beyond {MAX_ABS:.0e} their squares "
            f"overflow float64. Divide `{name}` by a constant first (shapes are scale-free)."
        )
    if 0.0 < hi - lo < MIN_SPREAD:
        raise InputDataError(
            f"`{name}` spans only {hi - lo:.3g}; below {MIN_SPREAD:.0e} its squared deviations "
            f"underflow float64. Multiply `{name}` by a constant first (shapes are scale-free)."
        )
    if arr.size > 1 and lo == hi:
        message = f"`{name}` is constant (every value is {arr[0]:.6g}); its shape is undefined."
        if not allow_constant:
            raise InputDataError(message)
        warnings.warn(message, DegenerateDataWarning, stacklevel=2)
    if warn_below is not None and arr.size < warn_below:
        warnings.warn(
            f"`{name}` has only {arr.size} values; at least {warn_below} are recommended.",
            SmallSampleWarning,
            stacklevel=2,
        )
    return arr
