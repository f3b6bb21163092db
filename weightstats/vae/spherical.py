"""Distributions on the unit hypersphere S^{d-1} for hyperspherical VAEs.

* :class:`VonMisesFisher` -- the posterior of the hyperspherical VAE (Davidson et al., 2018),
  sampled with Wood's (1994) rejection sampler and given an *unbiased* pathwise gradient by
  implicit reparameterisation (Figurnov et al., 2018); derivation in :meth:`VonMisesFisher.rsample`.
* :class:`PowerSpherical` -- the sampler-free alternative of De Cao & Aziz (2020).
* :class:`HypersphericalUniform` -- the prior; ``kl_to_uniform()`` on both posteriors gives the
  closed-form KL, and :func:`torch.distributions.kl_divergence` is registered for the pairs.

``dim`` is always the *ambient* dimension d: samples are d-vectors of unit norm. Bessel functions
come from :mod:`weightstats.vae._bessel` (finite for concentrations up to 1e4 and beyond, d up
to 64 and beyond, forward and backward); internal arithmetic is float64 and results come back in
the dtype of ``loc``. Randomness comes only from the ``generator`` passed to ``rsample``/``sample``
(torch's global generator when it is None).

References
----------
A. T. A. Wood (1994), Simulation of the von Mises Fisher distribution, Commun. Stat. Simul. 23.
T. R. Davidson, L. Falorsi, N. De Cao, T. Kipf, J. M. Tomczak (2018), Hyperspherical
variational auto-encoders, UAI.
C. A. Naesseth, F. J. R. Ruiz, S. W. Linderman, D. M. Blei (2017), Reparameterization gradients
through acceptance-rejection sampling algorithms, AISTATS.
M. Figurnov, S. Mohamed, A. Mnih (2018), Implicit reparameterization gradients, NeurIPS.
N. De Cao, W. Aziz (2020), The Power Spherical distribution, ICML INNF+ workshop.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import torch
from torch.distributions import Distribution, constraints
from torch.distributions.kl import register_kl

from ..errors import InputDataError
from ._bessel import bessel_ratio, log_bessel_iv, log_bessel_iv_reduced, log_sphere_area
from ._wood import _ImplicitAngle, _wood_angle, _wood_eps

__all__ = [
    "HypersphericalUniform",
    "PowerSpherical",
    "VonMisesFisher",
    "bessel_ratio",
    "log_bessel_iv",
]

_F64 = torch.float64
_F64 = torch.float64


# ---------------------------------------------------------------------------------------------
# validation and geometry shared by the distributions
# ---------------------------------------------------------------------------------------------


def _default_validate(validate_args: bool | None) -> bool:
    return Distribution._validate_args if validate_args is None else bool(validate_args)


def _params(loc, concentration, cls: str, validate: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Check `loc` (..., d) unit vectors and `concentration` > 0; broadcast to one batch shape."""
    if not torch.is_tensor(loc) or not loc.is_floating_point():
        raise InputDataError(f"{cls}: `loc` must be a floating-point torch tensor of unit vectors.")
    if loc.dim() < 1 or loc.shape[-1] < 2:
        raise InputDataError(
            f"{cls}: `loc` must have shape (..., d) with d >= 2; got {tuple(loc.shape)}."
        )
    if not torch.is_tensor(concentration):
        concentration = torch.as_tensor(concentration, dtype=loc.dtype, device=loc.device)
    if not concentration.is_floating_point():
        concentration = concentration.to(loc.dtype)
    # A (..., 1) concentration, the natural output of a Linear(..., 1) head, means (...).
    if concentration.dim() == loc.dim() and concentration.shape[-1] == 1:
        concentration = concentration.squeeze(-1)
    try:
        batch = torch.broadcast_shapes(loc.shape[:-1], concentration.shape)
    except RuntimeError:
        raise InputDataError(
            f"{cls}: `concentration` of shape {tuple(concentration.shape)} does not broadcast "
            f"with the batch shape {tuple(loc.shape[:-1])} of `loc`."
        ) from None
    if validate:
        k = concentration.detach()
        if not bool(torch.isfinite(k).all()) or bool((k <= 0).any()):
            raise InputDataError(
                f"{cls}: `concentration` must be finite and > 0; got min {float(k.min()):.6g}, "
                f"max {float(k.max()):.6g}. For concentration 0 use HypersphericalUniform(dim)."
            )
        norms = loc.detach().to(_F64).norm(dim=-1)
        tol = max(1e-6, 100 * torch.finfo(loc.dtype).eps)
        if not bool(torch.isfinite(norms).all()) or bool(((norms - 1).abs() > tol).any()):
            raise InputDataError(
                f"{cls}: `loc` must hold unit vectors along its last dimension; norms range "
                f"{float(norms.min()):.6g} to {float(norms.max()):.6g}. Normalise it with "
                "torch.nn.functional.normalize(loc, dim=-1)."
            )
    loc = loc.expand(batch + loc.shape[-1:])
    return loc, concentration.to(loc.dtype).expand(batch)


