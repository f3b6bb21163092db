"""The latent families by name, and :func:`build_model`.

=================  ================================================  =======================
name               posterior / prior                                 module
=================  ================================================  =======================
gaussian           diagonal Gaussian / N(0, I)                       :mod:`.models`
student_t          Student-t (df) / Student-t (df), heavy-tailed     :mod:`.models`
mixture            diagonal Gaussian / learned K-Gaussian mixture    :mod:`.models`
m2                 q(y|x) q(z|x,y) / uniform y, N(0, I) z            :mod:`.m2`
vmf                von Mises-Fisher / uniform on S^{d-1}             :mod:`.hyperspherical`
power_spherical    Power Spherical / uniform on S^{d-1}              :mod:`.hyperspherical`
=================  ================================================  =======================
"""

from __future__ import annotations

import importlib

from ..errors import InputDataError

__all__ = ["FAMILIES", "SPHERICAL_FAMILIES", "build_model", "model_class"]

#: family name -> (module, class name); spherical models are imported on first use.
FAMILIES: dict[str, tuple[str, str]] = {
    "gaussian": ("models", "GaussianVAE"),
    "student_t": ("models", "StudentTVAE"),
    "mixture": ("models", "MixturePriorVAE"),
    "m2": ("m2", "M2VAE"),
    "vmf": ("hyperspherical", "VonMisesFisherVAE"),
    "power_spherical": ("hyperspherical", "PowerSphericalVAE"),
}

SPHERICAL_FAMILIES = frozenset({"vmf", "power_spherical"})


def model_class(family: str) -> type:
    """The model class of a latent family name."""
    if family not in FAMILIES:
        raise InputDataError(f"`family` must be one of {sorted(FAMILIES)}; got {family!r}.")
    module, name = FAMILIES[family]
    return getattr(importlib.import_module(f"{__package__}.{module}"), name)


def build_model(family: str, **options):
    """Instantiate the model of `family` with keyword `options` (see the model classes).

    Unknown options raise :class:`~weightstats.errors.InputDataError` naming them.
    """
    cls = model_class(family)
    try:
        return cls(**options)
    except TypeError as exc:
        raise InputDataError(f"bad option for the {family!r} latent family: {exc}") from None
