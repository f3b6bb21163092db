"""Open any common checkpoint safely and read it one tensor at a time.

:func:`open_checkpoint` detects the format from the file's bytes (never from its extension),
validates what it can before touching values, and returns a :class:`Checkpoint` whose
``entries`` are in layer order. Pickles that need code to load are refused unless
``allow_pickle=True``. Formats, one reader module each under :mod:`weightstats.io.formats`:

================  ==========================================  ==================================
format            detected by                                 reader
================  ==========================================  ==================================
torch-zip         ``PK\\x03\\x04`` with a ``data.pkl`` member   ``torch.load(weights_only, mmap)``
torch-pickle      pickle protocol byte ``0x80``               ``torch.load(weights_only)``
safetensors       8-byte little-endian length, then ``{``     header checked, then ``safe_open``
sharded           a directory or its ``*.index.json``         one reader per shard
npy / npz         ``\\x93NUMPY`` / zip of ``.npy`` members     numpy, ``allow_pickle=False``
hdf5 / keras      ``\\x89HDF`` / zip with ``*.weights.h5``      h5py datasets (model never built)
onnx              parses as an ONNX ModelProto                initializers; external data checked
================  ==========================================  ==================================
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import zipfile
from typing import Any

import numpy as np

from ..errors import CheckpointError
from .formats._base import Reader
from .tensors import TensorEntry, layer_order, strip_common_prefix

__all__ = ["open_checkpoint", "Checkpoint", "detect_format", "FORMATS"]

FORMATS = ("torch-zip", "torch-pickle", "safetensors", "npy", "npz", "hdf5", "keras", "onnx")

_SHARD_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def detect_format(path: str) -> str:
    """Name the format of the file at `path` from its first bytes.

    Returns
    -------
    str
        One of :data:`FORMATS`.

    Raises
    ------
    CheckpointError
        When the file is empty or matches no format weightstats reads.
    """
    size = os.path.getsize(path)
    if size == 0:
        raise CheckpointError(f"{path}: the file is empty.")
    with open(path, "rb") as fh:
        head = fh.read(16)
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except (zipfile.BadZipFile, OSError) as exc:
            raise CheckpointError(
                f"{path}: a zip file that cannot be read ({exc}); is it truncated?"
            ) from None
        if any(n.endswith("data.pkl") for n in names):
            return "torch-zip"
        if any(n.endswith(".weights.h5") for n in names):
            return "keras"
        if names and all(n.endswith(".npy") for n in names):
            return "npz"
        raise CheckpointError(
            f"{path}: a zip file that is neither a PyTorch checkpoint, an .npz archive nor a "
            ".keras model."
        )
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "hdf5"
    if len(head) >= 9 and head[8:9] == b"{":
        (n,) = struct.unpack("<Q", head[:8])
        if n > 0:
            return "safetensors"
    if head[:1] == b"\x80":
        return "torch-pickle"
    from .formats.onnx_model import try_parse_onnx

    if try_parse_onnx(path) is not None:
        return "onnx"
    raise CheckpointError(
        f"{path}: not a checkpoint format weightstats reads (first bytes {head[:8]!r}); "
        "expected PyTorch, safetensors, numpy, Keras/HDF5 or ONNX."
    )


def _open_file(path: str, fmt: str, *, allow_pickle: bool) -> Reader:
    if fmt in ("torch-zip", "torch-pickle"):
        from .formats.torch_pickle import TorchReader

        return TorchReader(path, zip_format=fmt == "torch-zip", allow_pickle=allow_pickle)
    if fmt == "safetensors":
        from .formats.safetensors import SafetensorsReader

        return SafetensorsReader(path)
    if fmt in ("npy", "npz"):
        from .formats.numpy_files import NumpyReader

        return NumpyReader(path, archive=fmt == "npz", allow_pickle=allow_pickle)
    if fmt in ("hdf5", "keras"):
        from .formats.keras_h5 import KerasReader

        return KerasReader(path, zipped=fmt == "keras")
    from .formats.onnx_model import OnnxReader, try_parse_onnx

    return OnnxReader(path, try_parse_onnx(path))


def _shard_files(path: str) -> tuple[list[str], str | None]:
    """Files making up the checkpoint at `path` and the index file, if any."""
    if os.path.isfile(path):
        if path.endswith(".index.json"):
            return _index_shards(path), path
        return [path], None
    indexes = sorted(f for f in os.listdir(path) if f.endswith(".index.json"))
    if len(indexes) > 1:
        raise CheckpointError(
            f"{path}: the directory has several shard indexes ({', '.join(indexes)}); "
            "pass the one to analyse."
        )
    if indexes:
        index = os.path.join(path, indexes[0])
        return _index_shards(index), index
    files = sorted(
        os.path.join(path, f)
        for f in os.listdir(path)
        if f.endswith(_SHARD_SUFFIXES + (".ckpt", ".npz", ".npy", ".h5", ".keras", ".onnx"))
        and os.path.isfile(os.path.join(path, f))
    )
    if not files:
        raise CheckpointError(
            f"{path}: the directory holds no checkpoint (no *.safetensors, *.bin, *.pt, *.ckpt, "
            "*.npz, *.h5, *.onnx or *.index.json file)."
        )
    if len(files) > 1 and not all(f.endswith(".safetensors") for f in files):
        raise CheckpointError(
            f"{path}: the directory holds {len(files)} checkpoint files and no index; pass the "
            "files themselves (weightstats analyze DIR/*)."
        )
    return files, None


def _index_shards(index: str) -> list[str]:
    try:
        with open(index, encoding="utf-8") as fh:
            data = json.load(fh)
        weight_map = data["weight_map"]
        if not isinstance(weight_map, dict) or not all(
            isinstance(v, str) for v in weight_map.values()
        ):
            raise TypeError("weight_map must map names to file names")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{index}: not a valid shard index ({exc}).") from None
    base = os.path.realpath(os.path.dirname(os.path.abspath(index)))
    files: list[str] = []
    for shard in dict.fromkeys(weight_map.values()):
        target = os.path.realpath(os.path.join(base, shard))
        if os.path.isabs(shard) or os.path.commonpath([base, target]) != base:
            raise CheckpointError(f"{index}: shard {shard!r} lies outside the index's directory.")
        if not os.path.isfile(target):
            raise CheckpointError(f"{index}: shard {shard!r} is missing.")
        files.append(os.path.join(os.path.dirname(index), shard))
    if not files:
        raise CheckpointError(f"{index}: the shard index lists no tensors.")
    return files


class Checkpoint:
    """An opened checkpoint: tensor descriptions in layer order, values on demand.

    Use :func:`open_checkpoint` to create one. It is a context manager; pickling it pickles
    only its path and options, so a worker process reopens the file itself.

    Attributes
    ----------
    path : str
        What was opened (a file, a directory or an index).
    format : str
        One of :data:`FORMATS`, prefixed with ``sharded-`` for several files.
    entries : list of TensorEntry
        Float tensors to analyse, in layer order.
    skipped : list of (str, str)
        Entries left out and why (integer buffers, empty placeholders, non-tensors).
    files : list of str
        The files read.
    """

    def __init__(self, path: str, *, allow_pickle: bool = False) -> None:
        self.path = str(path)
        self.allow_pickle = allow_pickle
        if not os.path.exists(self.path):
            raise CheckpointError(f"{self.path}: no such file or directory.")
        self.files, self._index = _shard_files(self.path)
        self._readers: list[Reader] = []
        self._by_name: dict[str, tuple[Reader, str]] = {}
        self._sha256: str | None = None
        raw_entries: list[TensorEntry] = []
        self.skipped: list[tuple[str, str]] = []
        formats = []
        try:
            for file in self.files:
                reader = _open_file(file, detect_format(file), allow_pickle=allow_pickle)
                self._readers.append(reader)
                formats.append(reader.format)
                raw_entries.extend((e, reader) for e in reader.entries)  # type: ignore[misc]
                self.skipped.extend(reader.skipped)
        except BaseException:
            self.close()
            raise
        self.format = formats[0] if len(set(formats)) == 1 else "+".join(sorted(set(formats)))
        if len(self.files) > 1:
            self.format = f"sharded-{self.format}"
        keys = [e.name for e, _ in raw_entries]
        shown = strip_common_prefix(keys)
        prefix = keys[0][: len(keys[0]) - len(shown[keys[0]])] if keys else ""
        for name, _ in self.skipped:
            if prefix and name.startswith(prefix) and len(name) > len(prefix):
                shown[name] = name[len(prefix) :]
        by_shown: dict[str, TensorEntry] = {}
        for entry, reader in raw_entries:  # type: ignore[misc]
            name = shown[entry.name]
            if name in by_shown:
                raise CheckpointError(f"{self.path}: tensor {name!r} appears twice.")
            by_shown[name] = TensorEntry(
                name, entry.shape, entry.dtype, entry.numel, entry.source, entry.key, entry.out_axis
            )
            self._by_name[name] = (reader, entry.key)
        self.skipped = [(shown.get(n, n), why) for n, why in self.skipped]
        ordered = len(self._readers) == 1 and self._readers[0].ordered
        #: True when the file itself records the layer order (Keras); entries keep it.
        self.order_from_file = ordered
        self.entries = [by_shown[n] for n in (by_shown if ordered else layer_order(by_shown))]
        if not self.entries and not self.skipped:
            raise CheckpointError(f"{self.path}: the checkpoint holds no tensors.")

    # -- values ----------------------------------------------------------------------------
    def load_tensor(self, name: str):
        """The tensor `name` as a CPU ``torch.Tensor`` in its storage dtype (possibly mmapped)."""
        try:
            reader, key = self._by_name[name]
        except KeyError:
            raise CheckpointError(f"{self.path}: no tensor named {name!r}.") from None
        try:
            return reader.read(key)
        except CheckpointError:
            raise
        except Exception as exc:  # a corrupt file noticed only when the values are read
            detail = " ".join(str(exc).split())[:200] or type(exc).__name__
            raise CheckpointError(f"{self.path}: cannot read tensor {name!r} ({detail}).") from None

    def row_source(self, name: str):
        """Tensor `name` as a row source: ``.shape`` and ``.rows(start, stop)`` returning the
        slices ``[start:stop]`` along axis 0 in storage dtype. Safetensors files are read
        slice by slice from their memory map; other formats slice the (mapped) tensor."""
        try:
            reader, key = self._by_name[name]
        except KeyError:
            raise CheckpointError(f"{self.path}: no tensor named {name!r}.") from None
        try:
            return reader.rows(key)
        except CheckpointError:
            raise
        except Exception as exc:
            detail = " ".join(str(exc).split())[:200] or type(exc).__name__
            raise CheckpointError(f"{self.path}: cannot read tensor {name!r} ({detail}).") from None

    def load(self, name: str) -> np.ndarray:
        """The tensor `name` as a float64 numpy array of its shape."""
        import torch

        return self.load_tensor(name).to(torch.float64).numpy()

    def entry(self, name: str) -> TensorEntry:
        """The :class:`TensorEntry` called `name`."""
        if not hasattr(self, "_entry_index"):
            self._entry_index = {e.name: e for e in self.entries}
        try:
            return self._entry_index[name]
        except KeyError:
            raise CheckpointError(f"{self.path}: no tensor named {name!r}.") from None

    def release(self) -> None:
        """Unmap what reading tensors has mapped so far (reopened on the next read).

        Memory-mapped pages that were read count as resident memory until unmapped; the
        analysis calls this after each tensor, so peak memory stays near the largest tensor.
        """
        for reader in self._readers:
            reader.release()

    # -- identity --------------------------------------------------------------------------
    def sha256(self) -> str:
        """SHA-256 of the checkpoint's bytes.

        For one file, the file's digest. For several files (shards, index), the digest of the
        lines ``<file name> <file digest>`` in sorted order.
        """
        if self._sha256 is None:
            files = self.files + ([self._index] if self._index else [])
            digests = {os.path.basename(f): _file_sha256(f) for f in files}
            if len(digests) == 1:
                self._sha256 = next(iter(digests.values()))
            else:
                lines = "".join(f"{k} {v}\n" for k, v in sorted(digests.items()))
                self._sha256 = hashlib.sha256(lines.encode()).hexdigest()
        return self._sha256

    # -- lifetime --------------------------------------------------------------------------
    def close(self) -> None:
        """Release every file handle and memory map."""
        for reader in self._readers:
            reader.close()
        self._readers = []

    def __enter__(self) -> "Checkpoint":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __reduce__(self):
        return (_reopen, (self.path, self.allow_pickle))

    def __repr__(self) -> str:
        return (
            f"Checkpoint({self.path!r}, format={self.format!r}, tensors={len(self.entries)}, "
            f"skipped={len(self.skipped)})"
        )


def _reopen(path: str, allow_pickle: bool) -> Checkpoint:
    return Checkpoint(path, allow_pickle=allow_pickle)


def _file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def open_checkpoint(path: str | os.PathLike, *, allow_pickle: bool = False) -> Checkpoint:
    """Open a checkpoint for streaming, tensor by tensor.

    Parameters
    ----------
    path : str or path-like
        A checkpoint file, a directory holding one (or a sharded checkpoint), or a shard index
        (``*.index.json``).
    allow_pickle : bool, default False
        Allow pickles that need code to load. This runs code from the file: use it only for
        files you trust.

    Returns
    -------
    Checkpoint
        A context manager with ``entries`` in layer order, ``skipped``, ``load(name)``,
        ``format`` and ``sha256()``.

    Raises
    ------
    CheckpointError
        Missing, empty, truncated or lying files, and files holding no tensors.
    UnsafeCheckpointError
        The file needs code execution to load and `allow_pickle` is False.

    Examples
    --------
    >>> with open_checkpoint("model.safetensors") as ckpt:  # doctest: +SKIP
    ...     for entry in ckpt.entries:
    ...         x = ckpt.load(entry.name)
    """
    return Checkpoint(os.fspath(path), allow_pickle=allow_pickle)