def _check_points(x: torch.Tensor, dim: int, cls: str, validate: bool) -> torch.Tensor:
    if not torch.is_tensor(x) or x.dim() < 1 or x.shape[-1] != dim:
        shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
        raise InputDataError(f"{cls}.log_prob: `x` must have shape (..., {dim}); got {shape}.")
    if validate:
        norms = x.detach().to(_F64).norm(dim=-1)
        tol = max(1e-6, 100 * torch.finfo(x.dtype).eps if x.is_floating_point() else 1e-6)
        if bool(((norms - 1).abs() > tol).any()):
            raise InputDataError(
                f"{cls}.log_prob: `x` must be unit vectors (norms range {float(norms.min()):.6g} "
                f"to {float(norms.max()):.6g}); the density lives on the sphere."
            )
    return x


def _uniform_directions(shape, dim: int, generator, device) -> torch.Tensor:
    """Uniform points on S^{dim-1} (float64) as normalised standard normal vectors."""
    g = torch.randn(tuple(shape) + (dim,), generator=generator, dtype=_F64, device=device)
    return g / g.norm(dim=-1, keepdim=True)


def _from_north_pole(cos_t: torch.Tensor, sin_t: torch.Tensor, loc: torch.Tensor, generator):
    """Map points at angle t from e1 (with a uniform tangent direction) to points around `loc`.

    The standard point is ``y = (cos t, sin t * v)`` with v uniform on S^{d-2}. It is moved by an
    orthogonal Q with ``Q e1 = loc``: Q = sigma * H_u, the Householder reflection along
    ``u = e1 - sigma * loc`` times sigma = +1 if loc_1 <= 0 else -1, so that ``|u|^2 >= 2`` and no
    division by a vanishing norm occurs (the reflection of Davidson et al. divides by
    ``|e1 - loc|``, which is 0 at loc = e1). Any orthogonal Q with Q e1 = loc is valid because
    the distributions are invariant under rotations about their mean direction.
    """
    d = loc.shape[-1]
    v = _uniform_directions(cos_t.shape, d - 1, generator, loc.device)
    y = torch.cat([cos_t.unsqueeze(-1), sin_t.unsqueeze(-1) * v], dim=-1)
    mu = loc.to(_F64).expand(y.shape)
    sigma = torch.where(mu[..., :1] > 0, -1.0, 1.0).to(_F64)
    u = -sigma * mu
    u = torch.cat([u[..., :1] + 1.0, u[..., 1:]], dim=-1)
    hy = y - 2.0 * u * (u * y).sum(-1, keepdim=True) / (u * u).sum(-1, keepdim=True)
    return (sigma * hy).to(loc.dtype)


# ---------------------------------------------------------------------------------------------
# distributions
# ---------------------------------------------------------------------------------------------


