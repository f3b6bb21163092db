"""ONNX models: the graph's initializers (optional extra ``weightstats[onnx]``).

The model is parsed with ``load_external_data=False``. Initializers stored in external files are
read only from files inside the model's own directory (no absolute paths, no ``..``, no links
out), after checking offset and length against the file and the declared shape.
"""

from __future__ import annotations

import math
import os

import numpy as np

from ...errors import CheckpointError
from ._base import Reader

__all__ = ["OnnxReader", "try_parse_onnx"]

# TensorProto.DataType -> (torch dtype name, bytes per value)
_ONNX_DTYPES = {
    1: ("float32", 4),
    11: ("float64", 8),
    10: ("float16", 2),
    16: ("bfloat16", 2),
    17: ("float8_e4m3fn", 1),
    18: ("float8_e4m3fnuz", 1),
    19: ("float8_e5m2", 1),
    20: ("float8_e5m2fnuz", 1),
}


def try_parse_onnx(path: str):
    """Return the parsed ``ModelProto`` if `path` is an ONNX model with a graph, else None."""
    try:
        import onnx
    except ImportError:
        return None
    if os.path.getsize(path) >= 2**31:
        return None
    try:
        model = onnx.load(path, load_external_data=False)
    except Exception:
        return None
    if model.ir_version <= 0 or not (len(model.graph.node) or len(model.graph.initializer)):
        return None
    return model


class OnnxReader(Reader):
    """Read the float initializers of an ONNX model."""

    format = "onnx"

    def __init__(self, path: str, model) -> None:
        super().__init__(path)
        self._dir = os.path.realpath(os.path.dirname(os.path.abspath(path)))
        self._init = {t.name: t for t in model.graph.initializer}
        out_last = set()
        for node in model.graph.node:
            if node.op_type == "MatMul" and len(node.input) > 1:
                out_last.add(node.input[1])
            elif node.op_type == "Gemm" and len(node.input) > 1:
                trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
                if not trans_b:
                    out_last.add(node.input[1])
        for name, t in self._init.items():
            shape = tuple(int(d) for d in t.dims)
            if t.data_type not in _ONNX_DTYPES:
                import onnx

                dtype = onnx.helper.tensor_dtype_to_np_dtype(t.data_type).name
            else:
                dtype = _ONNX_DTYPES[t.data_type][0]
            self._add_described(
                name, shape, dtype, math.prod(shape), out_axis=-1 if name in out_last else 0
            )

    def _external_bytes(self, t, nbytes: int) -> bytes:
        info = {e.key: e.value for e in t.external_data}
        location = info.get("location", "")
        target = os.path.realpath(os.path.join(self._dir, location))
        if (
            not location
            or os.path.isabs(location)
            or os.path.commonpath([self._dir, target]) != self._dir
        ):
            raise CheckpointError(
                f"{self.path}: initializer {t.name!r} points to external data {location!r} "
                "outside the model's directory; refused."
            )
        if not os.path.isfile(target):
            raise CheckpointError(
                f"{self.path}: initializer {t.name!r}: external data file {location!r} is missing."
            )
        offset = int(info.get("offset", 0) or 0)
        length = int(info.get("length", nbytes) or nbytes)
        size = os.path.getsize(target)
        if length != nbytes or offset < 0 or offset + length > size:
            raise CheckpointError(
                f"{self.path}: initializer {t.name!r}: external data ({offset}+{length} bytes of "
                f"{size}) does not match its shape ({nbytes} bytes)."
            )
        with open(target, "rb") as fh:
            fh.seek(offset)
            return fh.read(length)

    def read(self, key: str):
        import torch
        from onnx import TensorProto, numpy_helper

        t = self._init[key]
        dtype_name, itemsize = _ONNX_DTYPES[t.data_type]
        shape = tuple(int(d) for d in t.dims)
        nbytes = math.prod(shape) * itemsize
        if t.data_location == TensorProto.EXTERNAL:
            raw = self._external_bytes(t, nbytes)
        elif t.raw_data:
            raw = t.raw_data
        else:
            if dtype_name in ("float32", "float64", "float16"):
                return torch.from_numpy(np.array(numpy_helper.to_array(t)))
            raise CheckpointError(f"{self.path}: initializer {key!r} has no readable data.")
        if len(raw) != nbytes:
            raise CheckpointError(
                f"{self.path}: initializer {key!r} holds {len(raw)} bytes; "
                f"its shape needs {nbytes}."
            )
        return torch.frombuffer(bytearray(raw), dtype=getattr(torch, dtype_name)).reshape(shape)
