"""Keras weights (``.h5`` and ``.keras``) read with h5py, never by loading the model.

Loading a Keras model can run Lambda-layer code; reading its HDF5 datasets cannot. A ``.keras``
file is a zip whose ``model.weights.h5`` member is read in place. Kernels are stored
``(..., in, out)``, so entries carry ``out_axis=-1``. Optimizer state is listed as skipped.
"""

from __future__ import annotations

import math
import zipfile

from ...errors import CheckpointError
from ._base import Reader

__all__ = ["KerasReader"]


class KerasReader(Reader):
    """Read every float dataset of a Keras HDF5 weights file."""

    def __init__(self, path: str, *, zipped: bool) -> None:
        super().__init__(path)
        try:
            import h5py
        except ImportError:
            raise CheckpointError(
                f"{path}: reading Keras weights needs h5py; pip install 'weightstats[keras]'."
            ) from None
        self.format = "keras" if zipped else "hdf5"
        self._zip = None
        try:
            if zipped:
                self._zip = zipfile.ZipFile(path)
                member = next((n for n in self._zip.namelist() if n.endswith(".weights.h5")), None)
                if member is None:
                    raise CheckpointError(f"{path}: the .keras archive has no model.weights.h5.")
                self._fh = self._zip.open(member)
                self._h5 = h5py.File(self._fh, "r")
            else:
                self._h5 = h5py.File(path, "r")
        except CheckpointError:
            raise
        except Exception as exc:
            raise CheckpointError(f"{path}: unreadable HDF5 file ({exc}).") from None
        names: list[str] = []
        self._h5.visititems(lambda name, obj: names.append(name) if hasattr(obj, "dtype") else None)
        root = self._h5.get("model_weights", self._h5)
        order = [
            n.decode() if isinstance(n, bytes) else str(n)
            for n in root.attrs.get("layer_names", [])
        ]
        if order:  # Keras 2 records the layers in model order
            self.ordered = True
            rank = {layer: i for i, layer in enumerate(order)}
            names.sort(
                key=lambda n: rank.get(
                    n.split("/")[1] if n.startswith("model_weights/") else n.split("/")[0],
                    len(rank),
                )
            )
        for name in names:
            dataset = self._h5[name]
            shown = name[len("model_weights/") :] if name.startswith("model_weights/") else name
            if name.split("/")[0] in ("optimizer_weights", "optimizer"):
                self.skipped.append((shown, "optimizer state, not a weight"))
                continue
            shape = tuple(int(s) for s in dataset.shape)
            self._add_described(name, shape, dataset.dtype.name, math.prod(shape), out_axis=-1)
        self.entries = [
            type(e)(
                e.name[len("model_weights/") :] if e.name.startswith("model_weights/") else e.name,
                e.shape,
                e.dtype,
                e.numel,
                e.source,
                e.key,
                e.out_axis,
            )
            for e in self.entries
        ]

    def read(self, key: str):
        import numpy as np
        import torch

        return torch.from_numpy(np.ascontiguousarray(self._h5[key][()]))

    def close(self) -> None:
        for obj in (getattr(self, "_h5", None), getattr(self, "_fh", None), self._zip):
            if obj is not None:
                obj.close()
