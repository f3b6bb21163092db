"""Low-level file handling for the run store: atomic writes, shard names, moments, a writer thread.

Nothing here knows about recorders. Every file the store creates goes through
:func:`atomic_save_tensors` or :func:`atomic_write_bytes`: the bytes are written to a temporary
file in the destination folder (``.<name>.tmp-<pid>``) and then :func:`os.replace`-d into place,
so a reader (or a process killed with SIGKILL half-way) only ever sees complete files. Temporary
files are ignored by every reader and removed when a writer reopens the store.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import queue
import struct
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

__all__ = [
    "INDEX_COLUMNS",
    "TMP_MARKER",
    "JobThread",
    "atomic_save_tensors",
    "atomic_write_bytes",
    "atomic_write_json",
    "columns",
    "moments_from_sums",
    "moments_numpy",
    "safetensors_parts",
    "moment_index_rows",
    "rows_of",
    "write_index_part",
]

TMP_MARKER = ".tmp-"

#: columns of the tidy index, in order (see RunStore.frame)
INDEX_COLUMNS = (
    "step", "epoch", "tensor", "kind", "numel", "mean", "var", "skewness", "kurtosis",
    "shard", "seq",
)

_INDEX_SCHEMA = pa.schema(
    [
        ("step", pa.int64()),
        ("epoch", pa.int64()),
        ("tensor", pa.string()),
        ("kind", pa.string()),
        ("numel", pa.int64()),
        ("mean", pa.float64()),
        ("var", pa.float64()),
        ("skewness", pa.float64()),
        ("kurtosis", pa.float64()),
        ("shard", pa.string()),
        ("seq", pa.int64()),
    ]
)
#: the index columns worth a dictionary in Parquet (few distinct values, many repeats)
_INDEX_STRINGS = [f.name for f in _INDEX_SCHEMA if pa.types.is_string(f.type)]


#: files at most this large are joined into one buffer and written with one call
JOIN_BYTES = 1 << 20


def atomic_write_bytes(path: str, data: bytes | list, *, fsync: bool = False) -> int:
    """Write `data` (bytes, or a list of buffers written one after the other) to `path`
    through a temporary file and a rename; return the bytes written.

    A SIGKILL cannot leave a partial file at `path`: the page cache survives the death of the
    process, and ``os.replace`` is atomic on POSIX. Surviving a power loss needs ``fsync=True``.
    """
    folder, name = os.path.split(path)
    tmp = os.path.join(folder, f".{name}{TMP_MARKER}{os.getpid()}-{threading.get_ident()}")
    parts = [data] if isinstance(data, (bytes, bytearray, memoryview)) else data
    if len(parts) > 1 and sum(memoryview(p).nbytes for p in parts) <= JOIN_BYTES:
        parts = [b"".join(parts)]  # one write: each call hands the GIL to the training thread
    n = 0
    with open(tmp, "wb") as fh:
        # one write per buffer: os.writev of the ~600 buffers of a shard of stacked snapshots
        # was faster alone but cost 5x the writer's CPU time while training ran (2-core VM)
        for part in parts:
            n += fh.write(part)
        if fsync:
            fh.flush()
            os.fsync(fh.fileno())
    os.replace(tmp, path)
    return n


#: safetensors dtype codes (https://github.com/huggingface/safetensors, format section)
_ST_DTYPES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.bool: "BOOL",
}


#: dtypes whose CPU tensors ``Tensor.numpy()`` shares without a copy (not bfloat16)
_NUMPY_DTYPES = frozenset({torch.float64, torch.float32, torch.float16, torch.int64, torch.int32,
                           torch.int16, torch.int8, torch.uint8, torch.bool})


def _buffer(t: torch.Tensor) -> np.ndarray:
    """The bytes of CPU tensor `t`, C-contiguous, as a numpy array sharing its memory when it
    can (``Tensor.numpy()`` takes 0.5 us against 2.3 us for the detach / reshape / uint8-view
    chain, which a shard of 100 stacked snapshots of six tensors runs 600 times while holding
    the GIL)."""
    if t.requires_grad:
        t = t.detach()
    if not t.is_contiguous():
        t = t.contiguous()
    if t.dtype in _NUMPY_DTYPES:
        return t.numpy()
    return t.reshape(-1).view(torch.uint8).numpy()


def safetensors_parts(tensors: dict[str, torch.Tensor | list[torch.Tensor]],
                      metadata: dict[str, str]) -> list:
    """The safetensors encoding of CPU `tensors` as a list of buffers, without copying them.

    A value may also be a list of tensors of one shape and dtype: it is stored as one tensor
    stacked along a new first dimension, written piece by piece (no stacked copy is made).

    The format is an 8-byte little-endian header length, a JSON header (``dtype``, ``shape``,
    ``data_offsets`` per tensor, ``__metadata__``) padded with spaces to a multiple of 8, then
    the raw bytes; ``safetensors.safe_open`` reads it (tested). Written by hand because
    ``safetensors.torch.save`` copies every tensor into one new buffer and spends most of its
    time in Python bookkeeping: 0.069 ms against 0.025 ms here for the 6-tensor, 85k-value
    digits-MLP snapshot (medians, measured side by side on the loaded 2-core machine).
    """
    header: dict[str, Any] = {}
    parts: list = [b"", b""]
    offset = 0
    for name, value in tensors.items():
        pieces = value if isinstance(value, list) else [value]
        first = pieces[0]
        if first.dtype not in _ST_DTYPES:
            raise TypeError(f"cannot store dtype {first.dtype} of {name!r} in safetensors")
        dtype, shape0 = first.dtype, first.shape
        if any(p.dtype != dtype or p.shape != shape0 for p in pieces):
            raise ValueError(f"the pieces of {name!r} differ in shape or dtype")
        shape = [len(pieces), *shape0] if isinstance(value, list) else list(shape0)
        nb = 0
        for t in pieces:
            if t.numel():
                buf = _buffer(t)
                parts.append(buf)
                nb += buf.nbytes
        header[name] = {"dtype": _ST_DTYPES[dtype], "shape": shape,
                        "data_offsets": [offset, offset + nb]}
        offset += nb
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    parts[0] = struct.pack("<Q", len(head))
    parts[1] = head
    return parts


def atomic_save_tensors(
    path: str, tensors: dict[str, torch.Tensor | list[torch.Tensor]], metadata: dict[str, str],
    *, fsync: bool = False
) -> int:
    """Serialise `tensors` as safetensors (no pickle) and write them atomically."""
    return atomic_write_bytes(path, safetensors_parts(tensors, metadata), fsync=fsync)


def atomic_write_json(path: str, obj: Any, *, fsync: bool = False) -> int:
    return atomic_write_bytes(
        path, json.dumps(obj, indent=2, sort_keys=True, default=str).encode(), fsync=fsync
    )


def write_index_part(path: str, batches: list[dict], *, fsync: bool = False) -> int:
    """Write index rows, given as column batches (see :func:`columns`), as one small Parquet
    file, atomically.

    Each column is joined across the batches before it becomes one Arrow array (numpy columns
    concatenated, others as one list), and only the string columns are dictionary-encoded.
    The part that closing the bench MLP's recorder writes after 2,000 steps (141 batches,
    12,126 rows) took 13 ms of the writer thread as one Arrow table per batch with every
    column dictionary-encoded, and takes 4 ms this way; its file is 16 % smaller.
    """
    lengths = [len(batch["tensor"]) for batch in batches]
    arrays = []
    for field in _INDEX_SCHEMA:
        chunks = [batch.get(field.name) for batch in batches]
        if all(isinstance(c, np.ndarray) for c in chunks):
            arrays.append(pa.array(np.concatenate(chunks), type=field.type))
            continue
        values: list = []
        for chunk, n in zip(chunks, lengths):
            if chunk is None:
                values.extend(itertools.repeat(None, n))
            else:  # tolist(): Arrow converts Python floats 10x faster than numpy's
                values.extend(chunk.tolist() if isinstance(chunk, np.ndarray) else chunk)
        arrays.append(pa.array(values, type=field.type))
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_arrays(arrays, schema=_INDEX_SCHEMA), sink,
                   use_dictionary=_INDEX_STRINGS)
    return atomic_write_bytes(path, sink.getvalue(), fsync=fsync)


def columns(rows: list[dict]) -> dict[str, list]:
    """Index rows given as dicts -> one column batch ``{column: values}``."""
    return {c: [r.get(c) for r in rows] for c in INDEX_COLUMNS}


def rows_of(batch: dict[str, Any]) -> list[dict]:
    """A column batch (see :func:`columns`) -> index rows as dicts of Python scalars."""
    cols = [v.tolist() if isinstance(v, np.ndarray) else list(v) for v in batch.values()]
    return [dict(zip(batch, row)) for row in zip(*cols)]


def moments_from_sums(sums, numel):
    """Shifted power sums ``(..., 5)``: ``(S1, S2, S3, S4, a)`` with ``S_k = sum((x - a)**k)``
    over `numel` values (broadcast against ``sums[..., 0]``) -> ``(..., 4)``: ``(mean, var,
    sum c**3, sum c**4)`` (the input of :func:`finish_moments`), in float64. With ``E_k =
    S_k / n``: ``mean = a + E1``, ``var = E2 - E1**2``, ``sum c**3 = n (E3 - 3 E1 E2 +
    2 E1**3)``, ``sum c**4 = n (E4 - 4 E1 E3 + 6 E1**2 E2 - 3 E1**4)``; a shift near the mean
    keeps ``E1`` small, so the combination loses no accuracy. NaN for an empty tensor.

    Torch tensors (on any device) or numpy arrays in; the same kind out. The recorder's
    update moments (:func:`weightstats.capture._group.update_moments_from_sums`) and the
    snapshot statistics both come from here.
    """
    if isinstance(sums, np.ndarray):  # numpy in, numpy out: no torch call on the writer thread
        sums = sums.astype(np.float64, copy=False)
        n = np.asarray(numel, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            e1, e2, e3, e4 = (sums[..., k] / n for k in range(4))
            var = np.maximum(e2 - e1 * e1, 0)
            m3 = e3 - 3 * e1 * e2 + 2 * (e1 * e1 * e1)
            m4 = np.maximum(e4 - 4 * e1 * e3 + 6 * (e1 * e1) * e2 - 3 * (e1 * e1) ** 2, 0)
            out = np.stack([sums[..., 4] + e1, var, m3 * n, m4 * n], axis=-1)
        return np.where((n == 0)[..., None], np.nan, out)
    sums = torch.as_tensor(sums).to(torch.float64)
    n = torch.as_tensor(numel, device=sums.device).to(torch.float64)
    e1, e2, e3, e4 = (sums[..., k] / n for k in range(4))
    var = (e2 - e1 * e1).clamp_min(0)
    m3 = e3 - 3 * e1 * e2 + 2 * (e1 * e1 * e1)
    m4 = (e4 - 4 * e1 * e3 + 6 * (e1 * e1) * e2 - 3 * (e1 * e1) ** 2).clamp_min(0)
    out = torch.stack([sums[..., 4] + e1, var, m3 * n, m4 * n], dim=-1)
    return torch.where((n == 0).unsqueeze(-1), torch.nan, out)


def moments_numpy(xs: list[torch.Tensor]) -> np.ndarray:
    """``(mean, var, sum c**3, sum c**4)`` rows (float64, two-pass; NaN for an empty tensor)
    of small CPU tensors: the numbers of :func:`~weightstats.capture._kernels.moments_of`,
    computed by numpy."""
    out = np.full((len(xs), 4), np.nan)
    for i, t in enumerate(xs):
        if t.numel() == 0:
            continue
        if t.dtype not in _NUMPY_DTYPES:  # bfloat16: exact in float32
            t = t.float()
        a = t.detach().numpy().reshape(-1).astype(np.float64)
        mean = a.mean()
        c = a - mean
        c2 = c * c
        # products and sums, not dot products: numpy's BLAS starts a thread pool for dot
        # products of some thousand values, whose spinning threads took a core from training
        # (process CPU 2.7x the training's with the latents of all 1,797 digits)
        out[i] = (mean, c2.mean(), (c2 * c).sum(), (c2 * c2).sum())
    return out


def finish_moments(raw: np.ndarray, numel: int) -> np.ndarray:
    """``raw[..., (mean, var, s3, s4)]`` -> ``[..., (mean, var, skewness, excess kurtosis)]``.

    ``s3``/``s4`` are the sums of the cubed / fourth powers of the centred values.

    Skewness is ``m3 / m2**1.5`` and kurtosis ``m4 / m2**2 - 3`` with biased (1/n) central
    moments, i.e. ``scipy.stats.skew(x)`` and ``scipy.stats.kurtosis(x)`` with their defaults
    (``bias=True``, Fisher). Zero variance gives NaN for both.
    """
    raw = np.asarray(raw, dtype=np.float64)
    mean, var = raw[..., 0], raw[..., 1]
    m3, m4 = raw[..., 2] / numel, raw[..., 3] / numel
    with np.errstate(divide="ignore", invalid="ignore"):
        skew = np.where(var > 0, m3 / var**1.5, np.nan)
        kurt = np.where(var > 0, m4 / var**2 - 3.0, np.nan)
    return np.stack([mean, var, skew, kurt], axis=-1)


class JobThread:
    """One worker thread that runs jobs in submission order (or inline when not threaded).

    The recorders use one for per-step reductions and the run store one for writes: the
    training thread only hands over tensors it owns, so the work happens off the critical path.
    An exception in a job is re-raised, on the caller's thread, by the next :meth:`submit`,
    :meth:`wait` or :meth:`close`; jobs queued after a failure are skipped. With
    ``threaded=False`` jobs run inline (simpler to debug; the behaviour is otherwise identical).

    Parameters
    ----------
    threaded : bool
        Run jobs on a thread of their own, started with the first job.
    name : str
        The thread's name (shown by debuggers and ``py-spy``).
    max_pending : int
        Jobs that may wait in the queue before :meth:`submit` blocks; 0 for no bound.
    no_grad : bool
        Run each job under :func:`torch.no_grad` (grad mode is per thread in torch).
    """

    def __init__(self, *, threaded: bool, name: str, max_pending: int = 0,
                 no_grad: bool = False) -> None:
        self._error: BaseException | None = None
        self._no_grad = no_grad
        self._name = name
        self._queue: queue.Queue | None = None
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        if threaded:  # the thread itself starts with the first job (see _start)
            self._queue = queue.Queue(maxsize=max_pending)

    def _start(self) -> None:
        """Start the thread: at the first :meth:`submit`, so that a recorder whose groups
        never hand work over (all fused) keeps no idle thread."""
        # A torch op on a second thread gets intra-op threads of its own (an OpenMP team
        # and MKL's), which then compete with training's: with torch on both cores of the
        # 2-core VM, one dot product on the store's writer thread made the training loop
        # 3.5-4x slower for the rest of the run. torch.set_num_threads(1) on the worker
        # sets its own OpenMP and MKL threads to one, and torch's default for threads
        # created later, which the creating thread then sets back to its own count.
        threads = torch.get_num_threads()
        ready = threading.Event()
        thread = threading.Thread(target=self._run, args=(ready,), name=self._name, daemon=True)
        thread.start()  # if this raises, no job is queued for a thread that never ran
        ready.wait()
        torch.set_num_threads(threads)
        self._thread = thread

    @property
    def threaded(self) -> bool:
        return self._queue is not None

    def _run(self, ready: threading.Event) -> None:
        assert self._queue is not None
        # one intra-op thread for torch on this thread (see _start), then let the creating
        # thread restore torch's default for new threads. torch sets a thread's threads up
        # on its first use there, from that default: done first, or it would undo the one
        torch.get_num_threads()
        torch.set_num_threads(1)
        ready.set()
        while True:
            job = self._queue.get()
            try:
                if job is None:
                    return
                if self._error is None:
                    if self._no_grad:
                        with torch.no_grad():
                            job()
                    else:
                        job()
            except BaseException as exc:  # noqa: BLE001 - handed back to the caller
                self._error = exc
            finally:
                self._queue.task_done()

    def _raise_pending(self) -> None:
        if self._error is not None:
            exc, self._error = self._error, None
            raise exc

    def submit(self, job: Callable[[], None]) -> None:
        self._raise_pending()
        if self._queue is None:
            job()
            return
        if self._thread is None:
            with self._start_lock:  # one thread, even if two threads submit first at once
                if self._thread is None:
                    self._start()
        self._queue.put(job)

    def wait(self) -> None:
        """Block until every submitted job has run; re-raise a job's exception."""
        if self._queue is not None:
            self._queue.join()
        self._raise_pending()

    def close(self) -> None:
        """Run what is queued, stop the thread, and re-raise a job's exception."""
        if self._queue is not None and self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        self._queue = None
        self._raise_pending()


def moment_index_rows(kind: str, steps: np.ndarray, names: list[str], numels: list[int],
                      fin: np.ndarray, rel: str, seq: int) -> dict[str, Any]:
    """Index rows of one shard's moments as a column batch (see :func:`columns`).

    `fin` is (steps, tensors, 4) of (mean, var, skewness, kurtosis): the snapshots of a
    stacked snapshot shard, or the updates of one tensor in a trajectory shard. Built from
    arrays, with no per-row Python objects (a trajectory shard of 100 steps has some 600 rows,
    and the writer thread holds the GIL while it builds them).
    """
    g, k = len(steps), len(names)
    fin = np.asarray(fin, dtype=np.float64).reshape(g * k, 4)
    n = g * k
    return {"step": np.repeat(np.asarray(steps, dtype=np.int64), k), "epoch": [None] * n,
            "tensor": list(names) * g, "kind": [kind] * n,
            "numel": np.tile(np.asarray(numels, np.int64), g),
            "mean": fin[:, 0], "var": fin[:, 1], "skewness": fin[:, 2], "kurtosis": fin[:, 3],
            "shard": [rel] * n, "seq": np.full(n, seq, dtype=np.int64)}
