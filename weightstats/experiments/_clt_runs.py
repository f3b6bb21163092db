"""One run of the CLT experiment: build, initialise, train with a recorder, analyse.

Kept apart from :mod:`.clt` (configs, grid, output directory) so that a worker process of
``jobs > 1`` imports only what a run needs. :func:`execute_run` is the unit of work: it is a
module-level function of picklable arguments, and it returns plain DataFrames and a dict.

Every run trains with one torch thread (restored afterwards): the models are tiny, one thread
is the fastest on a shared machine, and a fixed thread count keeps the CPU numerics bitwise the
same whether the run executes in the parent process or in a worker.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import FitError

__all__ = ["MODEL_KINDS", "RunSpec", "execute_run", "train_run"]

#: model kinds of the grid: the digits MLP and CNN (:mod:`weightstats.nets`) and the Gaussian
#: VAE of :mod:`weightstats.vae` (encoder and decoder MLPs, trained on the same digits).
MODEL_KINDS = ("mlp", "cnn", "vae")


@dataclass(frozen=True)
class RunSpec:
    """One cell of the grid.

    Attributes
    ----------
    run_id : str
        Directory-safe identifier, e.g. ``mlp-64x32-kaiming-uniform-sgd-0.1``.
    model : {'mlp', 'cnn', 'vae'}
    width : tuple of int
        Hidden sizes (MLP, VAE encoder; the decoder mirrors them) or channel counts (CNN).
    init, optimizer, lr, momentum, epochs, batch_size, seed
        The settings of the run.
    latent_dim : int
        Latent dimension of the VAE; 0 for the classifiers.
    """

    run_id: str
    model: str
    width: tuple[int, ...]
    init: str
    optimizer: str
    lr: float
    momentum: float
    epochs: int
    batch_size: int
    seed: int
    latent_dim: int = 0

    @property
    def width_label(self) -> str:
        return "x".join(str(w) for w in self.width)

    def settings(self) -> dict[str, Any]:
        d = asdict(self)
        d["width"] = self.width_label
        d["n_hidden_units"] = int(sum(self.width))
        d["optimizer_label"] = self.optimizer_label
        return d

    @property
    def optimizer_label(self) -> str:
        """``'sgd'``, ``'sgd-m0.9'`` (momentum 0.9) or ``'adam'``: what the report groups by."""
        return self.optimizer + (f"-m{self.momentum:g}" if self.momentum else "")


def _build(spec: RunSpec):
    import torch

    from ..nets import DigitsCNN, DigitsMLP, init_weights

    if spec.model == "mlp":
        model = DigitsMLP(hidden=spec.width)
    elif spec.model == "cnn":
        model = DigitsCNN(channels=spec.width)
    else:
        from ..vae.families import build_model

        model = build_model("gaussian", input_dim=64, latent_dim=spec.latent_dim,
                            hidden=spec.width)
    # every weight matrix (encoder and decoder alike for the VAE) gets the run's init scheme
    init_weights(model, spec.init, generator=torch.Generator().manual_seed(spec.seed))
    if spec.optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=spec.lr, momentum=spec.momentum)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=spec.lr)
    return model, opt


def _train_vae(model, opt, data, spec: RunSpec) -> dict[str, Any]:
    """Minimise the negative ELBO on the digits pixels (in [0, 1]) with `opt`; seeded.

    :func:`weightstats.vae.train.train_vae` creates its own Adam optimizer, so the grid's
    optimizer (which the recorder hooks) needs this loop; the objective is the same
    ``model.loss`` (mean negative ELBO, Bernoulli likelihood).
    """
    import torch

    gen = torch.Generator().manual_seed(spec.seed)
    x = data.x_train
    n, steps = int(x.shape[0]), 0
    for epoch in range(1, spec.epochs + 1):
        model.train()
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, spec.batch_size):
            loss = model.loss(x[perm[i:i + spec.batch_size]], generator=gen)
            if not torch.isfinite(loss):
                raise FitError(f"run {spec.run_id!r}: the VAE's loss became {loss.item()} at "
                               f"epoch {epoch}; lower this optimizer's learning rate in the "
                               "config (a model entry may list its own `optimizers`).")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps += 1
    model.eval()
    with torch.no_grad():
        test_loss = float(model.loss(data.x_test, generator=torch.Generator().manual_seed(0)))
    return {"test_accuracy": float("nan"), "test_neg_elbo": test_loss,
            "n_optimizer_steps": steps}


def train_run(spec: RunSpec, data: Any, run_dir: Path, *, coords: int) -> dict[str, Any]:
    """Train one run with a :class:`WeightRecorder` on every ``*weight``; return its summary.

    The recorder records every optimizer step of `coords` sampled coordinates per weight
    tensor, and a full snapshot once per epoch.
    """
    import torch

    from ..capture.hooks import WeightRecorder
    from ..nets import train_classifier

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(spec.seed)  # nothing should draw from it; pinned in case a layer does
        model, opt = _build(spec)
        steps_per_epoch = -(-int(data.x_train.shape[0]) // spec.batch_size)
        start = time.perf_counter()
        with WeightRecorder(model, opt, every=steps_per_epoch, include="*weight", coords=coords,
                            store=os.fspath(run_dir), seed=spec.seed):
            if spec.model == "vae":
                info = _train_vae(model, opt, data, spec)
            else:
                history = train_classifier(model, opt, data, epochs=spec.epochs,
                                           batch_size=spec.batch_size, seed=spec.seed)
                if not all(math.isfinite(v) for v in history.train_loss):  # diverged
                    raise FitError(f"run {spec.run_id!r} diverged (training loss NaN); lower "
                                   "this optimizer's learning rate in the config.")
                info = {"test_accuracy": history.test_accuracy[-1],
                        "test_neg_elbo": float("nan"), "n_optimizer_steps": history.steps}
        info["train_seconds"] = time.perf_counter() - start
        return info
    finally:
        torch.set_num_threads(threads)


_DATA_CACHE: dict[tuple[float, int], Any] = {}


def _data(test_fraction: float, split_seed: int) -> Any:
    from ..datasets import load_digits

    key = (float(test_fraction), int(split_seed))
    if key not in _DATA_CACHE:
        _DATA_CACHE[key] = load_digits(test_fraction=key[0], seed=key[1])
    return _DATA_CACHE[key]


def execute_run(spec: RunSpec, run_dir: str, *, coords: int, max_samples: int,
                families: Sequence[str] | None, test_fraction: float, split_seed: int,
                ) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Train and analyse one run; the unit of work of the grid (picklable in and out).

    Returns
    -------
    rows : pandas.DataFrame
        The run's settings and training summary, then the CLT summary, one row per tensor.
    curves : pandas.DataFrame
        ``run_id`` + the kurtosis-decay curves.
    info : dict
        Training summary plus ``analysis_seconds`` and ``n_warnings``: warnings the analysis
        raised, caught so that parallel workers stay quiet (typically exact zeros in dW of a
        first layer: weights of input pixels that are 0 in every image never move).
    """
    from ..analysis.clt import analyze_clt

    info = train_run(spec, _data(test_fraction, split_seed), Path(run_dir), coords=coords)
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = analyze_clt(run_dir, max_samples=max_samples, families=families, rng=spec.seed)
    info["analysis_seconds"] = time.perf_counter() - t0
    info["n_warnings"] = len(caught)
    rows = res.summary.copy()
    for k, v in reversed(list({**spec.settings(), **info}.items())):
        rows.insert(0, k, v)
    curves = res.curves.assign(run_id=spec.run_id) if len(res.curves) else pd.DataFrame()
    if len(curves):
        curves = curves[["run_id"] + [c for c in curves.columns if c != "run_id"]]
    return rows, curves, info
