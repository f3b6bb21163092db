"""The run store's bounds on disk use: what it keeps, and what it does at a bound.

A store created with ``max_snapshots`` or ``max_bytes`` checks every write against them on
the caller's (training) thread before anything is queued; ``on_limit`` says what happens then:

* ``"raise"``: :class:`~weightstats.errors.RunStoreError`, naming the bound and the ways out;
* ``"stop"``: one :class:`~weightstats.errors.WeightstatsWarning`, then no more data of that
  kind (snapshots, updates or latents) is written;
* ``"thin"``: every second snapshot kept so far is deleted and from then on only every second
  snapshot call is kept (the stride doubles), so the snapshots on disk stay evenly spaced
  from the first one. When that frees too little, it raises as ``"raise"``; data of other
  kinds (and a snapshot with at most one kept) stop as with ``"stop"``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable

from ..errors import RunStoreError, WeightstatsWarning

__all__ = ["DiskBounds"]


class DiskBounds:
    """Bytes of tensors on disk and snapshot files of one run, checked against its bounds.

    Parameters
    ----------
    path : str
        The run directory (named in errors and warnings).
    max_snapshots, max_bytes : int, optional
        The bounds; None for none.
    on_limit : {"raise", "stop", "thin"}
        What happens at a bound (see the module note).
    remove : callable
        ``remove(paths)``: deletes thinned snapshot files (the store queues it on its writer
        thread, after the writes already queued).

    Attributes
    ----------
    payload : int
        Bytes of tensor data on disk, or queued to be written.
    snapshots : list of (step, path, bytes)
        The snapshots kept, oldest first (a stacked shard appears once per step it holds).
    """

    def __init__(self, path: str, *, max_snapshots: int | None, max_bytes: int | None,
                 on_limit: str, remove: Callable[[list[str]], None]) -> None:
        self.path = path
        self.max_snapshots = max_snapshots
        self.max_bytes = max_bytes
        self.on_limit = on_limit
        self._remove = remove
        self.payload = 0
        self.snapshots: list[tuple[int, str, int]] = []
        self._stride = 1  # every `stride`-th snapshot call is kept (thinning doubles it)
        self._calls = 0  # snapshot calls so far, kept or not
        self._stopped: set[str] = set()

    @property
    def bounded(self) -> bool:
        """Whether any bound is set."""
        return self.max_snapshots is not None or self.max_bytes is not None

    def scan(self) -> None:
        """Count what an existing run holds (its ``snapshots``, ``trajectories`` and
        ``latents`` shards), when a store is reopened to append."""
        for sub in ("snapshots", "trajectories", "latents"):
            for entry in sorted(os.scandir(os.path.join(self.path, sub)), key=lambda e: e.name):
                if entry.name.startswith("."):
                    continue
                size = entry.stat().st_size
                self.payload += size
                if sub == "snapshots":  # <seq>-step<step> or <seq>-steps<first>-<last>
                    step = int(entry.name.split("-step")[1].lstrip("s").split("-")[0]
                               .split(".")[0])
                    self.snapshots.append((step, entry.path, size))

    def admit_snapshot(self, nbytes: int) -> bool:
        """Whether one snapshot of `nbytes` is written: not when thinning skips this call,
        nor at a bound with ``on_limit="stop"`` (``"raise"`` raises)."""
        call, self._calls = self._calls, self._calls + 1
        # thinned before, or by this very check (which doubles the stride)
        return not call % self._stride and self.admit("snapshot", nbytes, stacklevel=5) and (
            not call % self._stride)

    def admit_stacked(self, count: int, nbytes: int) -> bool:
        """Whether `count` snapshots written as one shard (`nbytes` in all) are written; the
        recorder stacks snapshots only in a store without bounds, which never thins."""
        self._calls += count
        return self.admit("snapshot", nbytes, stacklevel=5)

    def admit(self, kind: str, nbytes: int, *, stacklevel: int = 4) -> bool:
        """Whether `nbytes` of `kind` ("snapshot", "update", "latent") may be written;
        applies ``on_limit`` at a bound (the warning of ``"stop"`` points `stacklevel`
        frames up: the store's caller's caller)."""
        if kind in self._stopped:
            return False
        reason = self._over(kind, nbytes)
        if reason is None:
            return True
        policy = self.on_limit
        if policy == "thin" and kind == "snapshot" and len(self.snapshots) > 1:
            removed = self.snapshots[1::2]
            self.snapshots = self.snapshots[0::2]
            self._stride *= 2
            self.payload -= sum(size for _, _, size in removed)
            self._remove([p for _, p, _ in removed])
            reason = self._over(kind, nbytes)
            if reason is None:
                return True
            policy = "raise"
        if policy == "raise":
            raise RunStoreError(
                f"run {self.path!r} reached {reason} ({self.payload} bytes of tensors in "
                f"{len(self.snapshots)} snapshots); raise the bound, record less often "
                "(`every`), or create the store with on_limit='thin' or 'stop'."
            )
        warnings.warn(
            f"run {self.path!r} reached {reason}; no more {kind} data will be written.",
            WeightstatsWarning,
            stacklevel=stacklevel,
        )
        self._stopped.add(kind)
        return False

    def wrote(self, nbytes: int, snapshots: list[tuple[int, str, int]] = ()) -> None:
        """Count an admitted write: `nbytes` of tensors, and the snapshots it holds."""
        self.payload += nbytes
        self.snapshots.extend(snapshots)

    def _over(self, kind: str, nbytes: int) -> str | None:
        """The bound that `nbytes` more of `kind` would pass, or None."""
        if kind == "snapshot" and self.max_snapshots is not None:
            if len(self.snapshots) >= self.max_snapshots:
                return f"max_snapshots={self.max_snapshots}"
        if self.max_bytes is not None and self.payload + nbytes > self.max_bytes:
            return f"max_bytes={self.max_bytes}"
        return None
