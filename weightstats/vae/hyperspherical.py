"""Hyperspherical VAEs (Davidson et al. 2018) with a von Mises-Fisher or Power Spherical posterior.

z lives on the unit sphere S^{d-1} of R^d (``latent_dim = d`` is the *ambient* dimension, as in
Davidson et al.'s tables), the prior is uniform on S^{d-1} and the KL to it has a closed form
(``kl_to_uniform()`` of :mod:`weightstats.vae.spherical`). The encoder outputs an unnormalised
direction (d values) and one concentration, ``kappa = softplus(.) + 1`` as in Davidson et al.'s
code. The Power Spherical variant (De Cao & Aziz 2020) needs no rejection sampler.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from ..errors import InputDataError
from .models import BaseVAE
from .spherical import HypersphericalUniform, PowerSpherical, VonMisesFisher

__all__ = ["PowerSphericalVAE", "SphericalVAE", "VonMisesFisherVAE"]


class SphericalVAE(BaseVAE):
    """Shared part of the hyperspherical VAEs; subclasses set the posterior distribution."""

    _distribution: type = VonMisesFisher

    def __init__(self, *, max_concentration: float = 1e4, **kwargs) -> None:
        latent_dim = int(kwargs.get("latent_dim", 2))
        if latent_dim < 2:
            raise InputDataError(
                f"`latent_dim` must be at least 2 for a spherical latent (S^{{d-1}} in R^d); "
                f"got {latent_dim}."
            )
        self.max_concentration = float(max_concentration)
        super().__init__(**kwargs)

    def _encoder_out(self) -> int:
        return self.latent_dim + 1

    def posterior(self, x: torch.Tensor):
        h = self.encoder(x)
        loc = F.normalize(h[..., : self.latent_dim], dim=-1, eps=1e-8)
        kappa = (F.softplus(h[..., self.latent_dim]) + 1.0).clamp(max=self.max_concentration)
        return self._distribution(loc, kappa, validate_args=False)

    @property
    def prior(self) -> HypersphericalUniform:
        return HypersphericalUniform(self.latent_dim)

    def prior_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return torch.full(z.shape[:-1], -self.prior.log_surface_area(), dtype=z.dtype)

    def prior_sample(self, n: int, *, generator=None) -> torch.Tensor:
        return self.prior.sample((n,), generator=generator)

    def kl(self, q, z: torch.Tensor) -> torch.Tensor:
        return q.kl_to_uniform()

    @torch.no_grad()
    def posterior_mean(self, x: torch.Tensor) -> torch.Tensor:
        """The mean direction of q(z|x) (a unit vector), used for active units."""
        return self.posterior(x).loc

    @torch.no_grad()
    def latent_outputs(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        q = self.posterior(x)
        return {"mu": q.loc, "kappa": q.concentration, "z": q.sample()}


class VonMisesFisherVAE(SphericalVAE):
    """Davidson et al. (2018): vMF posterior, uniform prior on S^{d-1}, closed-form KL."""

    family = "vmf"
    _distribution = VonMisesFisher


class PowerSphericalVAE(SphericalVAE):
    """De Cao & Aziz (2020): Power Spherical posterior, uniform prior on S^{d-1}."""

    family = "power_spherical"
    _distribution = PowerSpherical
