"""Helpers shared by the recorders: rank detection, host copies, parameter selection."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable
from typing import Any

import torch

from ..errors import InputDataError

__all__ = [
    "Events","is_writer_rank", "jsonable", "select_parameters", "to_host"]


def is_writer_rank() -> bool:
    """True unless ``torch.distributed`` is initialised and this process is not rank 0."""
    dist = getattr(torch, "distributed", None)
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return True
    return dist.get_rank() == 0


def to_host(x: torch.Tensor, dtype: torch.dtype | None = None) -> tuple[torch.Tensor, Any]:
    """A CPU copy of `x` that the caller owns, and an event to wait on before reading it.

    On CUDA the copy goes into pinned host memory with ``non_blocking=True`` and a CUDA event is
    recorded, so the training stream is not synchronised; the store's writer thread waits on the
    event. On the CPU it is a plain copy and the event is None.
    """
    dtype = dtype or x.dtype
    with torch.no_grad():
        if x.is_cuda:
            buf = torch.empty(x.shape, dtype=dtype, device="cpu", pin_memory=True)
            buf.copy_(x.detach(), non_blocking=True)
            event = torch.cuda.Event()
            event.record()
            return buf, event
        return x.detach().to(device="cpu", dtype=dtype, copy=True), None


class Events:
    """What one write waits for, on the writer thread: CUDA events (``synchronize()``) and
    events of reductions still running on the step thread (``threading.Event.wait()``)."""

    __slots__ = ("events",)

    def __init__(self, events: list) -> None:
        self.events = list(events)

    def synchronize(self) -> None:
        for ev in self.events:
            if hasattr(ev, "synchronize"):
                ev.synchronize()
            else:
                ev.wait()


def select_parameters(
    named: Iterable[tuple[str, torch.nn.Parameter]],
    include: str | Iterable[str] | Callable[[str, torch.Tensor], bool] | None,
) -> list[tuple[str, torch.nn.Parameter]]:
    """Parameters whose name matches `include` (glob or list of globs, or a predicate).

    ``include=None`` selects every parameter that requires grad.
    """
    items = list(named)
    if include is None:
        chosen = [(n, p) for n, p in items if p.requires_grad]
    elif callable(include):
        chosen = [(n, p) for n, p in items if include(n, p)]
    else:
        patterns = [include] if isinstance(include, str) else list(include)
        if not patterns or not all(isinstance(p, str) for p in patterns):
            raise InputDataError(
                "`include` must be a glob string, a list of glob strings, or a callable "
                f"(name, parameter) -> bool; got {include!r}."
            )
        chosen = [(n, p) for n, p in items if any(fnmatch.fnmatchcase(n, pat) for pat in patterns)]
    if not chosen:
        names = [n for n, _ in items][:8]
        raise InputDataError(
            f"`include`={include!r} selects no parameter; parameter names start with {names}."
        )
    return chosen


def jsonable(obj: Any) -> Any:
    """A JSON-safe rendering of optimizer defaults and similar small settings."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (bool, int, float, str)) or obj is None:
        return obj
    if isinstance(obj, torch.Tensor) and obj.numel() == 1:
        return obj.item()
    return repr(obj)
