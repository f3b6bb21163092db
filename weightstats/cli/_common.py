"""Helpers shared by the subcommands: one-line errors and exit codes."""

from __future__ import annotations

import functools
import sys
from typing import Any, Callable, TypeVar

import click

from ..errors import WeightstatsError

__all__ = ["EXIT_OK", "EXIT_PARTIAL", "EXIT_BAD_INPUT", "one_line_errors", "fail"]

EXIT_OK = 0
EXIT_PARTIAL = 1
EXIT_BAD_INPUT = 2

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = EXIT_BAD_INPUT) -> None:
    """Print ``weightstats: error: <message>`` as one line on stderr and exit with `code`."""
    first_line = " ".join(str(message).split())
    click.echo(f"weightstats: error: {first_line}", err=True)
    sys.exit(code)


def one_line_errors(func: F) -> F:
    """Turn a :class:`WeightstatsError` (and a missing file) into one stderr line and exit 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except WeightstatsError as exc:
            fail(str(exc))
        except KeyboardInterrupt:
            fail("interrupted", code=130)

    return wrapper  # type: ignore[return-value]
