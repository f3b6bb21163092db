"""Reference VAEs with Euclidean latents: Gaussian, Student-t and Gaussian-mixture prior.

Every model shares one small interface (:class:`BaseVAE`), so training, the importance-weighted
bound and the latent analysis treat all latent families alike:

``posterior(x)``
    the amortised posterior q(z|x): an object with ``rsample(sample_shape, generator=...)``,
    ``log_prob(z)`` (summed over the latent axis) and ``mean`` (E_q[z|x]);
``prior_log_prob(z)`` / ``prior_sample(n, generator=...)``
    the prior p(z);
``kl(q, z)``
    KL(q(z|x) || p(z)) per example: analytic where a closed form exists, otherwise the
    single-sample Monte Carlo estimate log q(z|x) - log p(z) at the reparameterised ``z``;
``elbo_terms(x, generator=...)``
    per-example reconstruction log-likelihood and KL.

Likelihood. The decoder outputs logits of a Bernoulli likelihood (the default; for digits scaled
to [0, 1] this is the usual cross-entropy and not a normalised density on [0, 1], so NLLs compare
models with each other rather than with published binarised-MNIST numbers) or, with
``likelihood="continuous_bernoulli"``, the normalised continuous Bernoulli of Loaiza-Ganem &
Cunningham (2019).

Randomness. Nothing here touches torch's global generator: every sampling method takes an
explicit ``torch.Generator``. Parameter initialisation does use the global generator; the
training function seeds it (see :func:`weightstats.vae.train.train_vae`).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import InputDataError

__all__ = [
    "LIKELIHOODS",
    "BaseVAE",
    "DiagonalNormal",
    "DiagonalStudentT",
    "GaussianVAE",
    "MixturePriorVAE",
    "StudentTVAE",
    "mlp",
]

LIKELIHOODS = ("bernoulli", "continuous_bernoulli")


def mlp(sizes: tuple[int, ...]) -> nn.Sequential:
    """A ReLU multilayer perceptron through `sizes` (no activation after the last layer)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


# ----------------------------------------------------------------------------- posteriors


