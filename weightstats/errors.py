"""Every exception and warning weightstats raises, in one place.

The tree::

    WeightstatsError(Exception)
    ├── InputDataError(WeightstatsError, ValueError)     empty, non-finite, constant, too small, wrong type
    ├── CheckpointError(WeightstatsError, ValueError)    missing, unreadable, truncated, lying header
    │   └── UnsafeCheckpointError(CheckpointError)       loading would need pickle code execution
    ├── FitError(WeightstatsError, RuntimeError)         optimiser failed, non-finite likelihood
    └── RunStoreError(WeightstatsError, OSError)         a run directory that cannot be read or written

    WeightstatsWarning(UserWarning)
    ├── DegenerateDataWarning     constant or nearly constant data; a statistic is undefined
    ├── SmallSampleWarning        fewer values than a test or estimator needs to be reliable
    └── ConvergenceWarning        an iterative fit (EM, Newton) stopped before converging

Each error also subclasses the builtin a caller would already catch (``ValueError`` for bad
input, ``RuntimeError`` for failed fits, ``OSError`` for storage), so ``except ValueError`` keeps
working. The command-line interface catches :class:`WeightstatsError` only and prints its message
as one line; anything else is a bug.
"""

from __future__ import annotations

__all__ = [
    "WeightstatsError",
    "InputDataError",
    "CheckpointError",
    "UnsafeCheckpointError",
    "FitError",
    "RunStoreError",
    "WeightstatsWarning",
    "DegenerateDataWarning",
    "SmallSampleWarning",
    "ConvergenceWarning",
]


class WeightstatsError(Exception):
    """Root of every error weightstats raises on purpose."""


class InputDataError(WeightstatsError, ValueError):
    """The data given to a function cannot be analysed.

    Examples
    --------
    >>> from weightstats import fit
    >>> fit([], "normal")
    Traceback (most recent call last):
    ...
    weightstats.errors.InputDataError: `x` is empty; at least 2 finite values are needed.
    """


class CheckpointError(WeightstatsError, ValueError):
    """A checkpoint file is missing, unreadable, truncated or not a set of tensors."""


class UnsafeCheckpointError(CheckpointError):
    """Loading the checkpoint would execute code from a pickle; refused unless opted in."""


class FitError(WeightstatsError, RuntimeError):
    """A maximum-likelihood fit failed (non-finite likelihood, optimiser failure)."""


class RunStoreError(WeightstatsError, OSError):
    """A run directory cannot be opened, read or appended to."""


class WeightstatsWarning(UserWarning):
    """Root of every warning weightstats emits."""


class DegenerateDataWarning(WeightstatsWarning):
    """The data are constant or nearly so; a statistic is undefined or meaningless."""


class SmallSampleWarning(WeightstatsWarning):
    """Fewer values than a test or estimator needs to be reliable."""


class ConvergenceWarning(WeightstatsWarning):
    """An iterative fit stopped at its iteration limit before converging."""
