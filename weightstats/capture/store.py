"""RunStore: an append-only, crash-safe directory that holds one recorded training run.

Layout of a run directory::

    run/
    ├── manifest.json            model, optimizer, seed, versions, recorder and store settings
    ├── writer.lock              PID of the process appending (absent when closed cleanly)
    ├── snapshots/               <seq>-step<step>.safetensors      one full snapshot, or
    │                            <seq>-steps<first>-<last>.safetensors  several, stacked
    ├── trajectories/            <seq>-steps<first>-<last>.safetensors  one file per flush
    ├── latents/                 <seq>-epoch<epoch>.safetensors    one recorded epoch, or
    │                            <seq>-epoch<first>-<last>.safetensors  several (short epochs)
    └── index/                   <seq>.parquet                      index rows, one part per flush

Every file is written to a temporary name and renamed into place, so a reader never sees a
partial file and a writer killed with SIGKILL leaves only complete ones. Every shard also carries
its own index rows (in the safetensors metadata, or as the moments tensors of a trajectory
shard), so rows that had not reached a Parquet part before a crash are rebuilt on read: the
index is never read-modified-written. ``seq`` grows with every write; when the same
(step, tensor, kind) was written twice (a resumed run), the later write wins.

No pickle is used anywhere: tensors are safetensors, the index Parquet, the manifest JSON.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import torch
from safetensors import safe_open

from ..errors import InputDataError, RunStoreError
from . import _io
from ._io import INDEX_COLUMNS, columns, moment_index_rows
from ._writer import StoreWriterMixin, latent_key, seq_of

__all__ = ["ON_LIMIT", "STORE_DTYPES", "RunStore", "Trajectories"]

FORMAT = "weightstats-run"
FORMAT_VERSION = 1
STORE_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float64": torch.float64}
ON_LIMIT = frozenset({"raise", "thin", "stop"})
_KIND_DIRS = {"snapshot": "snapshots", "update": "trajectories", "latent": "latents"}


@dataclass(frozen=True, repr=False)
class Trajectories:
    """Per-step updates ``Δw_t = w_t − w_{t−1}`` of a fixed, seeded sample of coordinates.

    Attributes
    ----------
    tensor : str
        Parameter name.
    steps : numpy.ndarray
        int64, shape (T,): optimizer step ``t`` of each row (the update made by the t-th step).
    coords : numpy.ndarray
        int64, shape (C,): flat (row-major) indices of the sampled coordinates, sorted.
    updates : numpy.ndarray
        float, shape (T, C): ``updates[i, j]`` is the change of coordinate ``coords[j]`` made by
        step ``steps[i]``.
    shape : tuple of int
        Shape of the parameter tensor.
    """

    tensor: str
    steps: np.ndarray
    coords: np.ndarray
    updates: np.ndarray
    shape: tuple[int, ...] = field(default=())

    def __repr__(self) -> str:
        span = f"{self.steps[0]}..{self.steps[-1]}" if self.steps.size else "none"
        return (
            f"Trajectories(tensor={self.tensor!r}, shape={self.shape}, steps={span} "
            f"(T={self.steps.size}), coords=C={self.coords.size}, updates={self.updates.dtype}"
            f"{tuple(self.updates.shape)})"
        )

    def __len__(self) -> int:
        return int(self.steps.size)


def _versions() -> dict[str, str]:
    import safetensors

    try:
        from importlib.metadata import version

        ws = version("weightstats")
    except Exception:  # pragma: no cover - not installed
        ws = "unknown"
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "safetensors": safetensors.__version__,
        "weightstats": ws,
    }


class RunStore(StoreWriterMixin):
    """A recorded training run on disk: read it, or append to it.

    Use :meth:`create` to start a run, :meth:`open` to read one (``mode="r"``, safe while
    another process is still writing) or to continue one after a crash (``mode="a"``).

    Attributes
    ----------
    path : str
        The run directory.
    mode : {'r', 'w', 'a'}
        Read-only, newly created, or appended to.
    manifest : dict
        The parsed ``manifest.json`` (as of opening, plus this writer's updates).

    Examples
    --------
    >>> store = RunStore.open("runs/mlp")                       # doctest: +SKIP
    >>> store.frame().query("kind == 'snapshot'").head()        # doctest: +SKIP
    >>> store.trajectories("0.weight").updates.shape            # doctest: +SKIP
    (500, 4096)
    """

    # ------------------------------------------------------------------ construction
    def __init__(self, path: str, mode: str, manifest: dict, *, _writer_opts: dict | None = None):
        self.path = os.fspath(path)
        self.mode = mode
        self.manifest = manifest
        self._writer = None
        self._closed = False
        self._part_cache: dict[str, pd.DataFrame] = {}
        self._shard_rows_cache: dict[str, pd.DataFrame] = {}
        self._frame_cache: tuple[tuple, pd.DataFrame] | None = None
        self.dtype = manifest.get("store", {}).get("dtype", "float32")
        if mode != "r":
            opts = _writer_opts or {}
            self._init_writer(background=bool(opts.get("background", True)),
                              fsync=bool(opts.get("fsync", False)))

    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        *,
        dtype: str = "float32",
        max_snapshots: int | None = None,
        max_bytes: int | None = None,
        on_limit: str = "raise",
        background: bool = True,
        fsync: bool = False,
        metadata: Mapping[str, Any] | None = None,
    ) -> RunStore:
        """Create a new run directory and open it for appending.

        Parameters
        ----------
        path : path-like
            A directory that does not exist yet, or an empty one. An existing run is never
            overwritten: continue it with ``RunStore.open(path, mode="a")``.
        dtype : {'float32', 'bfloat16', 'float64'}
            Storage dtype of full snapshots (trajectories stay float32 or the parameter's
            float64).
        max_snapshots, max_bytes : int, optional
            Bounds on the number of kept snapshots and on the bytes of tensor data written.
        on_limit : {'raise', 'thin', 'stop'}
            What happens when a bound is reached: raise :class:`RunStoreError` from the training
            step; ``'thin'`` delete every second snapshot (keeping step 0) and halve the rate
            from then on; ``'stop'`` stop writing that kind of data, with one warning.
        background : bool
            Serialise and write files on a background thread (default) instead of inline.
        fsync : bool
            ``fsync`` each file before renaming it (needed to survive a power loss, not a
            killed process).
        metadata : mapping, optional
            JSON-serialisable extra information stored under ``manifest["user"]``.
        """
        path = os.fspath(path)
        if dtype not in STORE_DTYPES:
            raise InputDataError(f"`dtype` must be one of {sorted(STORE_DTYPES)}; got {dtype!r}.")
        if on_limit not in ON_LIMIT:
            raise InputDataError(f"`on_limit` must be one of {sorted(ON_LIMIT)}; got {on_limit!r}.")
        for name, value in (("max_snapshots", max_snapshots), ("max_bytes", max_bytes)):
            if value is not None and (not isinstance(value, (int, np.integer)) or value < 1):
                raise InputDataError(f"`{name}` must be a positive integer or None; got {value!r}.")
        if os.path.exists(path):
            if not os.path.isdir(path):
                raise RunStoreError(f"`path` {path!r} exists and is not a directory.")
            if os.listdir(path):
                hint = (
                    "continue it with RunStore.open(path, mode='a')"
                    if os.path.exists(os.path.join(path, "manifest.json"))
                    else "choose a new directory"
                )
                raise RunStoreError(f"`path` {path!r} is not empty; {hint}.")
        try:
            os.makedirs(path, exist_ok=True)
            for sub in ("snapshots", "trajectories", "latents", "index"):
                os.makedirs(os.path.join(path, sub), exist_ok=True)
        except OSError as exc:
            raise RunStoreError(f"cannot create run directory {path!r}: {exc}") from None
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(),
            "versions": _versions(),
            "store": {
                "dtype": dtype,
                "max_snapshots": None if max_snapshots is None else int(max_snapshots),
                "max_bytes": None if max_bytes is None else int(max_bytes),
                "on_limit": on_limit,
            },
            "recorders": {},
            "user": dict(metadata or {}),
            "sessions": [],
            "closed": False,
        }
        _io.atomic_write_json(os.path.join(path, "manifest.json"), manifest, fsync=fsync)
        store = cls(path, "w", manifest, _writer_opts={"background": background, "fsync": fsync})
        store._lock()
        return store

    @classmethod
    def open(
        cls, path: str | os.PathLike, *, mode: str = "r", background: bool = True,
        fsync: bool = False,
    ) -> RunStore:
        """Open an existing run: ``mode='r'`` to read (also while it is being written),
        ``mode='a'`` to continue writing after a crash or a restart."""
        path = os.fspath(path)
        if mode not in ("r", "a"):
            raise InputDataError(f"`mode` must be 'r' or 'a'; got {mode!r}.")
        mpath = os.path.join(path, "manifest.json")
        if not os.path.isdir(path):
            raise RunStoreError(f"run directory {path!r} does not exist.")
        try:
            with open(mpath, encoding="utf-8") as fh:
                manifest = json.load(fh)
        except FileNotFoundError:
            raise RunStoreError(
                f"{path!r} is not a weightstats run: it has no manifest.json."
            ) from None
        except (OSError, ValueError) as exc:
            raise RunStoreError(f"cannot read {mpath!r}: {exc}") from None
        if manifest.get("format") != FORMAT:
            raise RunStoreError(f"{mpath!r} is not a weightstats run manifest.")
        if manifest.get("format_version", 0) > FORMAT_VERSION:
            raise RunStoreError(
                f"{path!r} was written by a newer weightstats (format "
                f"{manifest.get('format_version')}); upgrade weightstats to read it."
            )
        store = cls(path, mode, manifest, _writer_opts={"background": background, "fsync": fsync})
        if mode == "a":
            store._lock()
            store._remove_stale_tmp()
            store.manifest["closed"] = False
            store._write_manifest()
        return store

    # ------------------------------------------------------------------ reading
    def __repr__(self) -> str:
        return f"RunStore({self.path!r}, mode={self.mode!r})"

    def disk_usage(self, *, by_kind: bool = False) -> int | dict[str, int]:
        """Bytes on disk (temporary files included); ``by_kind=True`` gives a dict per folder."""
        usage: dict[str, int] = {}
        for sub in ("", "snapshots", "trajectories", "latents", "index"):
            folder = os.path.join(self.path, sub)
            total = 0
            for entry in os.scandir(folder):
                if entry.is_file():
                    try:
                        total += entry.stat().st_size
                    except FileNotFoundError:  # removed by thinning meanwhile
                        pass
            usage[sub or "manifest"] = total
        return usage if by_kind else sum(usage.values())

    def summary(self) -> dict[str, Any]:
        """What the run holds, in one small dict.

        Keys: ``path``, ``tensors``, ``snapshots``, ``snapshot_steps`` (first, last),
        ``update_steps`` (count), ``latent_epochs`` (count), ``disk_usage_bytes``, ``closed``.
        """
        df = self.frame()
        snaps = sorted(df.loc[df["kind"] == "snapshot", "step"].dropna().unique())
        upd = df.loc[df["kind"] == "update", "step"].dropna().unique()
        lat = df.loc[df["kind"] == "latent", "epoch"].dropna().unique()
        return {
            "path": self.path,
            "tensors": len(df.loc[df["kind"] != "latent", "tensor"].unique()),
            "snapshots": len(snaps),
            "snapshot_steps": (int(snaps[0]), int(snaps[-1])) if snaps else None,
            "update_steps": int(len(upd)),
            "latent_epochs": int(len(lat)),
            "disk_usage_bytes": self.disk_usage(),
            "closed": bool(self.manifest.get("closed", False)),
        }

    def _list(self, sub: str) -> list[str]:
        folder = os.path.join(self.path, sub)
        names = [e.name for e in os.scandir(folder) if not e.name.startswith(".")]
        return sorted(names, key=seq_of)

    def frame(self) -> pd.DataFrame:
        """The tidy index: one row per (step or epoch, tensor, kind).

        Returns
        -------
        pandas.DataFrame
            Columns ``step`` (Int64; NA for latents recorded without a step), ``epoch`` (Int64;
            NA except for latents), ``tensor``, ``kind`` (``'snapshot'``: the weights at
            ``step``; ``'update'``: the update made by step ``step``, over the whole tensor;
            ``'latent'``), ``numel``, ``mean``, ``var`` (1/n), ``skewness``, ``kurtosis``
            (excess, Fisher; both as ``scipy.stats.skew``/``kurtosis`` with ``bias=True``),
            ``shard`` (file relative to the run) and ``seq`` (write order).
        """
        # Files never change once renamed into place, so parsed parts and shard rows are cached
        # by name; a frame is rebuilt only when the listing changed.
        index_names = self._list("index")
        shards = [os.path.join(sub, n) for sub in ("snapshots", "trajectories", "latents")
                  for n in self._list(sub)]
        signature = (tuple(index_names), tuple(shards))
        if self._frame_cache is not None and self._frame_cache[0] == signature:
            return self._frame_cache[1].copy()
        parts = []
        for name in index_names:
            if name not in self._part_cache:
                try:
                    self._part_cache[name] = pq.read_table(
                        os.path.join(self.path, "index", name)).to_pandas()
                except FileNotFoundError:  # pragma: no cover - removed meanwhile
                    continue
                except Exception as exc:
                    raise RunStoreError(
                        f"index part {name!r} of {self.path!r} is unreadable: {exc}") from None
            parts.append(self._part_cache[name])
        covered = set()
        for p in parts:
            covered.update(p["shard"].unique())
        present = set(shards)
        for rel in shards:
            if rel not in covered:
                if rel not in self._shard_rows_cache:
                    self._shard_rows_cache[rel] = self._rows_from_shard(rel)
                parts.append(self._shard_rows_cache[rel])
        if not parts:
            df = pd.DataFrame({c: [] for c in INDEX_COLUMNS})
        else:
            df = pd.concat([p.reindex(columns=list(INDEX_COLUMNS)) for p in parts],
                           ignore_index=True)
        df = df[df["shard"].isin(present)]
        df = df.sort_values("seq", kind="stable")
        df = df.drop_duplicates(subset=["step", "epoch", "tensor", "kind"], keep="last")
        for c in ("step", "epoch"):
            df[c] = df[c].astype("Int64")
        df["numel"] = df["numel"].astype("int64")
        df["seq"] = df["seq"].astype("int64")
        for c in ("mean", "var", "skewness", "kurtosis"):
            df[c] = df[c].astype("float64")
        df["tensor"] = df["tensor"].astype(object)
        df["kind"] = df["kind"].astype(object)
        order = {"snapshot": 0, "update": 1, "latent": 2}
        df = df.assign(_k=df["kind"].map(order)).sort_values(
            ["_k", "step", "epoch", "seq"], kind="stable", na_position="first"
        )
        df = df.drop(columns="_k").reset_index(drop=True)
        self._frame_cache = (signature, df)
        return df.copy()

    def _rows_from_shard(self, rel: str) -> pd.DataFrame:
        """The index rows of one shard, rebuilt from its own metadata and moments."""
        path = os.path.join(self.path, rel)
        empty = pd.DataFrame({c: [] for c in INDEX_COLUMNS})
        try:
            with safe_open(path, framework="pt") as fh:
                meta = fh.metadata() or {}
                if meta.get("kind") == "snapshots":
                    names = json.loads(meta["names"])
                    numels = [int(np.prod(fh.get_slice(n).get_shape()[1:])) for n in names]
                    return pd.DataFrame(moment_index_rows(
                        "snapshot", fh.get_tensor("steps").numpy(), names, numels,
                        fh.get_tensor("::moments").numpy(), rel, seq_of(os.path.basename(rel))))
                if meta.get("kind") != "update":
                    rows = json.loads(meta.get("rows", "[]"))
                    return pd.DataFrame(columns(rows)) if rows else empty
                shapes = json.loads(meta.get("shapes", "{}"))
                steps = fh.get_tensor("steps").numpy()
                seq = seq_of(os.path.basename(rel))
                frames = []
                for name, (_, numel) in shapes.items():
                    key = f"{name}::moments"
                    if key in fh.keys():
                        frames.append(pd.DataFrame(moment_index_rows(
                            "update", steps, [name], [numel], fh.get_tensor(key).numpy(),
                            rel, seq)))
                return pd.concat(frames, ignore_index=True) if frames else empty
        except FileNotFoundError:
            return empty
        except Exception as exc:
            raise RunStoreError(f"shard {rel!r} of {self.path!r} is unreadable: {exc}") from None

    def snapshot_steps(self) -> list[int]:
        """Sorted steps that have a full snapshot (0 is the initialisation)."""
        df = self.frame()
        return sorted(int(s) for s in df.loc[df["kind"] == "snapshot", "step"].unique())

    def _snapshot_shard(self, step: int) -> str:
        df = self.frame()
        hit = df[(df["kind"] == "snapshot") & (df["step"] == step)]
        if hit.empty:
            steps = self.snapshot_steps()
            shown = ", ".join(map(str, steps[:5] + (["..."] if len(steps) > 10 else [])
                                  + steps[-5:] if len(steps) > 10 else steps))
            raise InputDataError(
                f"`step`={step} has no snapshot in {self.path!r}; recorded steps: "
                f"{shown or 'none'}."
            )
        return os.path.join(self.path, hit["shard"].iloc[-1])

    def snapshot(self, step: int) -> dict[str, torch.Tensor]:
        """All tensors of the snapshot at `step`, in the stored dtype, in model order."""
        path = self._snapshot_shard(int(step))
        try:
            with safe_open(path, framework="pt") as fh:
                meta = fh.metadata() or {}
                if meta.get("kind") == "snapshots":  # several steps stacked in one shard
                    g = self._position(fh, int(step))
                    return {n: fh.get_slice(n)[g] for n in json.loads(meta["names"])}
                rows = json.loads(meta.get("rows", "[]"))
                names = [r["tensor"] for r in rows] or list(fh.keys())
                return {n: fh.get_tensor(n) for n in names}
        except FileNotFoundError:
            raise RunStoreError(
                f"snapshot at step {step} was removed (thinned) after the index was read."
            ) from None

    @staticmethod
    def _position(fh, step: int) -> int:
        """Index of `step` along the first dimension of a shard of stacked snapshots."""
        hits = np.flatnonzero(fh.get_tensor("steps").numpy() == step)
        return int(hits[-1])

    def tensor(self, name: str, step: int) -> torch.Tensor:
        """One tensor of the snapshot at `step` (reads only that tensor)."""
        path = self._snapshot_shard(int(step))
        with safe_open(path, framework="pt") as fh:
            meta = fh.metadata() or {}
            stacked = meta.get("kind") == "snapshots"
            names = json.loads(meta["names"]) if stacked else list(fh.keys())
            if name not in names:
                raise InputDataError(
                    f"`name`={name!r} is not in the snapshot at step {step}; tensors: "
                    f"{sorted(names)}."
                )
            if stacked:
                return fh.get_slice(name)[self._position(fh, int(step))]
            return fh.get_tensor(name)

    def tensor_names(self) -> list[str]:
        """Names of the recorded weight tensors, in model order."""
        rec = self.manifest.get("recorders", {}).get("weights", {})
        names = [t["name"] for t in rec.get("tensors", [])]
        if names:
            return names
        df = self.frame()
        return list(dict.fromkeys(df.loc[df["kind"] != "latent", "tensor"]))

    def trajectories(self, name: str) -> Trajectories:
        """The per-step updates of the sampled coordinates of tensor `name` (see
        :class:`Trajectories`), concatenated over all flushed shards."""
        steps, updates, coords, shape = [], [], None, ()
        for fname in self._list("trajectories"):
            path = os.path.join(self.path, "trajectories", fname)
            try:
                with safe_open(path, framework="pt") as fh:
                    key = f"{name}::updates"
                    if key not in fh.keys():
                        continue
                    c = fh.get_tensor(f"{name}::coords").numpy()
                    if coords is not None and not np.array_equal(c, coords):
                        raise RunStoreError(
                            f"tensor {name!r} was sampled at different coordinates in "
                            f"{fname!r} (the run was resumed with other `coords` or seed)."
                        )
                    coords = c
                    shape = tuple(json.loads(fh.metadata()["shapes"])[name][0])
                    steps.append(fh.get_tensor("steps").numpy())
                    updates.append(fh.get_tensor(key).numpy())
            except FileNotFoundError:  # pragma: no cover
                continue
        if coords is None:
            known = self.tensor_names()
            raise InputDataError(
                f"`name`={name!r} has no recorded trajectories in {self.path!r}; "
                f"tensors: {known}."
            )
        s = np.concatenate(steps)
        u = np.concatenate(updates, axis=0)
        # a resumed run may re-record steps: keep the last write of each step
        _, last = np.unique(s[::-1], return_index=True)
        keep = np.sort(len(s) - 1 - last)
        s, u = s[keep], u[keep]
        order = np.argsort(s, kind="stable")
        return Trajectories(name, s[order], coords, u[order], shape)

    def update_moments(self, name: str) -> pd.DataFrame:
        """Per-step moments of the update of the whole tensor `name`.

        Returns
        -------
        pandas.DataFrame
            Columns ``step, numel, mean, var, skewness, kurtosis`` (see :meth:`frame`).
        """
        df = self.frame()
        sel = df[(df["kind"] == "update") & (df["tensor"] == name)]
        if sel.empty:
            raise InputDataError(
                f"`name`={name!r} has no recorded update moments in {self.path!r}; "
                f"tensors: {self.tensor_names()}."
            )
        out = sel[["step", "numel", "mean", "var", "skewness", "kurtosis"]]
        out = out.assign(step=out["step"].astype("int64"))
        return out.sort_values("step").reset_index(drop=True)

    def latent_epochs(self) -> list[int]:
        """Sorted epochs with recorded latents."""
        df = self.frame()
        return sorted(int(e) for e in df.loc[df["kind"] == "latent", "epoch"].unique())

    def latents(self, epoch: int) -> dict[str, torch.Tensor]:
        """The latents recorded at `epoch`: ``mu``, ``logvar`` or ``kappa``, ``z``, ``labels``
        (whichever were recorded; names follow the LatentRecorder's `outputs`)."""
        df = self.frame()
        hit = df[(df["kind"] == "latent") & (df["epoch"] == int(epoch))]
        if hit.empty:
            raise InputDataError(
                f"`epoch`={epoch} has no latents in {self.path!r}; epochs: {self.latent_epochs()}."
            )
        path = os.path.join(self.path, hit["shard"].iloc[-1])
        with safe_open(path, framework="pt") as fh:
            rows = json.loads((fh.metadata() or {}).get("rows", "[]"))
            names = [r["tensor"] for r in rows if r.get("epoch") == int(epoch)]
            keys = set(fh.keys())
            prefix = latent_key(epoch, "")  # a shard of several epochs (LATENT_GROUP_S)
            return {n: fh.get_tensor(prefix + n if prefix + n in keys else n)
                    for n in names or keys}

