"""safetensors files, validated before the library sees them.

The header is checked by hand first (length bound, JSON, known dtypes, shapes, offsets contiguous
and inside the file, ``prod(shape) * itemsize == end - begin``), so a lying or truncated file
fails with one clear line instead of a huge allocation or an opaque error. Values are then read
through ``safetensors.safe_open(framework="pt")`` (memory-mapped; torch has bfloat16 and float8).
"""

from __future__ import annotations

import json
import math
import os
import struct
from typing import Any

from ...errors import CheckpointError
from ._base import Reader

__all__ = ["SafetensorsReader", "read_header", "SAFETENSORS_DTYPES"]

#: safetensors dtype -> (torch dtype name, bytes per value).
SAFETENSORS_DTYPES: dict[str, tuple[str, float]] = {
    "F64": ("float64", 8),
    "F32": ("float32", 4),
    "F16": ("float16", 2),
    "BF16": ("bfloat16", 2),
    "F8_E4M3": ("float8_e4m3fn", 1),
    "F8_E4M3FNUZ": ("float8_e4m3fnuz", 1),
    "F8_E5M2": ("float8_e5m2", 1),
    "F8_E5M2FNUZ": ("float8_e5m2fnuz", 1),
    "F8_E8M0": ("float8_e8m0fnu", 1),
    "F4": ("float4_e2m1fn_x2", 0.5),
    "I64": ("int64", 8),
    "I32": ("int32", 4),
    "I16": ("int16", 2),
    "I8": ("int8", 1),
    "U64": ("uint64", 8),
    "U32": ("uint32", 4),
    "U16": ("uint16", 2),
    "U8": ("uint8", 1),
    "BOOL": ("bool", 1),
    "C64": ("complex64", 8),
}

#: The library's own bound on the header (100 MB).
MAX_HEADER_BYTES = 100_000_000


def read_header(path: str) -> tuple[dict[str, Any], int]:
    """Read and validate a safetensors header.

    Returns
    -------
    tensors : dict
        ``{name: {"dtype", "shape", "data_offsets"}}`` in file order (``__metadata__`` removed).
    data_start : int
        Byte offset where the data section begins.

    Raises
    ------
    CheckpointError
        With one line saying what is wrong, for every way the header can lie.
    """
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{path}: truncated safetensors file ({size} bytes).")
        (n,) = struct.unpack("<Q", head)
        if n > MAX_HEADER_BYTES:
            raise CheckpointError(
                f"{path}: safetensors header claims {n} bytes (limit {MAX_HEADER_BYTES}); "
                "the file is corrupt."
            )
        if 8 + n > size:
            raise CheckpointError(
                f"{path}: truncated safetensors file: the header needs {n} bytes but the file "
                f"has {size - 8} after the length."
            )
        raw = fh.read(n)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: safetensors header is not valid JSON ({exc}).") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: safetensors header is not a JSON object.")
    header.pop("__metadata__", None)
    data_len = size - 8 - n
    spans = []
    for name, info in header.items():
        if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= set(info):
            raise CheckpointError(
                f"{path}: tensor {name!r}: header entry needs dtype, shape and data_offsets."
            )
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if dtype not in SAFETENSORS_DTYPES:
            raise CheckpointError(
                f"{path}: tensor {name!r} has unknown dtype {dtype!r}; known: "
                f"{', '.join(SAFETENSORS_DTYPES)}."
            )
        if not isinstance(shape, list) or not all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape
        ):
            raise CheckpointError(
                f"{path}: tensor {name!r} has shape {shape!r}; a list of non-negative integers "
                "is needed."
            )
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
            or not 0 <= offsets[0] <= offsets[1]
        ):
            raise CheckpointError(f"{path}: tensor {name!r} has bad data_offsets {offsets!r}.")
        if offsets[1] > data_len:
            raise CheckpointError(
                f"{path}: tensor {name!r} ends at byte {offsets[1]} of the data section, but "
                f"the file holds only {data_len} data bytes; the file is truncated or lies."
            )
        expected = math.prod(shape) * SAFETENSORS_DTYPES[dtype][1]
        if expected != offsets[1] - offsets[0]:
            raise CheckpointError(
                f"{path}: tensor {name!r}: shape {shape} of {dtype} needs {expected:g} bytes but "
                f"its offsets span {offsets[1] - offsets[0]}; the header lies."
            )
        spans.append((offsets[0], offsets[1], name))
    spans.sort()
    position = 0
    for begin, end, name in spans:
        if begin != position:
            raise CheckpointError(
                f"{path}: tensor {name!r} starts at byte {begin} but the previous one ends at "
                f"{position}; offsets must be contiguous."
            )
        position = end
    if position != data_len:
        raise CheckpointError(
            f"{path}: the tensors cover {position} data bytes but the file has {data_len}; "
            "it is truncated or has trailing data."
        )
    return header, 8 + n


class SafetensorsReader(Reader):
    """Read a validated safetensors file one tensor at a time (memory-mapped)."""

    format = "safetensors"

    def __init__(self, path: str) -> None:
        super().__init__(path)
        header, _ = read_header(path)
        for name, info in header.items():
            shape = tuple(info["shape"])
            self._add_described(name, shape, SAFETENSORS_DTYPES[info["dtype"]][0], math.prod(shape))
        self._handle = None

    def rows(self, key: str) -> "_SliceRows":
        return _SliceRows(self._open().get_slice(key))

    def read(self, key: str):
        return self._open().get_tensor(key)

    def _open(self):
        if self._handle is None:
            from safetensors import safe_open

            try:
                self._handle = safe_open(self.path, framework="pt", device="cpu")
            except Exception as exc:  # the library's own checks, should ours miss one
                raise CheckpointError(
                    f"{self.path}: safetensors refused the file ({exc})."
                ) from None
        return self._handle

    def release(self) -> None:
        self._handle = None  # unmaps the file once the last slice view is gone

    def close(self) -> None:
        self._handle = None


class _SliceRows:
    """Rows of one safetensors tensor read through ``get_slice``: only the requested slice is
    copied out of the memory map, so analysing a tensor never holds a second full copy."""

    def __init__(self, view) -> None:
        self._view = view
        self.shape = tuple(int(s) for s in view.get_shape())

    def rows(self, start: int, stop: int):
        if not self.shape:
            return self._view[:].reshape(1)
        return self._view[start:stop]
