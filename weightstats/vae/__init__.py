"""Reference VAEs with different latents, their training, and the latent comparison.

Modules: :mod:`.models` (Gaussian, Student-t, mixture prior), :mod:`.m2` (semi-supervised M2),
:mod:`.hyperspherical` (vMF and Power Spherical, built on :mod:`.spherical`), :mod:`.families`
(name -> model), :mod:`.train` (seeded CPU training), :mod:`.iwae` (importance-weighted bound),
:mod:`.marginal` (KL of the aggregate posterior from the encoder's densities),
:mod:`.metrics` (numpy kernels: MMD, Rayleigh, k-NN KL, active units, cluster accuracy),
:mod:`.data` (synthetic sphere data) and :mod:`.compare` (the grid behind
``weightstats vae compare``).
"""

from __future__ import annotations

from .data import SphereData, make_sphere_data
from .families import FAMILIES, build_model
from .iwae import iwae_bound, iwae_nll
from .marginal import aggregate_kl
from .spherical import (
    HypersphericalUniform,
    PowerSpherical,
    VonMisesFisher,
    bessel_ratio,
    log_bessel_iv,
)
from .train import TrainResult, train_vae

__all__ = [
    "FAMILIES",
    "HypersphericalUniform",
    "PowerSpherical",
    "VonMisesFisher",
    "bessel_ratio",
    "log_bessel_iv",
    "SphereData",
    "TrainResult",
    "aggregate_kl",
    "build_model",
    "iwae_bound",
    "iwae_nll",
    "make_sphere_data",
    "train_vae",
]
