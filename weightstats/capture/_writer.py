"""The writing half of :class:`~weightstats.capture.store.RunStore`: queued, atomic appends.

Every write is queued on one background thread (see :class:`~weightstats.capture._io.JobThread`)
in ``seq`` order: shard first (temporary file + rename), then, at each flush, one Parquet index
part with the rows of the shards written since the previous part. The store's bounds
(``max_snapshots``, ``max_bytes``, ``on_limit``: :mod:`~weightstats.capture._bounds`) are
applied on the training thread, before anything is queued.
"""

from __future__ import annotations

import atexit
import datetime as _dt
import json
import os
import time
import warnings
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from ..errors import InputDataError, RunStoreError, WeightstatsWarning
from . import _io
from ._bounds import DiskBounds
from ._io import TMP_MARKER, JobThread, moment_index_rows
from ._kernels import moments_kernel

__all__ = ["LATENT_GROUP_S", "StoreWriterMixin", "latent_key"]

_SEQ_PREFIX_LEN = 8

#: at most this many values in all: index statistics in numpy, holding the GIL for some 10 us a
#: tensor, rather than in the scripted kernel, whose interpreter took 0.36 ms for the four
#: latent tensors of the bench's VAE (256 x 8) and gives the GIL back and forth with training
SMALL_MOMENTS = 1 << 16

#: least seconds between two index parts written by trajectory flushes (see _flush_index)
INDEX_INTERVAL_S = 2.0

#: latents of an epoch that ends less than this many seconds after the last latent shard was
#: queued wait for the next epoch's, and are written with them as one shard (or at flush or
#: close). Each shard is one more file and one more writer job, whose Python work holds the
#: GIL while training waits for it: with the bench's VAE (28-step epochs of 15 ms), one shard
#: per epoch made training 8.7 % slower, against 1.5 % with no latent written at all (the
#: encoding kept; 7 interleaved runs, 2-core VM). Epochs longer than this (any real data set)
#: still get a shard each as they end. A SIGKILL loses the latents still waiting.
LATENT_GROUP_S = 0.5

#: ...or once the latents waiting reach this many bytes
LATENT_GROUP_BYTES = 64 << 20


def latent_key(epoch: int, name: str) -> str:
    """The key of latent `name` of `epoch` in a shard that holds several epochs."""
    return f"epoch{int(epoch):06d}/{name}"

#: run directory (real path) -> the writer open on it in this process
_OPEN_WRITERS: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


@atexit.register
def _close_open_writers() -> None:
    """At interpreter exit, finish the writes of stores nobody closed (a notebook, a script
    that forgot ``close()``): the queued shards land and the writer thread is joined before
    torch tears down, instead of dying in the middle of a write."""
    for store in list(_OPEN_WRITERS.values()):
        try:
            store.close()
        except Exception as exc:  # noqa: BLE001 - report, and let the others close
            warnings.warn(f"could not close {store!r} at exit: {exc}", WeightstatsWarning,
                          stacklevel=1)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _as_float(t: torch.Tensor) -> torch.Tensor:
    """`t` as float32 or float64 (integer and half types converted), for the moments kernel."""
    return t if t.dtype in (torch.float32, torch.float64) else t.to(torch.float32)


def _then(work: Callable[[], None], done: Callable[[], None] | None) -> Callable[[], None]:
    """A writer job: `work`, then `done` (buffers handed back), also when `work` fails."""

    def job() -> None:
        try:
            work()
        finally:
            if done is not None:
                done()

    return job


def seq_of(name: str) -> int:
    """The write sequence number a store file name starts with (-1 if none)."""
    head = name[:_SEQ_PREFIX_LEN]
    return int(head) if len(name) > _SEQ_PREFIX_LEN and head.isdigit() and name[8] == "-" else -1