class VonMisesFisher(Distribution):
    r"""von Mises-Fisher distribution on S^{d-1}: density ``C_d(kappa) exp(kappa loc^T x)``.

    ``log C_d(kappa) = (d/2 - 1) log kappa - (d/2) log(2 pi) - log I_{d/2-1}(kappa)``.

    Parameters
    ----------
    loc : torch.Tensor, shape (..., d)
        Mean directions, unit vectors (d >= 2).
    concentration : torch.Tensor or float, shape (...) or (..., 1)
        kappa > 0, broadcast against ``loc.shape[:-1]``; a trailing axis of size 1 is dropped.
    validate_args : bool, optional
        Check that `loc` has unit norm and `concentration` is finite and positive (raising
        :class:`~weightstats.errors.InputDataError`); defaults to torch's setting (on).

    Attributes
    ----------
    loc, concentration : torch.Tensor
        Broadcast to ``batch_shape + (d,)`` and ``batch_shape``.
    dim : int
        The ambient dimension d.

    Examples
    --------
    >>> import torch
    >>> q = VonMisesFisher(torch.tensor([0.0, 0.0, 1.0]), torch.tensor(10.0))
    >>> z = q.rsample((4,), generator=torch.Generator().manual_seed(0))
    >>> z.shape, q.kl_to_uniform().shape
    (torch.Size([4, 3]), torch.Size([]))
    """

    arg_constraints: ClassVar[dict] = {}
    has_rsample = True

    def __init__(self, loc, concentration, *, validate_args: bool | None = None):
        validate = _default_validate(validate_args)
        self.loc, self.concentration = _params(loc, concentration, "VonMisesFisher", validate)
        self.dim = int(self.loc.shape[-1])
        self._check = validate
        super().__init__(self.concentration.shape, self.loc.shape[-1:], validate_args=False)

    def __repr__(self) -> str:
        return (
            f"VonMisesFisher(dim={self.dim}, batch_shape={tuple(self.batch_shape)}, "
            f"dtype={self.loc.dtype})"
        )

    @property
    def _order(self) -> float:
        return self.dim / 2 - 1

    @property
    def support(self):  # the sphere; torch has no constraint for it
        return constraints.real_vector

    def _log_normalizer(self) -> torch.Tensor:
        """log C_d(kappa) in float64."""
        k = self.concentration.to(_F64)
        v = self._order
        return v * torch.log(k) - (v + 1) * math.log(2 * math.pi) - log_bessel_iv(v, k)

    def mean_resultant_length(self) -> torch.Tensor:
        """``A_d(kappa) = E[loc^T z] = I_{d/2}(kappa) / I_{d/2-1}(kappa)``, shape batch_shape."""
        return bessel_ratio(self._order, self.concentration.to(_F64)).to(self.loc.dtype)

    @property
    def mean(self) -> torch.Tensor:
        """``E[z] = A_d(kappa) loc``."""
        return self.mean_resultant_length().unsqueeze(-1) * self.loc

    @property
    def mode(self) -> torch.Tensor:
        return self.loc

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Log-density with respect to the surface measure of S^{d-1}."""
        x = _check_points(x, self.dim, "VonMisesFisher", self._check)
        dot = (x.to(_F64) * self.loc.to(_F64)).sum(-1)
        out = self._log_normalizer() + self.concentration.to(_F64) * dot
        return out.to(torch.promote_types(self.loc.dtype, x.dtype))

    def entropy(self) -> torch.Tensor:
        """``-log C_d(kappa) - kappa A_d(kappa)``."""
        k = self.concentration.to(_F64)
        return (-self._log_normalizer() - k * bessel_ratio(self._order, k)).to(self.loc.dtype)

    def kl_to_uniform(self) -> torch.Tensor:
        """``KL(vMF(loc, kappa) || Uniform(S^{d-1}))`` in closed form, shape batch_shape.

        ``KL = log C_d(kappa) + kappa A_d(kappa) + log |S^{d-1}|``, which simplifies (with
        ``|S^{d-1}| = 2 pi^{d/2} / Gamma(d/2)`` and v = d/2 - 1) to
        ``kappa A_d(kappa) - log(Gamma(v+1) (2/kappa)^v I_v(kappa))``. The second term comes
        from :func:`~weightstats.vae._bessel.log_bessel_iv_reduced` (power series for small
        kappa, exponentially scaled Bessel function otherwise), so nothing of size e^kappa is
        formed and no two large numbers cancel: the value keeps ~1e-12 relative precision from
        kappa = 1e-3 (KL ~ kappa^2 / (2d)) to 1e4 and beyond, and its gradient
        ``kappa A_d'(kappa)`` stays finite.
        """
        k = self.concentration.to(_F64)
        v = self._order
        return (k * bessel_ratio(v, k) - log_bessel_iv_reduced(v, k)).to(self.loc.dtype)

    def rsample(self, sample_shape=(), generator: torch.Generator | None = None):
        r"""Draw reparameterised samples with an unbiased gradient in `loc` and `concentration`.

        **Value.** Wood (1994): the cosine ``w = loc^T z`` has density proportional to
        ``e^{kappa w} (1 - w^2)^{(d-3)/2}`` on [-1, 1]; it is drawn by rejection from Wood's
        envelope (proposal ``eps ~ Beta((d-1)/2, (d-1)/2)``, here a ratio of chi-square draws),
        then ``z = Q (w, sqrt(1 - w^2) v)`` with v uniform on S^{d-2} and Q an orthogonal map
        taking e1 to `loc`.

        **Gradient.** Differentiating ``w(eps, kappa)`` with the accepted eps held fixed, as
        widely copied code does, is biased: the law of the *accepted* eps depends on kappa, and
        Naesseth et al. (2017) show the missing term is a score-function correction. Instead we
        use implicit reparameterisation (Figurnov et al., 2018), which only needs the CDF of the
        sampled variable, not how it was sampled. Write ``w = cos theta``; theta has density
        ``p(s) = e^{psi(s)} / Z(kappa)`` on [0, pi] with ``psi(s) = kappa cos s + (d-2) log sin s``
        and ``d log p(s) / d kappa = cos s - A_d(kappa)``. Holding the CDF value
        ``F(theta; kappa) = int_0^theta p`` fixed, the implicit function theorem gives::

            d theta / d kappa = -(dF/dkappa) / p(theta)
                              = -int_0^theta (cos s - A) e^{psi(s) - psi(theta)} ds
                              = +int_theta^pi (cos s - A) e^{psi(s) - psi(theta)} ds,

        the two forms being equal because ``int_0^pi (cos s - A) p(s) ds = 0``. Z cancels. psi has
        one mode s* (``cos s* = 2 kappa / (d - 2 + sqrt((d-2)^2 + 4 kappa^2))``); we integrate on
        the side away from it, where ``e^{psi(s) - psi(theta)} <= 1``, by Gauss-Legendre
        quadrature on geometric panels (see ``_dtheta_dkappa``). Then ``E[d f(z) / d kappa]``
        equals ``d E[f(z)] / d kappa`` exactly for smooth f (up to quadrature error ~1e-10). The
        gradient in `loc` flows through Q, a smooth function of loc (reflection along
        ``e1 - sigma loc``, sigma = -sign(loc_1)), which is a valid reparameterisation because
        the law of ``Q y`` is vMF(loc, kappa) for every loc. Gradients are first order only.

        Parameters
        ----------
        sample_shape : torch.Size or tuple of int
            Leading sample dimensions.
        generator : torch.Generator, optional
            Source of all randomness; the global generator is used only when it is None.

        Returns
        -------
        torch.Tensor
            Shape ``sample_shape + batch_shape + (d,)``, dtype of `loc`, unit vectors.
        """
        shape = torch.Size(sample_shape) + self.batch_shape
        kappa = self.concentration.to(_F64).expand(shape)
        eps = _wood_eps(kappa.detach().reshape(-1), self.dim, generator).reshape(shape)
        theta0 = _wood_angle(eps, kappa.detach(), self.dim)
        theta = _ImplicitAngle.apply(theta0, kappa, self.dim)
        return _from_north_pole(torch.cos(theta), torch.sin(theta), self.loc, generator)

    def sample(self, sample_shape=(), generator: torch.Generator | None = None):
        """Like :meth:`rsample` without gradients."""
        with torch.no_grad():
            return self.rsample(sample_shape, generator=generator)


class PowerSpherical(Distribution):
    r"""Power Spherical distribution (De Cao & Aziz, 2020): density ``(1 + loc^T x)^kappa / N``.

    ``N = 2^{a+b} pi^b Gamma(a) / Gamma(a+b)`` with ``a = (d-1)/2 + kappa``, ``b = (d-1)/2``.
    ``t = loc^T z`` satisfies ``(1 + t) / 2 ~ Beta(a, b)``, so sampling needs no rejection and
    :meth:`rsample` is a plain reparameterisation through two Gamma draws (torch's Gamma
    gradient is itself an implicit reparameterisation), with ``E[z] = kappa / (kappa + d - 1)
    loc`` and the entropy and KL in closed form (digamma and log-gamma only).

    Parameters
    ----------
    loc : torch.Tensor, shape (..., d)
        Mean directions, unit vectors (d >= 2).
    concentration : torch.Tensor or float, shape (...) or (..., 1)
        kappa > 0.
    validate_args : bool, optional
        As for :class:`VonMisesFisher`.
    """

    arg_constraints: ClassVar[dict] = {}
    has_rsample = True

    def __init__(self, loc, concentration, *, validate_args: bool | None = None):
        validate = _default_validate(validate_args)
        self.loc, self.concentration = _params(loc, concentration, "PowerSpherical", validate)
        self.dim = int(self.loc.shape[-1])
        self._check = validate
        super().__init__(self.concentration.shape, self.loc.shape[-1:], validate_args=False)

    def __repr__(self) -> str:
        return (
            f"PowerSpherical(dim={self.dim}, batch_shape={tuple(self.batch_shape)}, "
            f"dtype={self.loc.dtype})"
        )

    @property
    def support(self):
        return constraints.real_vector

    def _ab(self) -> tuple[torch.Tensor, float]:
        return (self.dim - 1) / 2 + self.concentration.to(_F64), (self.dim - 1) / 2

    def _log_normalizer(self) -> torch.Tensor:
        a, b = self._ab()
        return (a + b) * math.log(2) + b * math.log(math.pi) + torch.lgamma(a) - torch.lgamma(a + b)

    @property
    def mean(self) -> torch.Tensor:
        k = self.concentration
        return (k / (k + self.dim - 1)).unsqueeze(-1) * self.loc

    @property
    def mode(self) -> torch.Tensor:
        return self.loc

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Log-density with respect to the surface measure of S^{d-1}."""
        x = _check_points(x, self.dim, "PowerSpherical", self._check)
        dot = (x.to(_F64) * self.loc.to(_F64)).sum(-1).clamp_min(-1.0)
        out = self.concentration.to(_F64) * torch.log1p(dot) - self._log_normalizer()
        return out.to(torch.promote_types(self.loc.dtype, x.dtype))

    def entropy(self) -> torch.Tensor:
        """``log N - kappa (log 2 + digamma(a) - digamma(a + b))``."""
        return (log_sphere_area(self.dim) - self._kl64()).to(self.loc.dtype)

    def _kl64(self) -> torch.Tensor:
        a, b = self._ab()
        k = a - b
        # log |S^{d-1}| - log N + kappa (log 2 + digamma(a) - digamma(a+b)), with log N at
        # kappa = 0 equal to log |S^{d-1}| (Legendre duplication), leaves differences of lgamma
        # that vanish with kappa instead of cancelling numbers of size lgamma(d).
        return (
            k * (torch.digamma(a) - torch.digamma(a + b))
            - (torch.lgamma(a) - math.lgamma(b))
            + (torch.lgamma(a + b) - math.lgamma(2 * b))
        )

    def kl_to_uniform(self) -> torch.Tensor:
        """``KL(PowerSpherical || Uniform(S^{d-1})) = log |S^{d-1}| - entropy``, in the form
        ``kappa (psi(a) - psi(a+b)) - [lgamma(a) - lgamma(b)] + [lgamma(a+b) - lgamma(2b)]``
        (psi the digamma function), which stays accurate as kappa -> 0."""
        return self._kl64().to(self.loc.dtype)

    def rsample(self, sample_shape=(), generator: torch.Generator | None = None):
        """Reparameterised samples, shape ``sample_shape + batch_shape + (d,)``.

        ``X ~ Gamma(a)``, ``Y ~ Gamma(b)``, ``t = (X - Y) / (X + Y)``, ``sqrt(1 - t^2) =
        2 sqrt(XY) / (X + Y)`` (no cancellation near t = 1), then the same rotation as
        :class:`VonMisesFisher`. All randomness comes from `generator`.
        """
        shape = torch.Size(sample_shape) + self.batch_shape
        a, b = self._ab()
        x = torch._standard_gamma(a.expand(shape).contiguous(), generator=generator)
        y = torch._standard_gamma(
            torch.full(shape, b, dtype=_F64, device=a.device), generator=generator
        )
        # Gamma(a) draws can underflow to 0 only for a << 1, impossible here (a, b >= 1/2).
        total = x + y
        return _from_north_pole((x - y) / total, 2 * torch.sqrt(x * y) / total, self.loc, generator)

    def sample(self, sample_shape=(), generator: torch.Generator | None = None):
        with torch.no_grad():
            return self.rsample(sample_shape, generator=generator)


