"""Optional adapters: a Lightning ``Callback`` and a Hugging Face ``TrainerCallback``.

Neither library is a dependency of weightstats. Each adapter imports its library only when it is
built, so importing this module is free::

    from weightstats.capture.integrations import lightning_callback, hf_callback
    trainer = lightning.Trainer(callbacks=[lightning_callback(store="runs/pl", every=100)])
    trainer = transformers.Trainer(..., callbacks=[hf_callback(store="runs/hf", every=100)])

Both attach a :class:`~weightstats.capture.hooks.WeightRecorder` to the (unwrapped) torch
optimizer when training starts, on the global-zero process only, and close it when training
ends. Latents are recorded with a :class:`~weightstats.capture.hooks.LatentRecorder` in your
own validation code.
"""

from __future__ import annotations

import importlib
from typing import Any

import torch

from ..errors import InputDataError
from .hooks import WeightRecorder

__all__ = ["hf_callback", "lightning_callback", "unwrap_optimizer"]


def unwrap_optimizer(optimizer: Any) -> torch.optim.Optimizer:
    """The torch optimizer inside a framework wrapper (LightningOptimizer, AcceleratedOptimizer).

    Hooks must go on the object whose ``step`` runs the update; wrappers forward to it.
    """
    seen = 0
    while not isinstance(optimizer, torch.optim.Optimizer) or (
        type(optimizer).__name__ in ("AcceleratedOptimizer", "LightningOptimizer")
    ):
        inner = getattr(optimizer, "optimizer", None) or getattr(optimizer, "_optimizer", None)
        if inner is None or seen > 4:
            raise InputDataError(
                f"cannot find a torch.optim.Optimizer inside {type(optimizer).__name__}."
            )
        optimizer, seen = inner, seen + 1
    return optimizer


def _import_first(*names: str) -> Any:
    for name in names:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise ImportError(
        f"this adapter needs one of {', '.join(names)}; install it (pip install "
        f"{names[0].split('.')[0]})."
    )


class _RecorderMixin:
    """State shared by both adapters: build the recorder lazily, close it once."""

    def _setup(self, options: dict[str, Any]) -> None:
        if "store" not in options:
            raise InputDataError("pass `store=` (a new run directory or a RunStore).")
        self.options = dict(options)
        self.recorder: WeightRecorder | None = None

    def _attach(self, model: Any, optimizer: Any, is_zero: bool) -> None:
        if self.recorder is not None or not is_zero:
            return
        if model is None or optimizer is None:
            raise InputDataError("the trainer did not provide a model and an optimizer.")
        self.recorder = WeightRecorder(model, unwrap_optimizer(optimizer), **self.options)

    def _detach(self) -> None:
        if self.recorder is not None:
            self.recorder.close()


def lightning_callback(**options: Any) -> Any:
    """A ``lightning.pytorch.Callback`` that records weights with :class:`WeightRecorder`.

    Parameters
    ----------
    **options
        Passed to :class:`WeightRecorder` (``store`` is required; ``every``, ``include``,
        ``coords``, ...). The first optimizer of ``trainer.optimizers`` is recorded.
    """
    pl = _import_first("lightning.pytorch", "pytorch_lightning")

    class WeightstatsLightningCallback(pl.Callback, _RecorderMixin):
        def __init__(self) -> None:
            super().__init__()
            self._setup(options)

        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            optimizers = list(getattr(trainer, "optimizers", []) or [])
            self._attach(pl_module, optimizers[0] if optimizers else None,
                         bool(getattr(trainer, "is_global_zero", True)))

        def on_train_end(self, trainer: Any, pl_module: Any) -> None:
            self._detach()

        def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
            self._detach()

    return WeightstatsLightningCallback()


def hf_callback(**options: Any) -> Any:
    """A ``transformers.TrainerCallback`` that records weights with :class:`WeightRecorder`.

    Parameters
    ----------
    **options
        Passed to :class:`WeightRecorder` (``store`` is required). The recorder attaches at
        ``on_train_begin`` to the ``model`` and ``optimizer`` the Trainer passes in.
    """
    tf = _import_first("transformers")

    class WeightstatsHFCallback(tf.TrainerCallback, _RecorderMixin):
        def __init__(self) -> None:
            super().__init__()
            self._setup(options)

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self._attach(kwargs.get("model"), kwargs.get("optimizer"),
                         bool(getattr(state, "is_world_process_zero", True)))

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self._detach()

    return WeightstatsHFCallback()