class DiagonalNormal:
    """A diagonal Gaussian N(loc, diag(scale^2)) over the last axis, sampled with a generator."""

    def __init__(self, loc: torch.Tensor, scale: torch.Tensor) -> None:
        self.loc = loc
        self.scale = scale

    @property
    def mean(self) -> torch.Tensor:
        return self.loc

    def rsample(
        self, sample_shape: tuple[int, ...] = (), *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        shape = tuple(sample_shape) + tuple(self.loc.shape)
        eps = torch.randn(shape, generator=generator, dtype=self.loc.dtype)
        return self.loc + self.scale * eps

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        u = (z - self.loc) / self.scale
        return (-0.5 * u.pow(2) - torch.log(self.scale) - 0.5 * math.log(2 * math.pi)).sum(-1)

    def kl_to_standard_normal(self) -> torch.Tensor:
        """Closed-form KL(N(loc, diag scale^2) || N(0, I)), summed over the last axis."""
        var = self.scale.pow(2)
        return 0.5 * (self.loc.pow(2) + var - 1.0 - torch.log(var)).sum(-1)


def _standard_t(shape: tuple[int, ...], df: float, generator, dtype) -> torch.Tensor:
    """Standard Student-t draws as normal / sqrt(chi2_df / df) (the noise needs no gradient)."""
    normal = torch.randn(shape, generator=generator, dtype=dtype)
    half = torch.full(shape, df / 2.0, dtype=dtype)
    gamma = torch._standard_gamma(half, generator=generator)  # chi2_df / 2
    return normal * torch.rsqrt(gamma / (df / 2.0))


def _t_log_prob(u: torch.Tensor, df: float) -> torch.Tensor:
    """Log-density of the standard Student-t with `df` degrees of freedom at `u` (elementwise)."""
    const = (
        math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    )
    return const - 0.5 * (df + 1) * torch.log1p(u.pow(2) / df)


class DiagonalStudentT:
    """Independent Student-t coordinates t_df(loc, scale) over the last axis (fixed `df`)."""

    def __init__(self, loc: torch.Tensor, scale: torch.Tensor, df: float) -> None:
        self.loc = loc
        self.scale = scale
        self.df = float(df)

    @property
    def mean(self) -> torch.Tensor:
        return self.loc  # the mean exists for df > 1; the location otherwise

    def rsample(
        self, sample_shape: tuple[int, ...] = (), *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        shape = tuple(sample_shape) + tuple(self.loc.shape)
        eps = _standard_t(shape, self.df, generator, self.loc.dtype)
        return self.loc + self.scale * eps

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        u = (z - self.loc) / self.scale
        return (_t_log_prob(u, self.df) - torch.log(self.scale)).sum(-1)


# ----------------------------------------------------------------------------- base model


class BaseVAE(nn.Module):
    """Encoder/decoder MLPs and the ELBO; subclasses define the posterior and prior.

    Parameters
    ----------
    input_dim : int
        Number of observed values per example (64 for the 8x8 digits).
    latent_dim : int
        Dimension of z (for spherical latents: the ambient dimension, z on S^{latent_dim - 1}).
    hidden : tuple of int
        Widths of the hidden layers of the encoder; the decoder mirrors them.
    likelihood : {'bernoulli', 'continuous_bernoulli'}
        Observation model p(x|z) on values in [0, 1].
    """

    family = "base"
    #: number of encoder outputs per latent dimension (location and scale)
    _params_per_dim = 2

    def __init__(
        self,
        *,
        input_dim: int = 64,
        latent_dim: int = 2,
        hidden: tuple[int, ...] = (128,),
        likelihood: str = "bernoulli",
    ) -> None:
        super().__init__()
        if likelihood not in LIKELIHOODS:
            raise InputDataError(
                f"`likelihood` must be one of {list(LIKELIHOODS)}; got {likelihood!r}."
            )
        if int(latent_dim) < 1:
            raise InputDataError(f"`latent_dim` must be at least 1; got {latent_dim!r}.")
        self.input_dim = int(input_dim)
        self.latent_dim = int(latent_dim)
        self.hidden = tuple(int(h) for h in hidden)
        self.likelihood = likelihood
        self.encoder = mlp((self._encoder_in(), *self.hidden, self._encoder_out()))
        self.decoder = mlp((self._decoder_in(), *reversed(self.hidden), self.input_dim))

    # sizes, overridable
    def _encoder_in(self) -> int:
        return self.input_dim

    def _encoder_out(self) -> int:
        return self._params_per_dim * self.latent_dim

    def _decoder_in(self) -> int:
        return self.latent_dim

    # --- to be defined by subclasses
    def posterior(self, x: torch.Tensor):  # pragma: no cover - abstract
        raise NotImplementedError

    def prior_log_prob(self, z: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def prior_sample(self, n: int, *, generator=None) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def kl(self, q, z: torch.Tensor) -> torch.Tensor:
        """KL(q(z|x) || p(z)) per example; default: one-sample Monte Carlo at the drawn `z`."""
        return q.log_prob(z) - self.prior_log_prob(z)

    # --- shared
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Decoder logits for latent codes `z` (any leading shape)."""
        return self.decoder(z)

    def log_likelihood(self, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """log p(x|z) summed over the observed values; broadcasts `x` against `logits`."""
        x = x.expand_as(logits)
        ll = -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)
        if self.likelihood == "continuous_bernoulli":
            ll = ll + _continuous_bernoulli_log_norm(logits).sum(-1)
        return ll

    def elbo_terms(
        self, x: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-example reconstruction log-likelihood and KL (ELBO = rec - kl)."""
        q = self.posterior(x)
        z = q.rsample(generator=generator)
        rec = self.log_likelihood(x, self.decode(z))
        return rec, self.kl(q, z)

    def loss(self, x: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Mean negative ELBO over the batch (the training objective)."""
        rec, kl = self.elbo_terms(x, generator=generator)
        return (kl - rec).mean()

    def log_importance_weights(
        self, x: torch.Tensor, k: int, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """log p(x, z_i) - log q(z_i|x) for `k` posterior draws; shape (k, n)."""
        q = self.posterior(x)
        z = q.rsample((k,), generator=generator)
        return self.log_likelihood(x, self.decode(z)) + self.prior_log_prob(z) - q.log_prob(z)

    @torch.no_grad()
    def posterior_mean(self, x: torch.Tensor) -> torch.Tensor:
        """E_q[z|x] (the location for spherical latents); used for active units."""
        return self.posterior(x).mean

    @torch.no_grad()
    def latent_outputs(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """What a :class:`~weightstats.capture.latent.LatentRecorder` stores for rows `x`.

        ``mu`` (E_q[z|x]), the posterior's spread (``logvar`` for Gaussian posteriors,
        ``scale`` for Student-t, ``kappa`` for spherical ones) and ``z``, one posterior draw
        taken from torch's global generator (the recorder seeds it inside a forked RNG state).
        """
        q = self.posterior(x)
        out = {"mu": q.mean, "z": q.rsample()}
        if isinstance(q, DiagonalNormal):
            out["logvar"] = 2.0 * torch.log(q.scale)
        else:
            out["scale"] = q.scale
        return out

    def extra_repr(self) -> str:
        return (
            f"family={self.family!r}, latent_dim={self.latent_dim}, hidden={self.hidden}, "
            f"likelihood={self.likelihood!r}"
        )


def _continuous_bernoulli_log_norm(logits: torch.Tensor) -> torch.Tensor:
    """log C(lambda) of the continuous Bernoulli, lambda = sigmoid(logits), stable near 1/2."""
    # Same expression as torch.distributions.ContinuousBernoulli._cont_bern_log_norm, which
    # tests/vae/test_models.py checks against.
    return torch.distributions.ContinuousBernoulli(logits=logits)._cont_bern_log_norm()


def _split_loc_scale(h: torch.Tensor, d: int) -> tuple[torch.Tensor, torch.Tensor]:
    loc, raw = h[..., :d], h[..., d : 2 * d]
    return loc, F.softplus(raw) + 1e-4


# ----------------------------------------------------------------------------- families


class GaussianVAE(BaseVAE):
    """Kingma & Welling (2013): diagonal Gaussian posterior, N(0, I) prior, analytic KL."""

    family = "gaussian"

    def posterior(self, x: torch.Tensor) -> DiagonalNormal:
        return DiagonalNormal(*_split_loc_scale(self.encoder(x), self.latent_dim))

    def prior_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return (-0.5 * z.pow(2) - 0.5 * math.log(2 * math.pi)).sum(-1)

    def prior_sample(self, n: int, *, generator=None) -> torch.Tensor:
        return torch.randn((n, self.latent_dim), generator=generator)

    def kl(self, q: DiagonalNormal, z: torch.Tensor) -> torch.Tensor:
        return q.kl_to_standard_normal()


class StudentTVAE(BaseVAE):
    """The heavy-tailed case: Student-t posterior and prior with `df` degrees of freedom.

    Every coordinate of q(z|x) is t_df(mu, sigma) and the prior is t_df(0, 1) per coordinate.
    The KL has no closed form and is the one-sample Monte Carlo estimate at the
    reparameterised draw z = mu + sigma * t, t = N(0, 1) / sqrt(chi2_df / df).
    """

    family = "student_t"

    def __init__(self, *, df: float = 3.0, **kwargs) -> None:
        if not float(df) > 0:
            raise InputDataError(f"`df` must be positive; got {df!r}.")
        self.df = float(df)
        super().__init__(**kwargs)

    def posterior(self, x: torch.Tensor) -> DiagonalStudentT:
        return DiagonalStudentT(*_split_loc_scale(self.encoder(x), self.latent_dim), self.df)

    def prior_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return _t_log_prob(z, self.df).sum(-1)

    def prior_sample(self, n: int, *, generator=None) -> torch.Tensor:
        return _standard_t((n, self.latent_dim), self.df, generator, torch.float32)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", df={self.df:g}"


class MixturePriorVAE(BaseVAE):
    """Gaussian posterior with a learned K-component diagonal Gaussian-mixture prior.

    This is the mixture-prior formulation (as in VaDE, Jiang et al. 2017, without its
    pre-training), not the two-level GMVAE of Dilokthanakul et al. (2016):
    p(z) = sum_k pi_k N(z; m_k, diag s_k^2) with learned pi, m, s; q(z|x) is a diagonal
    Gaussian; the KL is the one-sample Monte Carlo estimate log q(z|x) - log p(z), which is
    unbiased for KL(q(z|x) || p(z)). The cluster of x is argmax_k p(k | z = E_q[z|x]).
    """

    family = "mixture"

    def __init__(
        self,
        *,
        n_components: int = 10,
        prior_spread: float = 2.0,
        learn_weights: bool = True,
        **kwargs,
    ) -> None:
        if int(n_components) < 1:
            raise InputDataError(f"`n_components` must be at least 1; got {n_components!r}.")
        super().__init__(**kwargs)
        self.n_components = int(n_components)
        d = self.latent_dim
        self.prior_means = nn.Parameter(prior_spread * torch.randn(self.n_components, d))
        self.prior_log_scales = nn.Parameter(torch.zeros(self.n_components, d))
        self.learn_weights = bool(learn_weights)
        self.prior_logits = nn.Parameter(
            torch.zeros(self.n_components), requires_grad=self.learn_weights
        )

    @property
    def prior_scales(self) -> torch.Tensor:
        return torch.exp(self.prior_log_scales.clamp(-7.0, 5.0))

    def posterior(self, x: torch.Tensor) -> DiagonalNormal:
        return DiagonalNormal(*_split_loc_scale(self.encoder(x), self.latent_dim))

    def component_log_probs(self, z: torch.Tensor) -> torch.Tensor:
        """log pi_k + log N(z; m_k, s_k^2) for every component; shape (..., K)."""
        scales = self.prior_scales
        u = (z.unsqueeze(-2) - self.prior_means) / scales
        log_n = (-0.5 * u.pow(2) - torch.log(scales) - 0.5 * math.log(2 * math.pi)).sum(-1)
        return torch.log_softmax(self.prior_logits, -1) + log_n

    def prior_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return torch.logsumexp(self.component_log_probs(z), dim=-1)

    def prior_sample(self, n: int, *, generator=None) -> torch.Tensor:
        with torch.no_grad():
            probs = torch.softmax(self.prior_logits, -1)
            k = torch.multinomial(probs, n, replacement=True, generator=generator)
            eps = torch.randn((n, self.latent_dim), generator=generator)
            return self.prior_means[k] + self.prior_scales[k] * eps

    @torch.no_grad()
    def cluster(self, x: torch.Tensor) -> torch.Tensor:
        """Cluster of each row of `x`: argmax_k p(k | z) at z = E_q[z|x]; int64, shape (n,)."""
        return self.component_log_probs(self.posterior(x).mean).argmax(-1)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", n_components={self.n_components}"