class HypersphericalUniform(Distribution):
    """Uniform distribution on S^{dim-1} (the prior of the hyperspherical VAEs).

    Parameters
    ----------
    dim : int
        Ambient dimension d >= 2; samples are unit d-vectors.
    batch_shape : tuple of int, optional
    dtype : torch.dtype, optional
        Of samples and log-densities (float32 by default).
    device : torch.device or str, optional
    """

    arg_constraints: ClassVar[dict] = {}
    has_rsample = False

    def __init__(
        self,
        dim: int,
        *,
        batch_shape=(),
        dtype=torch.float32,
        device=None,
        validate_args: bool | None = None,
    ):
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 2:
            raise InputDataError(
                f"HypersphericalUniform: `dim` must be an integer >= 2; got {dim!r}."
            )
        self.dim = int(dim)
        self.dtype = dtype
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self._check = _default_validate(validate_args)
        super().__init__(torch.Size(batch_shape), torch.Size([self.dim]), validate_args=False)

    def __repr__(self) -> str:
        return f"HypersphericalUniform(dim={self.dim}, batch_shape={tuple(self.batch_shape)})"

    @property
    def support(self):
        return constraints.real_vector

    def log_surface_area(self) -> float:
        """``log |S^{d-1}| = log(2 pi^{d/2} / Gamma(d/2))``."""
        return log_sphere_area(self.dim)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        x = _check_points(x, self.dim, "HypersphericalUniform", self._check)
        shape = torch.broadcast_shapes(x.shape[:-1], self.batch_shape)
        dtype = x.dtype if x.is_floating_point() else self.dtype
        return torch.full(shape, -self.log_surface_area(), dtype=dtype, device=x.device)

    def entropy(self) -> torch.Tensor:
        return torch.full(
            self.batch_shape, self.log_surface_area(), dtype=self.dtype, device=self.device
        )

    def sample(self, sample_shape=(), generator: torch.Generator | None = None):
        shape = torch.Size(sample_shape) + self.batch_shape
        return _uniform_directions(shape, self.dim, generator, self.device).to(self.dtype)


def _kl_to_uniform(p, q: HypersphericalUniform) -> torch.Tensor:
    if p.dim != q.dim:
        raise InputDataError(
            f"kl_divergence: the posterior lives on S^{p.dim - 1} but the prior on S^{q.dim - 1}."
        )
    return p.kl_to_uniform()


register_kl(VonMisesFisher, HypersphericalUniform)(_kl_to_uniform)
register_kl(PowerSpherical, HypersphericalUniform)(_kl_to_uniform)
