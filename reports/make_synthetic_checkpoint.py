"""Write a small safetensors checkpoint whose tensors have known shapes, one per verdict.

Used to regenerate ``reports/synthetic_shapes.html`` (see reports/README.md)::

    .venv/bin/python reports/make_synthetic_checkpoint.py /tmp/synthetic_shapes.safetensors

Names follow PyTorch's ``nn.Sequential`` so roles and fan-in are inferred as for a real model.
"""

from __future__ import annotations

import sys

import numpy as np
from safetensors.numpy import save_file


def tensors(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    # 0: trained-looking Gaussian weights
    out["net.0.weight"] = rng.normal(0.0, 0.05, size=(256, 512))
    out["net.0.bias"] = rng.normal(0.0, 0.02, size=256)
    # 2: Student t with 3 degrees of freedom: heavy-tailed in every unit
    out["net.2.weight"] = 0.03 * rng.standard_t(3, size=(256, 256))
    out["net.2.bias"] = rng.normal(0.0, 0.02, size=256)
    # 4: units with log-normal scales: a scale mixture of Gaussians
    scales = np.exp(rng.normal(0.0, 0.5, size=(256, 1)))
    out["net.4.weight"] = 0.04 * scales * rng.normal(size=(256, 256))
    out["net.4.bias"] = np.abs(rng.normal(0.0, 0.02, size=256)) ** 1.5  # skewed
    # 6: two groups of units with different means: a two-mode mixture
    shift = np.where(rng.random((128, 1)) < 0.5, -0.12, 0.12)
    out["net.6.weight"] = shift + rng.normal(0.0, 0.03, size=(128, 256))
    out["net.6.bias"] = np.zeros(128)
    # 8: untrained Kaiming-uniform layer, U(-1/sqrt(fan_in), 1/sqrt(fan_in)): light-tailed
    bound = 1 / np.sqrt(128)
    out["net.8.weight"] = rng.uniform(-bound, bound, size=(10, 128))
    return {k: v.astype(np.float32) for k, v in out.items()}


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: make_synthetic_checkpoint.py OUT.safetensors")
    save_file(tensors(), sys.argv[1])
