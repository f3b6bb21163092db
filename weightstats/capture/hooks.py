"""Recorders that capture a training run without changing it: weights, updates and latents.

:class:`WeightRecorder` attaches to an optimizer's step post-hook; :func:`watch` is
its one-call, idempotent form for notebooks. :class:`LatentRecorder` (defined in
:mod:`weightstats.capture.latent`, re-exported here) records a VAE encoder's outputs.

What a recorder promises
------------------------
* Training is bitwise identical with and without it: it only reads parameters, under
  ``torch.no_grad()``, into buffers it owns, and never touches gradients, optimizer state or
  torch's global random generator (its coordinate sample comes from its own
  :class:`torch.Generator`).
* It owns its hook handles and removes every one on :meth:`close` / ``__exit__``; it holds
  weak references to the model and its parameters.
* Per-step work stays on the parameter's device and does not synchronise it. For CPU
  float32/float64 parameters (with numba) the training thread runs one compiled pass per
  step that reads each weight once and takes the exact differences, the sampled coordinates
  and the moment sums (in float64), and on snapshot steps also copies the weights into the
  snapshot buffer with their power sums. Otherwise (CUDA, half precision, no numba) it runs
  one batched copy per step into a block of rows, and once per block one reduction, on a
  thread of its own when a CPU core is free (``step_thread``), with bitwise the same results
  (see :mod:`weightstats.capture._block`). With ``moments="sampled"`` or False both read
  and keep only the sampled coordinates (all weights on snapshot steps). The sampled
  updates and raw moments go into
  buffers that are handed to the store once per `flush_every` steps (pinned, non-blocking
  copies on CUDA), where its writer thread finishes the moments in float64 and writes them;
  snapshots are written by the store's writer thread (the snapshots of one flush interval
  as one shard).
* The update of step ``t`` is ``w_t - w_{t-1}``: the weights after the step minus the weights
  after the previous step (or when the recorder attached). It includes anything that changed
  the weights in between (a weight constraint applied after ``step``, say), so the updates
  always add up to the difference of the snapshots.

Limits
------
* Steps taken by code that bypasses ``optimizer.step`` (for example a GradScaler that skips a
  step on overflow, or a fused/compiled step that does not run the Python hooks) are not seen.
* Under ``torch.distributed`` only rank 0 records; other ranks attach nothing. Parameters with
  no local elements (sharded away by ZeRO-3/FSDP) are skipped with one warning; parameters that
  are local shards are recorded as the shard.
* Hooks live on the optimizer, so ``torch.compile(model)`` before or after attaching does not
  affect them; ``torch.compile`` of the optimizer step itself is not supported.
"""

from __future__ import annotations

import atexit
import os
import warnings
import weakref
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import numpy as np
import torch

from ..errors import InputDataError, WeightstatsWarning
from ._common import Events, is_writer_rank, jsonable, select_parameters, to_host
from ._block import finish, use_step_thread
from ._group import Group, make_group, moment_mode
from ._io import JobThread
from .latent import LatentRecorder
from .store import STORE_DTYPES, RunStore

__all__ = ["LatentRecorder", "WeightRecorder", "unwatch", "watch"]

def _sample_coords(numel: int, k: int, generator: torch.Generator) -> torch.Tensor:
    """`k` distinct flat indices in ``range(numel)``, uniformly at random, sorted (CPU int64).

    Small tensors use ``randperm``; large ones draw with replacement until `k` distinct values
    are seen and keep a random `k` of them (a uniform subset of a uniform subset is uniform), so
    a 100M-element tensor does not need a 100M-element permutation.
    """
    if k >= numel:
        return torch.arange(numel, dtype=torch.int64)
    if numel <= 1 << 22:
        return torch.randperm(numel, generator=generator)[:k].sort().values
    seen = torch.empty(0, dtype=torch.int64)
    while seen.numel() < k:
        draw = torch.randint(numel, (2 * k,), generator=generator, dtype=torch.int64)
        seen = torch.unique(torch.cat([seen, draw]))
    pick = torch.randperm(seen.numel(), generator=generator)[:k]
    return seen[pick].sort().values