class StoreWriterMixin:
    """Writer methods of RunStore (``path``, ``mode``, ``manifest`` are set by RunStore)."""

    path: str
    mode: str
    manifest: dict

    def _init_writer(self, *, background: bool, fsync: bool) -> None:
        self._fsync = fsync
        st = self.manifest["store"]
        self._bounds = DiskBounds(self.path, max_snapshots=st["max_snapshots"],
                                  max_bytes=st["max_bytes"], on_limit=st["on_limit"],
                                  remove=self._remove_later)
        self._seq = self._max_seq() + 1
        # rows of shards written since the last index part, as column batches (_io.columns)
        self._pending_rows: list[dict] = []
        self._last_index = time.monotonic()
        self._bounds.scan()
        # latents waiting to be written with the next epoch's (see LATENT_GROUP_S)
        self._pending_latents: list[tuple[int, int | None, dict]] = []
        self._pending_latent_bytes = 0
        self._last_latents = -float("inf")
        self._writer = JobThread(threaded=background, name="weightstats-run-store-writer",
                                 max_pending=8)
        self._moments = moments_kernel()

    # ------------------------------------------------------------------ writer internals
    def _lock(self) -> None:
        lock = os.path.join(self.path, "writer.lock")
        try:
            with open(lock, encoding="utf-8") as fh:
                pid = int(fh.read().strip() or 0)
        except (FileNotFoundError, ValueError):
            pid = 0
        key = os.path.realpath(self.path)
        other = _OPEN_WRITERS.get(key)
        busy = (pid and pid != os.getpid() and _pid_alive(pid)) or (
            other is not None and other is not self and not other._closed)
        if busy:
            self._closed = True
            if self._writer is not None:
                self._writer.close()
            raise RunStoreError(
                f"run {self.path!r} is being written by process {pid or os.getpid()}; open it "
                "with mode='r' to read, or close that writer first."
            )
        _OPEN_WRITERS[key] = self
        _io.atomic_write_bytes(lock, str(os.getpid()).encode())
        self.manifest.setdefault("sessions", []).append(
            {"pid": os.getpid(), "opened": _dt.datetime.now(_dt.timezone.utc).isoformat()}
        )

    def _remove_stale_tmp(self) -> None:
        for sub in ("", "snapshots", "trajectories", "latents", "index"):
            folder = os.path.join(self.path, sub)
            for entry in os.scandir(folder):
                if TMP_MARKER in entry.name and entry.name.startswith("."):
                    os.remove(entry.path)

    def _max_seq(self) -> int:
        best = -1
        for sub in ("snapshots", "trajectories", "latents", "index"):
            folder = os.path.join(self.path, sub)
            if os.path.isdir(folder):
                for entry in os.scandir(folder):
                    best = max(best, seq_of(entry.name))
        return best

    def _next_seq(self) -> int:
        seq, self._seq = self._seq, self._seq + 1
        return seq

    def _require_writer(self) -> JobThread:
        if self.mode == "r":
            raise RunStoreError(
                f"run {self.path!r} is open read-only; use RunStore.open(path, mode='a')."
            )
        if self._closed or self._writer is None:
            raise RunStoreError(f"run {self.path!r} is closed.")
        return self._writer

    def _submit(self, job) -> None:
        try:
            self._require_writer().submit(job)
        except WeightstatsWarning:
            raise
        except RunStoreError:
            raise
        except OSError as exc:
            raise RunStoreError(f"writing to run {self.path!r} failed: {exc}") from exc

    def _write_manifest(self) -> None:
        _io.atomic_write_json(os.path.join(self.path, "manifest.json"), self.manifest)

    def _remove_later(self, paths: list[str]) -> None:
        """Queue the deletion of `paths` (thinned snapshots) after the writes queued so far."""

        def remove() -> None:
            for p in paths:
                try:
                    os.remove(p)
                except FileNotFoundError:
                    pass

        self._submit(remove)

    def _finish_shard(self, path: str, tensors, metadata, batches: list[dict]) -> None:
        """Writer-thread part: write a shard, remember its rows (column batches) for the next
        index part."""
        _io.atomic_save_tensors(path, tensors, metadata, fsync=self._fsync)
        self._pending_rows.extend(batches)

    def _raw_moments(self, xs: list[torch.Tensor], numels: np.ndarray,
                     sums: list | None = None) -> np.ndarray:
        """``(mean, var, sum c**3, sum c**4)`` rows of CPU tensors (`numels` their sizes):
        from the shifted power sums the recorder's fused kernel took (`sums`, one per tensor)
        when it took them all, else computed here (float64, two-pass; see
        _kernels.moments_of)."""
        if sums is not None and len(sums) == len(xs) and all(s is not None for s in sums):
            return _io.moments_from_sums(np.stack(sums), numels)
        if numels.sum() <= SMALL_MOMENTS:
            return _io.moments_numpy(xs)
        return self._moments([_as_float(t) for t in xs]).numpy()

    def _index_moments(self, xs: list[torch.Tensor], sums: list | None = None) -> np.ndarray:
        """``(mean, var, skewness, kurtosis)`` rows (len(xs), 4) of CPU tensors, the index
        statistics of every shard kind (see :meth:`_raw_moments`)."""
        numels = np.array([t.numel() for t in xs], dtype=np.int64)
        return _io.finish_moments(self._raw_moments(xs, numels, sums), np.maximum(numels, 1))

    def _moment_rows(self, xs: list[torch.Tensor], sums: list | None = None) -> list[dict]:
        """:meth:`_index_moments` as one dict per tensor, with its ``numel``."""
        return [{"numel": t.numel(), "mean": float(f[0]), "var": float(f[1]),
                 "skewness": float(f[2]), "kurtosis": float(f[3])}
                for t, f in zip(xs, self._index_moments(xs, sums))]

    def _flush_index(self, *, force: bool = True) -> None:
        """Writer-thread part: write the pending rows as one Parquet part.

        Unless `force`, only when :data:`INDEX_INTERVAL_S` seconds have passed since the last
        part: a part is one more file per flush (about 2 ms of writer time each on a loaded
        machine), and readers rebuild the rows of shards that no part covers yet from the
        shards themselves. :meth:`flush` and :meth:`close` always write one.
        """
        if not self._pending_rows:
            return
        now = time.monotonic()
        if not force and now - self._last_index < INDEX_INTERVAL_S:
            return
        self._last_index = now
        batches, self._pending_rows = self._pending_rows, []
        seq = int(batches[-1]["seq"][-1])
        _io.write_index_part(
            os.path.join(self.path, "index", f"{seq:08d}.parquet"), batches, fsync=self._fsync
        )

    # ------------------------------------------------------------------ writer API
    def write_snapshot(self, step: int, tensors: Mapping[str, torch.Tensor], *,
                       ready: Any = None, done: Callable[[], None] | None = None,
                       sums: Mapping[str, np.ndarray] | None = None) -> bool:
        """Queue a full snapshot of `tensors` (CPU tensors the caller will not modify).

        `ready` is an optional object with ``synchronize()`` (a CUDA event) that the writer
        thread waits on before reading the tensors. `done`, when given, is called once the
        tensors are no longer needed (on the writer thread, or at once when nothing is
        written). `sums` may give, per tensor, the float64 shifted power sums
        ``(S1, S2, S3, S4, shift)`` of its values (``S_k = sum((x - shift)**k)``), already
        taken by the recorder: the index statistics then come from them. Returns False when
        the store's bounds made it skip this snapshot.
        """
        self._require_writer()
        nbytes = sum(t.numel() * t.element_size() for t in tensors.values())
        if not self._bounds.admit_snapshot(nbytes):  # thinned out, or at a bound
            if done is not None:
                done()
            return False
        seq = self._next_seq()
        rel = os.path.join("snapshots", f"{seq:08d}-step{int(step):010d}.safetensors")
        path = os.path.join(self.path, rel)
        self._bounds.wrote(nbytes, [(int(step), path, nbytes)])
        tensors = dict(tensors)

        def write() -> None:
            if ready is not None:
                ready.synchronize()
            given = None if sums is None else [sums.get(name) for name in tensors]
            values = list(tensors.values())
            numels = [t.numel() for t in values]
            fin = self._index_moments(values, given)
            # a column batch of arrays, as for stacked snapshots and updates: the index part
            # joins those without a Python object per value
            batch = moment_index_rows("snapshot", [int(step)], list(tensors), numels, fin, rel,
                                      seq)
            meta = {"kind": "snapshot", "step": str(int(step)),
                    "rows": json.dumps(_io.rows_of(batch))}
            self._finish_shard(path, tensors, meta, [batch])

        self._submit(_then(write, done))
        return True

    @property
    def max_snapshots(self) -> int | None:
        """The bound on the snapshots kept (None: none)."""
        return self._bounds.max_snapshots

    @property
    def max_bytes(self) -> int | None:
        """The bound on the bytes of tensor data written (None: none)."""
        return self._bounds.max_bytes

    @property
    def on_limit(self) -> str:
        """What happens at a bound: "raise", "stop" or "thin" (see :mod:`._bounds`)."""
        return self._bounds.on_limit

    @property
    def stacks_snapshots(self) -> bool:
        """Whether :meth:`write_snapshots` writes several snapshots as one shard: not when the
        store has bounds, whose thinning deletes single snapshot files."""
        return not self._bounds.bounded

    def write_snapshots(self, steps: list[int], snapshots: list[Mapping[str, torch.Tensor]],
                        *, ready: Any = None, done: Callable[[], None] | None = None,
                        sums: list[Mapping[str, np.ndarray] | None] | None = None) -> bool:
        """Queue several full snapshots (same tensor names, shapes and dtypes) as one shard.

        One file instead of one per snapshot: below about one snapshot per millisecond of
        training the number of files, not the bytes, set the writer's cost (each file is an
        open, a write and a rename, and each hands the GIL back and forth with the training
        thread). The shard holds, per tensor, the snapshots stacked along a new first
        dimension, and ``steps``. A store with bounds (``max_snapshots``, ``max_bytes``)
        writes one file per snapshot instead, so that thinning can delete single snapshots.
        `ready` and `done` as for :meth:`write_snapshot` (`done` is called once, after the
        last snapshot); `sums`, one mapping (or None) per snapshot, as for
        :meth:`write_snapshot`. Returns False when nothing was written.
        """
        self._require_writer()
        steps = [int(s) for s in steps]
        if not steps:
            if done is not None:
                done()
            return False
        if len(steps) == 1 or not self.stacks_snapshots:
            each_sums = sums if sums is not None else [None] * len(steps)
            written = [self.write_snapshot(s, t, ready=ready, sums=m)
                       for s, t, m in zip(steps, snapshots, each_sums)]
            if done is not None:  # after those writes, in queue order
                self._submit(done)
            return any(written)
        names = list(snapshots[0])
        if any(list(t) != names for t in snapshots):
            raise InputDataError("all snapshots of one write_snapshots call need the same tensors.")
        each = sum(t.numel() * t.element_size() for t in snapshots[0].values())
        if not self._bounds.admit_stacked(len(steps), each * len(steps)):
            if done is not None:
                done()
            return False
        seq = self._next_seq()
        rel = os.path.join("snapshots",
                           f"{seq:08d}-steps{steps[0]:010d}-{steps[-1]:010d}.safetensors")
        path = os.path.join(self.path, rel)
        self._bounds.wrote(each * len(steps), [(s, path, each) for s in steps])
        snapshots = [dict(t) for t in snapshots]

        def write() -> None:
            if ready is not None:
                ready.synchronize()
            tensors: dict[str, Any] = {"steps": torch.tensor(steps, dtype=torch.int64)}
            for name in names:  # stacked on disk, written piece by piece: no copy
                tensors[name] = [t[name] for t in snapshots]
            numels = [snapshots[0][n].numel() for n in names]
            given = None if sums is None else [
                None if m is None else m.get(n) for m in sums for n in names]
            fin = self._index_moments([t[n] for t in snapshots for n in names], given
                                      ).reshape(len(steps), len(names), 4)
            tensors["::moments"] = torch.from_numpy(np.ascontiguousarray(fin))
            meta = {"kind": "snapshots", "names": json.dumps(names)}
            batch = moment_index_rows("snapshot", steps, names, numels, fin, rel, seq)
            self._finish_shard(path, tensors, meta, [batch])

        self._submit(_then(write, done))
        return True

    def write_trajectories(
        self,
        steps: np.ndarray,
        data: Mapping[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, tuple, int]]
        | Callable[[], Mapping],
        *,
        ready: Any = None,
        nbytes: int | None = None,
        done: Callable[[], None] | None = None,
    ) -> bool:
        """Queue one trajectory shard covering `steps`.

        `data` maps a tensor name to ``(coords (C,), updates (T, C), raw_moments (T, 4) or
        None, shape, numel)``; raw moments are ``(mean, var, sum c**3, sum c**4)`` rows over
        `numel` values (the tensor's size, or the sample's with ``moments="sampled"``).
        `data` may also be a function returning that mapping, called on the writer thread
        (the recorder finishes its raw buffers there); then `nbytes` (updates and coords) is
        required. Then write the pending index rows as one Parquet part. `done`, when given,
        is called once the tensors are no longer needed (on the writer thread, or at once when
        nothing is written).
        """
        self._require_writer()
        steps = np.asarray(steps, dtype=np.int64)
        if callable(data):
            if nbytes is None:
                raise InputDataError("`nbytes` is required when `data` is a function.")
        else:
            nbytes = sum(u.numel() * u.element_size() + c.numel() * 8
                         for c, u, *_ in data.values())
        if not self._bounds.admit("update", nbytes):
            if done is not None:
                done()
            return False
        seq = self._next_seq()
        rel = os.path.join(
            "trajectories", f"{seq:08d}-steps{steps[0]:010d}-{steps[-1]:010d}.safetensors"
        )
        path = os.path.join(self.path, rel)
        self._bounds.wrote(nbytes)
        data = data if callable(data) else dict(data)

        def write() -> None:
            if ready is not None:
                ready.synchronize()
            tensors: dict[str, torch.Tensor] = {"steps": torch.from_numpy(steps)}
            shapes = {}
            rows = []
            items = data() if callable(data) else data
            for name, (coords, updates, raw, shape, numel) in items.items():
                tensors[f"{name}::coords"] = coords.to(torch.int64).contiguous()
                tensors[f"{name}::updates"] = updates.contiguous()
                shapes[name] = [list(shape), int(numel)]
                if raw is not None:
                    fin = _io.finish_moments(raw.to(torch.float64).numpy(), numel)
                    tensors[f"{name}::moments"] = torch.from_numpy(np.ascontiguousarray(fin))
                    rows.append(moment_index_rows("update", steps, [name], [numel], fin,
                                                  rel, seq))
            meta = {"kind": "update", "shapes": json.dumps(shapes)}
            self._finish_shard(path, tensors, meta, rows)
            self._flush_index(force=False)

        self._submit(_then(write, done))
        return True

    def write_latents(self, epoch: int, tensors: Mapping[str, torch.Tensor], *,
                      step: int | None = None) -> bool:
        """Queue the latents of one epoch (``mu``, ``logvar`` or ``kappa``, ``z``, ``labels``;
        CPU tensors the caller will not modify: they are read when the shard is written).

        Latents of epochs that end within :data:`LATENT_GROUP_S` of the last latent shard are
        kept and written together with the next ones (or at :meth:`flush` / :meth:`close`),
        as one shard: see :data:`LATENT_GROUP_S`.
        """
        self._require_writer()
        nbytes = sum(t.numel() * t.element_size() for t in tensors.values())
        if not self._bounds.admit("latent", nbytes):
            return False
        self._bounds.wrote(nbytes)
        self._pending_latents.append(
            (int(epoch), None if step is None else int(step),
             {k: v.contiguous() for k, v in tensors.items()}))
        self._pending_latent_bytes += nbytes
        if (time.monotonic() - self._last_latents >= LATENT_GROUP_S
                or self._pending_latent_bytes >= LATENT_GROUP_BYTES):
            self._write_pending_latents()
        return True

    def _write_pending_latents(self) -> None:
        """Queue the latents kept since the last latent shard as one shard: with one epoch,
        its tensors under their names; with several, under ``epoch<epoch>/<name>``."""
        if not self._pending_latents:
            return
        pending, self._pending_latents = self._pending_latents, []
        self._pending_latent_bytes = 0
        self._last_latents = time.monotonic()
        seq = self._next_seq()
        first, last = pending[0][0], pending[-1][0]
        span = f"{first:06d}" if len(pending) == 1 else f"{first:06d}-{last:06d}"
        rel = os.path.join("latents", f"{seq:08d}-epoch{span}.safetensors")
        path = os.path.join(self.path, rel)

        def job() -> None:
            tensors, rows, values = {}, [], []
            for epoch, step, named in pending:
                prefix = "" if len(pending) == 1 else latent_key(epoch, "")
                for name, t in named.items():
                    tensors[prefix + name] = t
                    values.append(t)
                    rows.append({"step": step, "epoch": epoch, "tensor": name, "kind": "latent",
                                 "shard": rel, "seq": seq})
            # the statistics of every epoch's tensors in one call
            for row, mom in zip(rows, self._moment_rows(values)):
                row.update(mom)
            meta = {"kind": "latent", "epoch": str(first), "rows": json.dumps(rows)}
            self._finish_shard(path, tensors, meta, [_io.columns(rows)])
            self._flush_index(force=False)

        self._submit(job)

    def set_recorder(self, key: str, settings: Mapping[str, Any]) -> None:
        """Record a recorder's settings (and model/optimizer summary) in the manifest."""
        self._require_writer()
        self.manifest.setdefault("recorders", {})[key] = dict(settings)
        snapshot = json.loads(json.dumps(self.manifest, default=str))
        self._submit(lambda: _io.atomic_write_json(
            os.path.join(self.path, "manifest.json"), snapshot, fsync=self._fsync))

    def flush(self) -> None:
        """Write every queued shard and the pending index rows; block until done."""
        writer = self._require_writer()
        try:
            self._write_pending_latents()
            writer.submit(self._flush_index)
            writer.wait()
        except RunStoreError:
            raise
        except OSError as exc:
            raise RunStoreError(f"writing to run {self.path!r} failed: {exc}") from exc

    def close(self) -> None:
        """Flush, write the final manifest (with disk usage) and release the writer lock."""
        if self.mode == "r" or self._closed:
            self._closed = True
            return
        try:
            self.flush()
        finally:
            assert self._writer is not None
            self._writer.close()
            self._closed = True
        self.manifest["closed"] = True
        self.manifest["disk_usage_bytes"] = self.disk_usage()
        self.manifest["disk_usage"] = self.disk_usage(by_kind=True)
        self._write_manifest()
        try:
            os.remove(os.path.join(self.path, "writer.lock"))
        except FileNotFoundError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

