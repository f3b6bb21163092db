"""numpy ``.npy`` and ``.npz`` files, never with ``allow_pickle`` unless opted in.

``.npy`` files are memory-mapped. For ``.npz`` archives only each member's header is read when
the file is opened; a member's values are read when it is analysed.
"""

from __future__ import annotations

import math
import warnings
import zipfile

import numpy as np

from ...errors import CheckpointError, UnsafeCheckpointError
from ._base import UNSAFE_HINT, Reader

__all__ = ["NumpyReader"]


def _header(fh) -> tuple[tuple[int, ...], np.dtype]:
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        shape, _fortran, dtype = np.lib.format.read_array_header_1_0(fh)
    else:
        shape, _fortran, dtype = np.lib.format.read_array_header_2_0(fh)
    return tuple(int(s) for s in shape), dtype


class NumpyReader(Reader):
    """Read a ``.npy`` array (one tensor, named after the file) or an ``.npz`` archive."""

    def __init__(self, path: str, *, archive: bool, allow_pickle: bool = False) -> None:
        super().__init__(path)
        self.format = "npz" if archive else "npy"
        self._allow_pickle = allow_pickle
        self._archive = None
        try:
            if archive:
                self._archive = zipfile.ZipFile(path)
                members = [m for m in self._archive.namelist() if m.endswith(".npy")]
                if not members:
                    raise CheckpointError(f"{path}: the .npz archive holds no arrays.")
                for member in members:
                    with self._archive.open(member) as fh:
                        shape, dtype = _header(fh)
                    self._describe(member[: -len(".npy")], shape, dtype)
            else:
                with open(path, "rb") as fh:
                    shape, dtype = _header(fh)
                self._describe("array", shape, dtype)
        except CheckpointError:
            raise
        except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
            raise CheckpointError(f"{path}: unreadable numpy file ({exc}).") from None

    def _describe(self, key: str, shape: tuple[int, ...], dtype: np.dtype) -> None:
        if dtype.hasobject:
            if not self._allow_pickle:
                raise UnsafeCheckpointError(
                    f"{self.path}: refused: array {key!r} holds Python objects that need "
                    f"unpickling; {UNSAFE_HINT}."
                )
            self.skipped.append((key, "not a tensor (array of Python objects)"))
            return
        self._add_described(key, shape, dtype.name, math.prod(shape))

    def read(self, key: str):
        import torch

        try:
            if self._archive is not None:
                with self._archive.open(key + ".npy") as fh:
                    arr = np.lib.format.read_array(fh, allow_pickle=self._allow_pickle)
            else:
                arr = np.load(self.path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise CheckpointError(f"{self.path}: cannot read array {key!r} ({exc}).") from None
        if not arr.dtype.isnative:
            arr = arr.astype(arr.dtype.newbyteorder("="))
        with warnings.catch_warnings():  # read-only memory map: we never write to it
            warnings.simplefilter("ignore", UserWarning)
            return torch.from_numpy(np.ascontiguousarray(arr))

    def close(self) -> None:
        if self._archive is not None:
            self._archive.close()
            self._archive = None
