"""Synthetic data with a known latent geometry: points on a sphere through a fixed decoder.

Davidson et al. (2018, sec. 5.1) show the hyperspherical VAE's advantage on data whose true
latent lives on a circle; this module makes such data without downloads. A true latent
``z`` is drawn uniformly on the unit sphere S^{sphere_dim - 1} of R^{sphere_dim} and pushed
through a fixed random two-layer network ``x = sigmoid(W2 tanh(W1 z + b1) + b2)`` to
``output_dim`` values in (0, 1), so the same Bernoulli likelihood as on the digits applies.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import InputDataError

__all__ = ["SphereData", "make_sphere_data"]


@dataclass(frozen=True)
class SphereData:
    """Observations generated from a latent on a sphere.

    Attributes
    ----------
    x_train, x_test : torch.Tensor
        float32 observations in (0, 1), shape (n, output_dim).
    z_train, z_test : torch.Tensor
        float32 true latents on the unit sphere, shape (n, sphere_dim).
    sphere_dim : int
        Ambient dimension of the true latent (2: a circle).
    seed : int
        Seed that made the data and the decoder.
    """

    x_train: torch.Tensor
    x_test: torch.Tensor
    z_train: torch.Tensor
    z_test: torch.Tensor
    sphere_dim: int
    seed: int

    def __repr__(self) -> str:
        return (
            f"SphereData(train={tuple(self.x_train.shape)}, test={tuple(self.x_test.shape)}, "
            f"latent=S^{self.sphere_dim - 1}, seed={self.seed})"
        )


def make_sphere_data(
    *,
    n_train: int = 1500,
    n_test: int = 500,
    sphere_dim: int = 2,
    output_dim: int = 64,
    hidden: int = 64,
    gain: float = 3.0,
    seed: int = 0,
) -> SphereData:
    """Sample points uniformly on a sphere and push them through a fixed random decoder.

    Parameters
    ----------
    n_train, n_test : int
        Numbers of training and test examples.
    sphere_dim : int
        Ambient dimension of the true latent; 2 gives a circle, 3 the 2-sphere.
    output_dim : int
        Number of observed values per example (64, like the 8x8 digits).
    hidden : int
        Width of the decoder's hidden layer.
    gain : float
        Scale of the decoder's weights; larger values give a more curved embedding.
    seed : int
        Seed of numpy's generator for the latents and the decoder weights.

    Returns
    -------
    SphereData
    """
    for name, value, low in (
        ("n_train", n_train, 1),
        ("n_test", n_test, 1),
        ("sphere_dim", sphere_dim, 2),
        ("output_dim", output_dim, 1),
        ("hidden", hidden, 1),
    ):
        if int(value) != value or value < low:
            raise InputDataError(f"`{name}` must be an integer of at least {low}; got {value!r}.")
    rng = np.random.default_rng(seed)
    w1 = rng.normal(0.0, gain / np.sqrt(sphere_dim), size=(sphere_dim, hidden))
    b1 = rng.normal(0.0, 0.5, size=hidden)
    w2 = rng.normal(0.0, gain / np.sqrt(hidden), size=(hidden, output_dim))
    b2 = rng.normal(0.0, 0.5, size=output_dim)

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        z = rng.normal(size=(n, sphere_dim))
        z /= np.linalg.norm(z, axis=1, keepdims=True)
        x = 1.0 / (1.0 + np.exp(-(np.tanh(z @ w1 + b1) @ w2 + b2)))
        return torch.from_numpy(x.astype(np.float32)), torch.from_numpy(z.astype(np.float32))

    x_train, z_train = draw(int(n_train))
    x_test, z_test = draw(int(n_test))
    return SphereData(x_train, x_test, z_train, z_test, int(sphere_dim), int(seed))
