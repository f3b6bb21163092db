"""What every format reader provides, and the shared walk over nested state dicts."""

from __future__ import annotations

import math
from typing import Any

from ...errors import CheckpointError
from ..tensors import TensorEntry

__all__ = [
    "Reader",
    "TensorRows",
    "FLOAT_DTYPES",
    "find_state_dict",
    "torch_dtype_name",
    "UNSAFE_HINT",
]

#: Storage dtypes analysed as real values (torch names). Everything else is skipped with a note.
FLOAT_DTYPES = frozenset(
    {
        "float64",
        "float32",
        "float16",
        "bfloat16",
        "float8_e4m3fn",
        "float8_e4m3fnuz",
        "float8_e5m2",
        "float8_e5m2fnuz",
    }
)

#: Keys under which training scripts nest the state dict, most specific first.
STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model", "module", "network", "net")

UNSAFE_HINT = (
    "pass --unsafe-allow-pickle (Python: allow_pickle=True) only if you trust where the file "
    "came from"
)


def torch_dtype_name(dtype: Any) -> str:
    """``torch.float16`` -> ``'float16'``; numpy dtypes by their name."""
    return str(dtype).replace("torch.", "")


class Reader:
    """A checkpoint file opened for reading, one tensor at a time.

    Subclasses fill ``entries`` (in the file's order, names as stored) and ``skipped`` in their
    constructor, and implement :meth:`read`.
    """

    format: str = "?"
    #: True when the file records the model's layer order itself (entries are kept as they are).
    ordered: bool = False

    def __init__(self, path: str) -> None:
        self.path = path
        self.entries: list[TensorEntry] = []
        self.skipped: list[tuple[str, str]] = []

    def read(self, key: str):
        """The tensor stored under `key`, as a CPU ``torch.Tensor`` in its storage dtype."""
        raise NotImplementedError

    def rows(self, key: str) -> "TensorRows":
        """A row source for `key`: slices along axis 0 on demand (see :class:`TensorRows`)."""
        return TensorRows(self.read(key))

    def release(self) -> None:
        """Drop memory maps touched so far (their pages count as resident memory); the next
        read reopens them. Called after each tensor so memory stays near one tensor's size."""

    def close(self) -> None:
        """Release file handles and memory maps."""

    # shared by the readers that see tensors as Python objects
    def _add_tensor(self, key: str, tensor: Any, *, out_axis: int = 0) -> None:
        shape = tuple(int(s) for s in tensor.shape)
        dtype = torch_dtype_name(tensor.dtype)
        numel = math.prod(shape)
        self._add_described(key, shape, dtype, numel, out_axis=out_axis)

    def _add_described(
        self,
        key: str,
        shape: tuple[int, ...],
        dtype: str,
        numel: int,
        *,
        out_axis: int = 0,
        source: str | None = None,
    ) -> None:
        if dtype not in FLOAT_DTYPES:
            self.skipped.append((key, f"{dtype} values are not analysed (only floating point)"))
        elif numel == 0:
            self.skipped.append((key, f"empty tensor of shape {list(shape)} (a placeholder)"))
        else:
            self.entries.append(
                TensorEntry(key, shape, dtype, numel, source or self.path, key, out_axis)
            )


class TensorRows:
    """Row source over a tensor already at hand (memory-mapped or in memory).

    ``rows(start, stop)`` returns ``tensor[start:stop]``; format readers that can read part of
    a tensor without materialising it (safetensors) provide their own row source.
    """

    def __init__(self, tensor: Any) -> None:
        self._t = tensor
        self.shape = tuple(int(s) for s in tensor.shape)

    def rows(self, start: int, stop: int):
        return self._t[start:stop] if self._t.dim() else self._t.reshape(1)


def _is_tensor(obj: Any) -> bool:
    return (
        type(obj).__module__.split(".")[0] == "torch"
        and hasattr(obj, "dtype")
        and hasattr(obj, "shape")
    )


def _has_tensors(obj: Any, depth: int = 0) -> bool:
    if _is_tensor(obj):
        return True
    if isinstance(obj, dict) and depth < 4:
        return any(_has_tensors(v, depth + 1) for v in obj.values())
    return False


def find_state_dict(obj: Any, path: str) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Locate the state dict inside a loaded checkpoint object and flatten it.

    Parameters
    ----------
    obj : object
        What ``torch.load`` returned.
    path : str
        The file, for error messages.

    Returns
    -------
    tensors : dict
        ``{dotted_name: value}`` in order of appearance; values may be non-tensors (the caller
        lists those as skipped).
    skipped : list of (name, reason)
        Top-level entries outside the chosen state dict.

    Raises
    ------
    CheckpointError
        If `obj` is not a dict or holds no tensor at all.
    """
    if _is_tensor(obj):
        return {"tensor": obj}, []
    if not isinstance(obj, dict):
        raise CheckpointError(
            f"{path}: holds a {type(obj).__name__}, not a state dict (a dict of tensors); "
            "save model.state_dict() instead of the model."
        )
    if not obj:
        raise CheckpointError(f"{path}: the checkpoint is an empty dict; it holds no tensors.")
    skipped: list[tuple[str, str]] = []
    current: dict[str, Any] = obj
    # descend through wrappers such as {"state_dict": {...}} or {"model": {"module": {...}}}
    for _ in range(4):
        key = next(
            (
                k
                for k in STATE_DICT_KEYS
                if isinstance(current.get(k), dict) and _has_tensors(current[k])
            ),
            None,
        )
        if key is None:
            break
        skipped.extend(
            (str(k), f"outside the state dict (a checkpoint {type(v).__name__}, not a weight)")
            for k, v in current.items()
            if k != key
        )
        current = current[key]
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any, depth: int) -> None:
        if isinstance(value, dict) and not _is_tensor(value) and depth < 8:
            if not value:
                flat[prefix or "<root>"] = value
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v, depth + 1)
        else:
            flat[prefix] = value

    walk("", current, 0)
    if not any(_is_tensor(v) for v in flat.values()):
        raise CheckpointError(
            f"{path}: no tensors found (entries: {', '.join(list(map(str, flat))[:5])}); "
            "is this a checkpoint of weights?"
        )
    return flat, skipped