class WeightRecorder:
    """Record full snapshots, sampled per-step updates and update moments of a model's weights.

    Parameters
    ----------
    model : torch.nn.Module
        The model whose parameters are recorded (held by weak reference).
    optimizer : torch.optim.Optimizer
        The optimizer whose ``step`` defines a training step; the recorder attaches to its
        ``register_step_post_hook``.
    every : int
        Write a full snapshot at step 0 (the initialisation, taken when the recorder is made)
        and after every `every`-th optimizer step.
    include : str, list of str or callable, optional
        Glob pattern(s) on parameter names (``"*.weight"``), or ``f(name, param) -> bool``.
        Default: every parameter that requires grad.
    coords : int
        Number of coordinates per tensor whose update is recorded at every step (all of them
        when the tensor is smaller). Sampled once, without replacement, with `seed`.
    store : RunStore or path-like
        Where to write. A path creates a new run directory (never overwriting one); pass
        ``RunStore.open(path, mode="a")`` to continue a run. A store created here is closed
        by :meth:`close`.
    flush_every : int
        Number of steps of sampled updates buffered in memory before they are written as one
        trajectory shard.
    moments : {"exact", "sampled"}, bool
        The moments (mean, var, skewness, kurtosis) of each tensor's update at every step.
        ``"exact"`` (or True): over all its values. The recorder then holds one copy of the
        selected CPU float32/float64 parameters and reads all of them after each step (the
        fused kernel); on the block path a block of ``rows + 1`` copies on their device
        (``rows``, at most 25, is fewer for large models: see
        :func:`~weightstats.capture._block.block_rows`), twice that with moments and twice
        again with the step thread. ``"sampled"``: over the `coords` sampled coordinates
        whose updates are recorded (the same values as ``"exact"`` for tensors that are all
        sampled), the ``numel`` of their index rows being the sample size: the recorder keeps
        and reads only the sampled coordinates, except on snapshot steps, so its memory and
        per-step cost no longer grow with the model. False: no moments, and only the sampled
        coordinates are kept.
    seed : int
        Seed of the recorder's own :class:`torch.Generator` (coordinate sampling).
    start_step : int, optional
        Step number of the current weights: 0 for a new store, and by default the last
        recorded step when continuing a store opened with ``mode="a"``.
    step_thread : bool, optional
        On the block path (CPU parameters without numba's fused kernel: half precision, or
        numba missing), run the block reductions on a thread of their own, overlapping the
        next training steps (bitwise the same records; a second block of buffers). By
        default (None) on when torch's intra-op threads leave a CPU core free
        (``torch.get_num_threads()`` below the cores this process may use), off otherwise:
        on a busy core the thread only competes with training.

    Examples
    --------
    >>> with WeightRecorder(model, opt, every=100, store="runs/mlp"):   # doctest: +SKIP
    ...     train(model, opt)
    >>> RunStore.open("runs/mlp").trajectories("0.weight")              # doctest: +SKIP
    """

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        every: int = 100,
        include: str | Iterable[str] | Callable[[str, torch.Tensor], bool] | None = None,
        coords: int = 4096,
        store: RunStore | str | os.PathLike,
        flush_every: int = 100,
        moments: bool | str = True,
        seed: int = 0,
        start_step: int | None = None,
        step_thread: bool | None = None,
    ) -> None:
        if not isinstance(model, torch.nn.Module):
            raise InputDataError(f"`model` must be a torch.nn.Module; got {type(model).__name__}.")
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise InputDataError(
                f"`optimizer` must be a torch.optim.Optimizer; got {type(optimizer).__name__}."
            )
        if step_thread is not None and not isinstance(step_thread, bool):
            raise InputDataError(
                f"`step_thread` must be True, False or None; got {step_thread!r}.")
        if step_thread is None:
            step_thread = use_step_thread()
        for name, value in (("every", every), ("coords", coords), ("flush_every", flush_every)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise InputDataError(f"`{name}` must be a positive integer; got {value!r}.")
        self.every = int(every)
        self.coords = int(coords)
        self.flush_every = int(flush_every)
        try:
            #: "exact", "sampled" or "none"
            self.moments = moment_mode(moments)
        except ValueError as exc:
            raise InputDataError(str(exc)) from None
        self.seed = int(seed)
        self.step_thread = step_thread
        self._handles: list[Any] = []
        self._closed = False
        self._model = weakref.ref(model)
        self._optimizer = weakref.ref(optimizer)
        self.active = is_writer_rank()
        self.store: RunStore | None = None
        self._own_store = False
        self._groups: list[Group] = []
        # replaced below; no thread until then
        self._worker = JobThread(threaded=False, name="weightstats-step-worker")
        self._order: list[str] = []
        self.skipped: list[str] = []
        if not self.active:  # not rank 0: record nothing, attach nothing
            self._closed = True
            return

        chosen = select_parameters(model.named_parameters(), include)
        self.skipped = [n for n, p in chosen if p.numel() == 0]
        if self.skipped:
            warnings.warn(
                f"WeightRecorder skips {len(self.skipped)} parameter(s) with no local elements "
                f"(sharded away, e.g. ZeRO-3/FSDP): {', '.join(self.skipped)}.",
                WeightstatsWarning,
                stacklevel=2,
            )
        chosen = [(n, p) for n, p in chosen if p.numel() > 0]
        if not chosen:
            raise InputDataError("`include` selects only parameters with no local elements.")

        if isinstance(store, RunStore):
            self.store = store
            if store.mode == "r":
                raise InputDataError(
                    "`store` is open read-only; pass a path, RunStore.create(...) or "
                    "RunStore.open(path, mode='a')."
                )
        else:
            self.store = RunStore.create(store)
            self._own_store = True
        self._store_dtype = STORE_DTYPES[self.store.dtype]
        if start_step is None:
            start_step = 0
            if self.store.mode == "a":
                df = self.store.frame()
                steps = df.loc[df["kind"] != "latent", "step"].dropna()
                start_step = int(steps.max()) if len(steps) else 0
        self.step = int(start_step)

        gen = torch.Generator(device="cpu")
        gen.manual_seed(self.seed)
        by_kind: dict[tuple, list] = {}
        for name, p in chosen:
            idx = _sample_coords(p.numel(), self.coords, gen)
            by_kind.setdefault((p.device, p.dtype), []).append((name, p, idx))
        # per-step reductions run on this thread when the groups are on the CPU (_block.py)
        self._worker = JobThread(threaded=step_thread, name="weightstats-step-worker",
                                 no_grad=True)
        self._groups = [make_group(items, moments=self.moments, flush_every=self.flush_every,
                                   worker=self._worker)
                        for items in by_kind.values()]
        self._order = [name for name, _ in chosen]
        self._row = 0
        self._steps = np.empty(self.flush_every, dtype=np.int64)

        self.store.set_recorder("weights", self._settings(model, optimizer, include))
        # snapshots taken between two flushes are written together, as one shard (one file
        # per snapshot costs more than the bytes when snapshots are frequent), where the store
        # stacks snapshots at all
        self._group_snapshots = self.every < self.flush_every and self.store.stacks_snapshots
        self._pending: list[_PendingSnapshot] = []
        self._pending_bytes = 0
        self._snapshot(now=True)  # the initialisation (or the resumed weights)
        self._handles.append(optimizer.register_step_post_hook(self._post_step))
        _OPEN_RECORDERS.add(self)

    # -------------------------------------------------------------- manifest
    def _settings(self, model, optimizer, include) -> dict:
        return {
            "class": type(self).__name__,
            "every": self.every,
            "coords": self.coords,
            "flush_every": self.flush_every,
            "moments": self.moments,
            "seed": self.seed,
            "step_thread": self.step_thread,
            # per-step work: numba's one-pass kernel ("fused") or the block reduction
            "kernel": "+".join(sorted({"fused" if g.fused else "block" for g in self._groups})),
            "start_step": self.step,
            "include": include if isinstance(include, (str, list, type(None))) else repr(include),
            "skipped": self.skipped,
            "model": {
                "class": type(model).__qualname__,
                "n_parameters": int(sum(p.numel() for p in model.parameters())),
            },
            "optimizer": {
                "class": type(optimizer).__qualname__,
                "defaults": jsonable(optimizer.defaults),
            },
            "tensors": sorted(
                [{"name": n, "shape": list(shape), "numel": numel,
                  "dtype": str(g.refs[0]().dtype).replace("torch.", ""),
                  "device": str(g.device), "n_coords": int(c.numel())}
                 for g in self._groups
                 for n, shape, numel, c in zip(g.names, g.shapes, g.numels, g.coords)],
                key=lambda t: self._order.index(t["name"]),
            ),
        }

    # -------------------------------------------------------------- hooks
    def _post_step(self, optimizer, args, kwargs) -> None:
        row = self._row
        # a snapshot step: the fused kernel copies and sums the weights in its pass
        snap = self._store_dtype if (self.step + 1) % self.every == 0 else None
        with torch.no_grad():
            for g in self._groups:
                g.post(row, snap)
        self.step += 1
        self._steps[row] = self.step
        self._row = row + 1
        flushed = self._row == self.flush_every
        if flushed:
            self._flush_trajectories()
        if self.step % self.every == 0:
            self._snapshot()
        if flushed:
            self._write_snapshots()

    def _snapshot(self, *, now: bool = False) -> None:
        """Take a snapshot of the current weights; write it at once (`now`, or when
        snapshots are rarer than flushes) or keep it for the next flush's shard."""
        tensors, events, buffers, sums = {}, [], [], {}
        with torch.no_grad():
            for g in self._groups:
                taken = g.snapshot_flat(self._store_dtype)
                if taken is None:
                    continue
                flat, views, group_sums = taken
                if flat.is_cuda:
                    flat, ev = to_host(flat)
                    events.append(ev)
                    views = g.views_of(flat)
                buffers.append((g, flat, views))
                tensors.update(zip(g.names, views))
                if group_sums is not None:
                    sums.update(zip(g.names, group_sums.T))
        if not tensors:
            return
        tensors = {n: tensors[n] for n in self._order if n in tensors}
        if now or not self._group_snapshots:
            self.store.write_snapshot(self.step, tensors, ready=Events(events),
                                      done=_giver(buffers), sums=sums)
            return
        self._pending.append(_PendingSnapshot(self.step, tensors, events, buffers, sums))
        self._pending_bytes += sum(t.numel() * t.element_size() for t in tensors.values())
        if self._pending_bytes >= SNAPSHOT_GROUP_BYTES:
            self._write_snapshots()

    def _write_snapshots(self) -> None:
        """Hand the snapshots kept since the last flush to the store as one shard."""
        if not self._pending:
            return
        pending, self._pending, self._pending_bytes = self._pending, [], 0
        self.store.write_snapshots([p.step for p in pending], [p.tensors for p in pending],
                                   ready=Events([ev for p in pending for ev in p.events]),
                                   done=_giver([b for p in pending for b in p.buffers]),
                                   sums=[p.sums for p in pending])

    def _flush_trajectories(self) -> None:
        n = self._row
        if n == 0:
            return
        for g in self._groups:
            g.drain()
        # reductions still running on the step thread: the store's writer thread waits for
        # them before it reads the buffers (waiting here stalled training for a whole block)
        running = [ev for g in self._groups for ev in g.running()]
        parts, events, nbytes = [], [], 0
        with torch.no_grad():
            for g in self._groups:
                upd, mom = g.take(n)  # buffers handed over, not copied
                nbytes += (n * upd.element_size() + 8) * sum(g.coord_counts)
                if upd.is_cuda:  # finish on the device, then one non-blocking copy each
                    upd, mom = finish(upd, mom, g.moment_counts)
                    upd, ev = to_host(upd)
                    events.append(ev)
                    if mom is not None:
                        mom, ev = to_host(mom)
                        events.append(ev)
                    parts.append((g, upd, mom, True))
                else:  # signs and float64 moments on the store's writer thread
                    parts.append((g, upd, mom, False))
        steps = self._steps[:n].copy()
        self._row = 0
        order = list(self._order)
        releases = []

        def build() -> dict:
            data = {}
            for g, upd, mom, done in parts:
                if done:
                    updates = [c.contiguous() for c in torch.split(upd, g.coord_counts, dim=1)]
                else:
                    updates, mom, release = g.finished(upd, mom, n)
                    if release is not None:
                        releases.append(release)
                for k, name in enumerate(g.names):
                    data[name] = (g.coords[k], updates[k], None if mom is None else mom[:, :, k],
                                  g.shapes[k], g.moment_counts[k])
            return {name: data[name] for name in order}

        def written() -> None:  # the buffers the shard was written from go back to the groups
            for release in releases:
                release()

        self.store.write_trajectories(steps, build, ready=Events(events + running),
                                      nbytes=nbytes, done=written)

    # -------------------------------------------------------------- lifetime
    @property
    def handles(self) -> tuple:
        """The hook handles this recorder owns (empty once closed)."""
        return tuple(self._handles)

    def flush(self) -> None:
        """Write buffered updates and snapshots now and wait until everything is on disk."""
        if self._closed:
            return
        self._flush_trajectories()
        self._write_snapshots()
        self.store.flush()

    def close(self) -> None:
        """Remove every hook, write what is buffered, and close a store this recorder created."""
        if self._closed:
            return
        self._closed = True
        for h in self._handles:
            h.remove()
        self._handles.clear()
        try:
            try:
                self._flush_trajectories()
                self._write_snapshots()
            finally:
                self._worker.close()
            if self._own_store:
                self.store.close()
            else:
                self.store.flush()
        finally:
            for key in [k for k, e in _WATCHED.items() if e[3] is self]:
                del _WATCHED[key]

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> WeightRecorder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"step={self.step}"
        where = self.store.path if self.store is not None else None
        return (
            f"WeightRecorder({len(self._order)} tensors, every={self.every}, "
            f"coords={self.coords}, store={where!r}, {state})"
        )


#: recorders not closed yet; closed at interpreter exit (before their stores, atexit is LIFO)
#: so that updates still buffered in memory reach the disk
_OPEN_RECORDERS: weakref.WeakSet = weakref.WeakSet()

#: bytes of snapshots kept in memory, at most, before they are written as one shard
SNAPSHOT_GROUP_BYTES = 64 << 20


class _PendingSnapshot(NamedTuple):
    """A snapshot kept for the next flush's shard."""

    step: int
    tensors: dict[str, torch.Tensor]
    events: list  # CUDA events of its copies to the host
    buffers: list  # (group, flat, views), returned to the group's pool once written
    sums: dict[str, np.ndarray]  # shifted power sums the fused kernel took, by tensor


def _giver(buffers: list) -> Callable[[], None]:
    """A callback that returns snapshot buffers to their groups' pools once written."""
    def give_back() -> None:
        for group, flat, views in buffers:
            group.give_back_snapshot(flat, views)
    return give_back


@atexit.register
def _close_open_recorders() -> None:
    for rec in list(_OPEN_RECORDERS):
        try:
            rec.close()
        except Exception as exc:  # noqa: BLE001 - report, and let the others close
            warnings.warn(f"could not close {rec!r} at exit: {exc}", WeightstatsWarning,
                          stacklevel=1)


# optimizer id -> (weakref to optimizer, weakref to model, options, recorder)
_WATCHED: dict[int, tuple[Any, Any, dict, WeightRecorder]] = {}


def watch(model: torch.nn.Module, optimizer: torch.optim.Optimizer, *,
          store: RunStore | str | os.PathLike, **options: Any) -> WeightRecorder:
    """Attach a :class:`WeightRecorder` in one call; safe to run twice in a notebook cell.

    If `optimizer` is already watched for the same `model`, `store` and options, the existing
    recorder is returned and no hook is added. If anything differs, the old recorder is closed
    first (its hooks removed), then a new one is attached. Detach with :func:`unwatch`.

    Parameters
    ----------
    model, optimizer, store, **options
        As for :class:`WeightRecorder`.
    """
    key = id(optimizer)
    entry = _WATCHED.get(key)
    store_key = store.path if isinstance(store, RunStore) else os.fspath(store)
    options_key = dict(options, store=os.path.abspath(store_key))
    if entry is not None:
        opt_ref, model_ref, old_options, rec = entry
        if (opt_ref() is optimizer and model_ref() is model and old_options == options_key
                and not rec.closed):
            return rec
        rec.close()
        _WATCHED.pop(key, None)
    rec = WeightRecorder(model, optimizer, store=store, **options)
    _WATCHED[key] = (weakref.ref(optimizer), weakref.ref(model), options_key, rec)
    return rec


def unwatch(target: torch.optim.Optimizer | WeightRecorder | None = None) -> int:
    """Detach recorders attached by :func:`watch`: the one on `target` (an optimizer or a
    recorder), or all when `target` is None. Returns how many were closed."""
    if isinstance(target, WeightRecorder):
        recs = [e[3] for e in _WATCHED.values() if e[3] is target] or [target]
    elif target is None:
        recs = [e[3] for e in list(_WATCHED.values())]
    else:
        entry = _WATCHED.get(id(target))
        recs = [entry[3]] if entry is not None else []
    n = 0
    for rec in recs:
        if not rec.closed:
            rec.close()
            n += 1
    for k in [k for k, e in _WATCHED.items() if e[3].closed]:
        _WATCHED.pop(k, None)
    return n
