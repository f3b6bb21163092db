"""Seeded, reproducible CPU training of the reference VAEs.

Seeding (documented contract). :func:`train_vae` takes one integer ``seed``:

* parameter initialisation runs under ``torch.random.fork_rng()`` after
  ``torch.manual_seed(seed)``, so the caller's global torch generator is left as it was;
* mini-batch order, the labelled subset (M2) and every reparameterised draw come from one
  explicit ``torch.Generator`` seeded with ``seed``.

Training twice with the same arguments on the CPU gives bitwise-equal parameters
(``tests/vae/test_train.py`` checks it with ``torch.equal``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch

from ..errors import FitError, InputDataError
from .families import FAMILIES, build_model

__all__ = ["TrainResult", "as_data", "labelled_subset", "train_vae"]

EpochCallback = Callable[[int, torch.nn.Module], None]


@dataclass(frozen=True)
class TrainResult:
    """A trained VAE and how it got there.

    Attributes
    ----------
    model : torch.nn.Module
        The trained model, in eval mode.
    family : str
        Latent family name (see :mod:`weightstats.vae.families`).
    options : dict
        Everything needed to retrain it: model options and training settings.
    history : pandas.DataFrame
        One row per epoch: ``epoch, loss`` (mean negative ELBO, or the M2 objective).
    labelled_index : torch.Tensor or None
        Indices of the labelled training examples (M2 only).
    seconds : float
        Wall time of training.
    """

    model: torch.nn.Module
    family: str
    options: dict[str, Any]
    history: pd.DataFrame
    labelled_index: torch.Tensor | None = None
    seconds: float = field(default=float("nan"), compare=False)

    def __repr__(self) -> str:
        last = float(self.history["loss"].iloc[-1]) if len(self.history) else float("nan")
        return (
            f"TrainResult(family={self.family!r}, latent_dim={self.model.latent_dim}, "
            f"epochs={len(self.history)}, final_loss={last:.4g})"
        )


def as_data(x: Any, *, name: str = "x") -> torch.Tensor:
    """Validate a data matrix: 2-D, finite, values in [0, 1]; returned as float32."""
    try:
        t = torch.as_tensor(x).detach().to("cpu", torch.float32)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise InputDataError(f"`{name}` cannot be read as a numeric matrix: {exc}") from None
    if t.ndim != 2 or t.shape[0] < 2 or t.shape[1] < 1:
        raise InputDataError(
            f"`{name}` must be a 2-D matrix (n_examples, n_features) with at least 2 rows; "
            f"got shape {tuple(t.shape)}."
        )
    if not torch.isfinite(t).all():
        raise InputDataError(f"`{name}` has non-finite values; clean them first.")
    if t.min() < 0 or t.max() > 1:
        raise InputDataError(
            f"`{name}` must lie in [0, 1] for the Bernoulli likelihood; got values in "
            f"[{float(t.min()):.4g}, {float(t.max()):.4g}]. Scale it first."
        )
    return t


def labelled_subset(
    y: torch.Tensor, per_class: int, *, generator: torch.Generator
) -> torch.Tensor:
    """Indices of `per_class` randomly chosen examples of every class in `y` (sorted)."""
    picks = []
    for label in torch.unique(y):
        idx = torch.nonzero(y == label).flatten()
        if len(idx) < per_class:
            raise InputDataError(
                f"`labels_per_class`={per_class} but class {int(label)} has only {len(idx)} "
                "training examples; lower it."
            )
        picks.append(idx[torch.randperm(len(idx), generator=generator)[:per_class]])
    return torch.sort(torch.cat(picks)).values


def train_vae(
    family: str,
    x_train: Any,
    *,
    latent_dim: int = 2,
    epochs: int = 50,
    batch_size: int = 64,
    lr: float = 1e-3,
    hidden: Sequence[int] = (128,),
    likelihood: str = "bernoulli",
    seed: int = 0,
    y_train: Any = None,
    labels_per_class: int = 10,
    model_options: dict[str, Any] | None = None,
    callbacks: Sequence[EpochCallback] = (),
    num_threads: int | None = None,
) -> TrainResult:
    """Train a reference VAE with Adam on the CPU, reproducibly.

    Parameters
    ----------
    family : str
        One of :data:`weightstats.vae.families.FAMILIES`.
    x_train : array_like or torch.Tensor
        Training data, shape (n, input_dim), values in [0, 1].
    latent_dim : int
        Dimension of z (ambient dimension for spherical latents).
    epochs, batch_size, lr : int, int, float
        Passes over the data, mini-batch size, Adam learning rate.
    hidden : sequence of int
        Hidden widths of the encoder (the decoder mirrors them).
    likelihood : {'bernoulli', 'continuous_bernoulli'}
        Observation model.
    seed : int
        The one seed of initialisation, batch order, labelled subset and sampling (see the
        module docstring).
    y_train : array_like, optional
        Integer labels; required for ``family='m2'``, of which only `labels_per_class` per class
        are used.
    labels_per_class : int
        Labelled examples per class for M2.
    model_options : dict, optional
        Extra family options, for example ``{'df': 3}`` (student_t), ``{'n_components': 10}``
        (mixture), ``{'alpha': 20}`` (m2).
    callbacks : sequence of callables
        Each is called as ``callback(epoch, model)`` after every epoch (epochs count from 1)
        and once with epoch 0 before training, under ``torch.no_grad()`` and in eval mode.
    num_threads : int or None
        Torch intra-op threads while training (restored afterwards); ``None`` keeps torch's
        setting. On a heavily shared machine 1 thread is much faster for these tiny models
        (see :func:`weightstats.vae.iwae.iwae_bound`). The quick grid gave bitwise-equal results
        with 1 and 2 threads, but only a fixed thread count is promised to reproduce.

    Returns
    -------
    TrainResult
    """
    if family not in FAMILIES:
        raise InputDataError(f"`family` must be one of {sorted(FAMILIES)}; got {family!r}.")
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if int(value) != value or value < 1:
            raise InputDataError(f"`{name}` must be a positive integer; got {value!r}.")
    if not lr > 0:
        raise InputDataError(f"`lr` must be positive; got {lr!r}.")
    x = as_data(x_train, name="x_train")
    n = x.shape[0]
    options = dict(model_options or {})
    options.update(
        input_dim=int(x.shape[1]),
        latent_dim=int(latent_dim),
        hidden=tuple(int(h) for h in hidden),
        likelihood=likelihood,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(family, **options)
    gen = torch.Generator().manual_seed(int(seed))

    labelled = None
    if family == "m2":
        if y_train is None:
            raise InputDataError("`y_train` is required for family='m2' (semi-supervised).")
        y = torch.as_tensor(y_train).to(torch.int64).flatten()
        if len(y) != n:
            raise InputDataError(f"`y_train` has {len(y)} labels for {n} rows of `x_train`.")
        labelled = labelled_subset(y, int(labels_per_class), generator=gen)

    previous_threads = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(int(num_threads))
    try:
        rows, seconds = _fit(model, x, gen, labelled, family, epochs, batch_size, lr, callbacks,
                             x_lab=x[labelled] if labelled is not None else None,
                             y_lab=y[labelled] if labelled is not None else None)
    finally:
        torch.set_num_threads(previous_threads)
    model.eval()
    settings = dict(
        options,
        family=family,
        epochs=int(epochs),
        batch_size=int(batch_size),
        lr=float(lr),
        seed=int(seed),
        labels_per_class=int(labels_per_class) if family == "m2" else None,
    )
    return TrainResult(model, family, settings, pd.DataFrame(rows), labelled, seconds)


def _fit(model, x, gen, labelled, family, epochs, batch_size, lr, callbacks, *, x_lab, y_lab):
    """The optimisation loop of :func:`train_vae`; returns the epoch rows and the wall time."""
    n = x.shape[0]
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    _run_callbacks(callbacks, 0, model)
    rows = []
    start = time.perf_counter()
    for epoch in range(1, int(epochs) + 1):
        model.train()
        perm = torch.randperm(n, generator=gen)
        total, seen = 0.0, 0
        for i in range(0, n, batch_size):
            xb = x[perm[i : i + batch_size]]
            if labelled is not None:
                pick = torch.randint(len(labelled), (min(batch_size, len(labelled)),), generator=gen)
                loss = model.semi_supervised_loss(xb, x_lab[pick], y_lab[pick], generator=gen)
            else:
                loss = model.loss(xb, generator=gen)
            if not torch.isfinite(loss):
                raise FitError(
                    f"training the {family!r} VAE diverged at epoch {epoch} (loss {loss.item()}); "
                    "lower `lr` or change `seed`."
                )
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            total += loss.item() * len(xb)
            seen += len(xb)
        rows.append({"epoch": epoch, "loss": total / seen})
        _run_callbacks(callbacks, epoch, model)
    return rows, time.perf_counter() - start


def _run_callbacks(callbacks: Sequence[EpochCallback], epoch: int, model: torch.nn.Module) -> None:
    if not callbacks:
        return
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for callback in callbacks:
            callback(epoch, model)
    model.train(was_training)
