"""The semi-supervised M2 model of Kingma, Rezende, Mohamed & Welling (2014).

Generative model: y ~ Uniform{0..K-1}, z ~ N(0, I), x ~ p(x | y, z) (decoder on [z, onehot(y)]).
Inference model: q(y|x) (a classifier) and q(z|x, y) (a diagonal Gaussian on [x, onehot(y)]).

Bounds (Kingma et al. 2014, eqs. 6-9):

* labelled  ``-L(x, y) = E_q(z|x,y)[-log p(x|y,z)] + KL(q(z|x,y) || p(z)) - log p(y)``;
* unlabelled ``-U(x) = sum_y q(y|x) (-L(x, y)) - H(q(y|x))``, enumerating the K classes;
* objective ``mean_u(-U) + mean_l(-L) + alpha * mean_l(-log q(y|x))`` (per-example means; their
  ``alpha = 0.1 N`` on a sum over N examples is ``0.1`` on this scale, which learns the
  classifier too slowly on 1,347 digits, so the default here is ``alpha = 20``; stated in the
  comparison report).

The test classification error is that of ``argmax_y q(y|x)``.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from ..errors import InputDataError
from .models import BaseVAE, DiagonalNormal, _split_loc_scale, mlp

__all__ = ["M2VAE", "supervised_baseline_error"]


class M2VAE(BaseVAE):
    """Semi-supervised VAE with a discrete class latent y and a Gaussian latent z.

    Parameters
    ----------
    n_classes : int
        Number of classes K of the discrete latent.
    alpha : float
        Weight of the classification term on the labelled examples (per-example scale).
    **kwargs
        ``input_dim, latent_dim, hidden, likelihood`` as in :class:`BaseVAE`.
    """

    family = "m2"

    def __init__(self, *, n_classes: int = 10, alpha: float = 20.0, **kwargs) -> None:
        if int(n_classes) < 2:
            raise InputDataError(f"`n_classes` must be at least 2; got {n_classes!r}.")
        self.n_classes = int(n_classes)
        self.alpha = float(alpha)
        super().__init__(**kwargs)
        self.classifier = mlp((self.input_dim, *self.hidden, self.n_classes))

    def _encoder_in(self) -> int:
        return self.input_dim + self.n_classes

    def _decoder_in(self) -> int:
        return self.latent_dim + self.n_classes

    def _onehot(self, y: torch.Tensor) -> torch.Tensor:
        return F.one_hot(y, self.n_classes).to(torch.float32)

    # --- pieces
    def class_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of q(y|x), shape (n, K)."""
        return self.classifier(x)

    def posterior_given(self, x: torch.Tensor, y: torch.Tensor) -> DiagonalNormal:
        """q(z | x, y) for integer labels `y` of shape (n,) (or broadcast (..., n))."""
        xy = torch.cat([x.expand(*y.shape, x.shape[-1]), self._onehot(y)], dim=-1)
        return DiagonalNormal(*_split_loc_scale(self.encoder(xy), self.latent_dim))

    def decode_given(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.decoder(torch.cat([z, self._onehot(y).expand(*z.shape[:-1], -1)], dim=-1))

    def posterior(self, x: torch.Tensor) -> DiagonalNormal:
        """q(z | x, y_hat) at the predicted class y_hat = argmax q(y|x)."""
        return self.posterior_given(x, self.class_logits(x).argmax(-1))

    def prior_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return (-0.5 * z.pow(2) - 0.5 * math.log(2 * math.pi)).sum(-1)

    def prior_sample(self, n: int, *, generator=None) -> torch.Tensor:
        return torch.randn((n, self.latent_dim), generator=generator)

    # --- bounds
    def labelled_terms(
        self, x: torch.Tensor, y: torch.Tensor, *, generator=None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Reconstruction log-likelihood and KL_z of the labelled bound; each shape (n,)."""
        q = self.posterior_given(x, y)
        z = q.rsample(generator=generator)
        rec = self.log_likelihood(x, self.decode_given(z, y))
        return rec, q.kl_to_standard_normal()

    def elbo_terms(self, x: torch.Tensor, *, generator=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Unlabelled bound U(x) = rec - kl, enumerating the classes.

        ``rec = sum_y q(y|x) E[log p(x|y,z)]`` and
        ``kl = sum_y q(y|x) KL(q(z|x,y) || p(z)) + KL(q(y|x) || Uniform)``.
        """
        n = x.shape[0]
        log_qy = torch.log_softmax(self.class_logits(x), -1)  # (n, K)
        qy = log_qy.exp()
        ys = torch.arange(self.n_classes).unsqueeze(1).expand(self.n_classes, n)  # (K, n)
        rec_y, kl_y = self.labelled_terms(x, ys, generator=generator)  # (K, n)
        rec = (qy.T * rec_y).sum(0)
        kl_y_cat = (qy * (log_qy + math.log(self.n_classes))).sum(-1)
        kl = (qy.T * kl_y).sum(0) + kl_y_cat
        return rec, kl

    def semi_supervised_loss(
        self,
        x_unlabelled: torch.Tensor,
        x_labelled: torch.Tensor,
        y_labelled: torch.Tensor,
        *,
        generator=None,
    ) -> torch.Tensor:
        """``mean_u(-U) + mean_l(-L) + alpha * mean_l(-log q(y|x))`` for one pair of batches."""
        rec_u, kl_u = self.elbo_terms(x_unlabelled, generator=generator)
        rec_l, kl_l = self.labelled_terms(x_labelled, y_labelled, generator=generator)
        log_py = -math.log(self.n_classes)
        neg_l = kl_l - rec_l - log_py
        ce = F.cross_entropy(self.class_logits(x_labelled), y_labelled)
        return (kl_u - rec_u).mean() + neg_l.mean() + self.alpha * ce

    def log_importance_weights(self, x: torch.Tensor, k: int, *, generator=None) -> torch.Tensor:
        """Joint proposal q(y|x) q(z|x,y): log p(x,y,z) - log q(y,z|x); shape (k, n)."""
        log_qy = torch.log_softmax(self.class_logits(x), -1)  # (n, K)
        y = torch.multinomial(log_qy.exp(), k, replacement=True, generator=generator).T  # (k, n)
        q = self.posterior_given(x, y)
        z = q.rsample(generator=generator)  # (k, n, d)
        log_p = (
            self.log_likelihood(x, self.decode_given(z, y))
            + self.prior_log_prob(z)
            - math.log(self.n_classes)
        )
        log_q = q.log_prob(z) + log_qy.gather(1, y.T).T
        return log_p - log_q

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """argmax_y q(y|x), int64 of shape (n,)."""
        return self.class_logits(x).argmax(-1)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", n_classes={self.n_classes}, alpha={self.alpha:g}"


def supervised_baseline_error(
    x_labelled: torch.Tensor,
    y_labelled: torch.Tensor,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    *,
    hidden: tuple[int, ...] = (128,),
    steps: int = 500,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    seed: int = 0,
) -> float:
    """Test error of M2's classifier architecture trained on the labelled examples alone.

    The yardstick for "M2 uses few labels": the same MLP q(y|x), Adam with full-batch
    cross-entropy for `steps` steps on only the labelled rows, seeded like :func:`train_vae`
    (initialisation under a forked, seeded global generator).
    """
    n_classes = int(torch.max(torch.cat([y_labelled, y_test]))) + 1
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = mlp((x_labelled.shape[1], *hidden, n_classes))
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(int(steps)):
        loss = F.cross_entropy(net(x_labelled), y_labelled)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        return float((net(x_test).argmax(-1) != y_test).double().mean())
