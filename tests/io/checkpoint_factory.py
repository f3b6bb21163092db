"""Small synthetic checkpoints in every format, and malformed ones, for the io and CLI tests.

Import from a test file with::

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "io"))
    import checkpoint_factory as cf
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np


def state_dict(seed: int = 0):
    """A small MLP-like state dict with float tensors in layer order plus one int buffer."""
    import torch

    g = torch.Generator().manual_seed(seed)
    return {
        "embed.weight": torch.randn(50, 16, generator=g),
        "layers.0.fc.weight": torch.randn(32, 16, generator=g) * 0.2,
        "layers.0.fc.bias": torch.randn(32, generator=g) * 0.01,
        "layers.0.norm.weight": torch.ones(32),
        "layers.1.fc.weight": torch.distributions.StudentT(3.0).sample((32, 32)) * 0.1,
        "layers.1.fc.bias": torch.randn(32, generator=g) * 0.01,
        "layers.1.bn.num_batches_tracked": torch.tensor(7),
        "head.weight": (torch.rand(10, 32, generator=g) - 0.5) * 0.3,
    }


class Evil:
    """Pickles to a call of ``open(path, 'w')``: loading it creates a file."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def write_safetensors_raw(
    path: Path, header: dict, data: bytes, *, length: int | None = None
) -> Path:
    """Write a safetensors file with a hand-made (possibly lying) header."""
    raw = json.dumps(header).encode()
    n = len(raw) if length is None else length
    path.write_bytes(struct.pack("<Q", n) + raw + data)
    return path


def write_sharded(directory: Path, sd: dict, n_shards: int = 3) -> Path:
    """A Hugging Face style sharded safetensors checkpoint, shards filled in reverse layer order."""
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    names = list(sd)[::-1]  # shard order differs from layer order
    chunks = np.array_split(np.arange(len(names)), n_shards)
    weight_map = {}
    for i, idx in enumerate(chunks):
        shard = f"model-{i + 1:05d}-of-{n_shards:05d}.safetensors"
        part = {names[j]: sd[names[j]].contiguous() for j in idx}
        save_file(part, str(directory / shard))
        weight_map.update({k: shard for k in part})
    index = directory / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return index
