"""PyTorch checkpoints: zip files (``.pt``, ``.pth``, ``.bin``, Lightning ``.ckpt``) and legacy
pickles.

Everything goes through ``torch.load(weights_only=True)``, whose restricted unpickler builds
tensors, dicts, lists and numbers but never calls code named in the file; zip files are also
memory-mapped (``mmap=True``), so opening a checkpoint costs almost no memory and each tensor's
pages are read when it is analysed. A file that needs anything else is refused with
:class:`~weightstats.errors.UnsafeCheckpointError` unless ``allow_pickle=True``.
"""

from __future__ import annotations

import pickle
import re
import warnings
from typing import Any

import numpy as np

from ...errors import CheckpointError, UnsafeCheckpointError
from ._base import UNSAFE_HINT, Reader, _is_tensor, find_state_dict

__all__ = ["TorchReader"]


def _why_unsafe(exc: BaseException) -> str:
    text = str(exc)
    match = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if match:
        return f"it needs code `{match.group(1)}` to load"
    match = re.search(r"WeightsUnpickler error:\s*([^\n]+)", text)
    detail = f" ({match.group(1).strip()})" if match else ""
    return f"the safe unpickler cannot build its objects{detail}"


class TorchReader(Reader):
    """Read a PyTorch zip or legacy-pickle checkpoint safely.

    Parameters
    ----------
    path : str
        The file.
    zip_format : bool
        True for the zip container (memory-mapped), False for a legacy pickle stream.
    allow_pickle : bool
        Use the full unpickler (runs code from the file). Only for trusted files.
    """

    def __init__(self, path: str, *, zip_format: bool, allow_pickle: bool = False) -> None:
        super().__init__(path)
        import torch

        self.format = "torch-zip" if zip_format else "torch-pickle"
        try:
            with warnings.catch_warnings():  # protocol notes; errors below say what matters
                warnings.simplefilter("ignore")
                obj = torch.load(
                    path, map_location="cpu", weights_only=not allow_pickle, mmap=zip_format
                )
        except pickle.UnpicklingError as exc:
            if not allow_pickle and "weights only" in str(exc).lower():
                raise UnsafeCheckpointError(
                    f"{path}: refused to unpickle: {_why_unsafe(exc)}, and running code from a "
                    f"checkpoint is unsafe; {UNSAFE_HINT}."
                ) from None
            raise CheckpointError(
                f"{path}: not a readable PyTorch pickle ({_first_line(exc)})."
            ) from None
        except Exception as exc:  # torch raises RuntimeError/EOFError/... for corrupt files
            obj = self._fallback(path, exc, allow_pickle=allow_pickle, zip_format=zip_format)
        self._zip = zip_format
        self._allow_pickle = allow_pickle
        self._tensors: dict[str, Any] = {}
        flat, self.skipped = find_state_dict(obj, path)
        for key, value in flat.items():
            if isinstance(value, np.ndarray) and allow_pickle:
                value = torch.from_numpy(value)
            if _is_tensor(value):
                if getattr(value, "is_sparse", False) or value.is_complex():
                    self.skipped.append((key, "sparse or complex tensor; not analysed"))
                    continue
                self._tensors[key] = value
                self._add_tensor(key, value)
            else:
                self.skipped.append((key, f"not a tensor ({type(value).__name__})"))

    @staticmethod
    def _fallback(path: str, exc: BaseException, *, allow_pickle: bool, zip_format: bool) -> Any:
        if allow_pickle and not zip_format:
            # a plain pickle (not written by torch.save); the user trusts it explicitly
            try:
                with open(path, "rb") as fh:
                    return pickle.load(fh)  # noqa: S301 - explicit opt-in
            except Exception as exc2:
                raise CheckpointError(f"{path}: unreadable pickle ({_first_line(exc2)}).") from None
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint ({_first_line(exc)}); "
            "is the file truncated or corrupt?"
        ) from None

    def read(self, key: str):
        if not self._tensors:  # released: map the file again (only the pickle is read)
            import torch

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                obj = torch.load(
                    self.path, map_location="cpu", weights_only=not self._allow_pickle, mmap=True
                )
            flat, _ = find_state_dict(obj, self.path)
            self._tensors = {k: v for k, v in flat.items() if _is_tensor(v)}
        return self._tensors[key]

    def release(self) -> None:
        # legacy pickles live in memory (nothing to unmap); a trusted full unpickle is not
        # repeated, since it may run code
        if self._zip and not self._allow_pickle:
            self._tensors = {}

    def close(self) -> None:
        self._tensors = {}


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split(".")[0].split())
    return text[:200] or type(exc).__name__
