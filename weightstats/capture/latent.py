"""LatentRecorder: record a VAE encoder's outputs (μ, log σ² or κ, z, labels) per epoch.

Expected encoder outputs
------------------------
The recorder stores named tensors whose first dimension is the batch:

``mu``      (N, d)  posterior mean (or the mean direction of a von Mises–Fisher latent)
``logvar``  (N, d)  posterior log-variance log σ², for a Gaussian latent
``kappa``   (N,) or (N, 1)  concentration, for a von Mises–Fisher latent
``z``       (N, d)  a sample from the posterior
``labels``  (N,)    class labels, when the evaluation data carry them

How outputs are named (`outputs=`):

* ``None`` (default): a tensor is ``mu``; a tuple or list is named by position
  ``("mu", "logvar", "z")``; a dict keeps its keys (``{"mu": ..., "kappa": ...}``).
* a sequence of names (``None`` skips a position): ``outputs=("mu", None, "kappa")``.
* a mapping from stored name to the output's key or position: ``{"mu": "loc", "kappa": 2}``.
* a callable ``f(output) -> dict[str, Tensor]``.

When ``mu`` and ``logvar`` are recorded but ``z`` is not, ``z = mu + exp(logvar / 2) * eps`` is
drawn with the recorder's own :class:`torch.Generator` (seeded by `seed` and the epoch).
"""

from __future__ import annotations

import contextlib
import os
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch

from ..errors import InputDataError
from ._common import is_writer_rank
from .store import RunStore

__all__ = ["DEFAULT_NAMES", "LatentRecorder"]

DEFAULT_NAMES = ("mu", "logvar", "z")

_MODULE_SETATTR = torch.nn.Module.__setattr__

#: module class -> whether its ``training`` flag is a plain instance attribute (see below)
_PLAIN_TRAINING: dict[type, bool] = {}


def _set_training(modules: list[torch.nn.Module], modes: list[bool]) -> None:
    """Set each module's ``training`` flag, as ``Module.train`` does for each submodule.

    Straight into the instance's ``__dict__`` where the class keeps ``Module.__setattr__`` and
    defines no ``training`` of its own (a property, as ``torch.nn.cpp.ModuleWrapper`` has, or
    a slot): ``Module.__setattr__``'s checks for parameters, buffers and submodules do not
    apply to a bool. Setting and restoring the flags of the bench VAE's 10 modules took
    19.5 us through ``setattr`` and 1.5 us this way; an epoch's recording of its 256
    evaluation digits went from 258 to 234 us (medians). Other classes get the flag through
    ``setattr``.
    """
    for m, mode in zip(modules, modes):
        cls = type(m)
        plain = _PLAIN_TRAINING.get(cls)
        if plain is None:
            plain = _PLAIN_TRAINING[cls] = (cls.__setattr__ is _MODULE_SETATTR
                                            and not hasattr(cls, "training"))
        if plain:
            m.__dict__["training"] = mode
        else:
            m.training = mode


def _name_outputs(output: Any, outputs: Any) -> dict[str, torch.Tensor]:
    """Turn one encoder output into ``{name: tensor}`` following `outputs` (see module doc)."""
    if callable(outputs) and not isinstance(outputs, (str, Mapping, Sequence)):
        named = outputs(output)
        if not isinstance(named, Mapping):
            raise InputDataError("`outputs` callable must return a dict of name -> tensor.")
        return dict(named)
    if isinstance(outputs, Mapping):
        named = {}
        for store_name, key in outputs.items():
            try:
                named[store_name] = output[key]
            except (KeyError, IndexError, TypeError):
                raise InputDataError(
                    f"`outputs` maps {store_name!r} to {key!r}, which the encoder output "
                    f"({type(output).__name__}) does not have."
                ) from None
        return named
    if isinstance(output, torch.Tensor):
        names = tuple(outputs) if outputs is not None else ("mu",)
        return {names[0]: output} if names and names[0] is not None else {}
    if isinstance(output, Mapping):
        if outputs is not None:
            raise InputDataError(
                "the encoder returns a dict: pass `outputs` as a mapping {stored_name: key}."
            )
        return {k: v for k, v in output.items() if isinstance(v, torch.Tensor)}
    if isinstance(output, (tuple, list)):
        names = tuple(outputs) if outputs is not None else DEFAULT_NAMES
        if outputs is None and len(output) > len(DEFAULT_NAMES):
            raise InputDataError(
                f"the encoder returns {len(output)} values; name them with `outputs`, e.g. "
                "outputs=('mu', 'logvar', 'z', None)."
            )
        return {n: v for n, v in zip(names, output)
                if n is not None and isinstance(v, torch.Tensor)}
    raise InputDataError(
        f"cannot read the encoder output of type {type(output).__name__}; pass `outputs`."
    )


class LatentRecorder:
    """Record an encoder's outputs on evaluation data, every `every_epoch` epochs.

    Parameters
    ----------
    module_or_fn : torch.nn.Module or callable
        The encoder. A module gets a forward hook (returning None, removed on close); a plain
        callable ``fn(x)`` is called directly.
    data : Tensor, (Tensor, Tensor) or iterable, optional
        Fixed evaluation inputs: a batch ``x``, a pair ``(x, labels)``, or an iterable of such
        batches (a DataLoader over the whole evaluation set). :meth:`end_epoch` runs the encoder
        on them in eval mode under ``no_grad``. Without `data`, record the forwards you run
        yourself inside ``with recorder.epoch(e):``.
    every_epoch : int
        Record epochs 0, `every_epoch`, 2·`every_epoch`, …
    store : RunStore or path-like
        Where to write (a path creates a new run; a shared RunStore is not closed here).
    outputs : None, sequence, mapping or callable
        How to name the encoder's outputs (module docstring).
    sample_z : bool
        Draw ``z`` from ``mu``/``logvar`` when the encoder does not return it.
    seed : int
        Seed of the recorder's generator, and of torch's RNG *inside* the evaluation pass (the
        global RNG state is saved and restored around it, so training is unaffected).
    """

    def __init__(
        self,
        module_or_fn: torch.nn.Module | Callable[[torch.Tensor], Any],
        *,
        data: Any = None,
        every_epoch: int = 1,
        store: RunStore | str | os.PathLike,
        outputs: Any = None,
        sample_z: bool = True,
        seed: int = 0,
    ) -> None:
        if not callable(module_or_fn):
            raise InputDataError(
                f"`module_or_fn` must be a torch.nn.Module or a callable; "
                f"got {type(module_or_fn).__name__}."
            )
        if isinstance(every_epoch, bool) or not isinstance(every_epoch, int) or every_epoch < 1:
            raise InputDataError(f"`every_epoch` must be a positive integer; got {every_epoch!r}.")
        self.every_epoch = every_epoch
        self.outputs = outputs
        self.sample_z = bool(sample_z)
        self.seed = int(seed)
        self.data = data
        self._is_module = isinstance(module_or_fn, torch.nn.Module)
        self._target = weakref.ref(module_or_fn) if self._is_module else module_or_fn
        self._handles: list[Any] = []
        self._capture: list[dict[str, torch.Tensor]] | None = None
        self._labels: list[torch.Tensor] = []
        self._closed = False
        self.active = is_writer_rank()
        self.store: RunStore | None = None
        self._own_store = False
        if not self.active:
            self._closed = True
            return
        if isinstance(store, RunStore):
            self.store = store
        else:
            self.store = RunStore.create(store)
            self._own_store = True
        self.store.set_recorder("latents", {
            "class": type(self).__name__,
            "encoder": type(module_or_fn).__qualname__,
            "every_epoch": every_epoch,
            "outputs": outputs if outputs is None or isinstance(outputs, (list, tuple, dict))
            else repr(outputs),
            "sample_z": self.sample_z,
            "seed": self.seed,
            "data": None if data is None else type(data).__name__,
        })
        if self._is_module:
            self._handles.append(module_or_fn.register_forward_hook(self._hook))

    # -------------------------------------------------------------- capture
    def _hook(self, module, inputs, output) -> None:
        if self._capture is not None:
            self._capture.append(self._detach(_name_outputs(output, self.outputs)))

    @staticmethod
    def _detach(named: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            return {k: v.detach().to("cpu", copy=True) for k, v in named.items()}

    def add_labels(self, labels: Any) -> None:
        """Attach the labels of the batch just encoded inside :meth:`epoch`."""
        self._labels.append(torch.as_tensor(labels).detach().to("cpu", copy=True))

    @contextlib.contextmanager
    def epoch(self, epoch: int, *, step: int | None = None) -> Iterator[LatentRecorder]:
        """Capture every forward of the encoder inside the block as the latents of `epoch`
        (only when `epoch` is a multiple of `every_epoch`)."""
        if self._closed or epoch % self.every_epoch:
            yield self
            return
        self._capture, self._labels = [], []
        try:
            yield self
        finally:
            captured, labels = self._capture, self._labels
            self._capture, self._labels = None, []
        self._write(epoch, captured, labels, step)

    def end_epoch(self, epoch: int, *, step: int | None = None) -> bool:
        """Encode the fixed `data` and store the latents if `epoch` is due; return whether it
        recorded."""
        if self._closed or epoch % self.every_epoch:
            return False
        if self.data is None:
            raise InputDataError(
                "this LatentRecorder has no `data`; pass data=... or record inside "
                "`with recorder.epoch(e):`."
            )
        target = self._target() if self._is_module else self._target
        if target is None:
            raise InputDataError(
                "the encoder given as `module_or_fn` no longer exists (the recorder holds only "
                "a weak reference); keep a reference to it while recording."
            )
        captured, labels = [], []
        modules = list(target.modules()) if self._is_module else []
        modes = [m.training for m in modules]
        devices = [p.device for p in target.parameters()] if self._is_module else []
        cuda = sorted({d.index or 0 for d in devices if d.type == "cuda"})
        try:
            _set_training(modules, [False] * len(modules))
            with torch.no_grad(), torch.random.fork_rng(devices=cuda):
                # the generators of the devices in use only: torch.manual_seed also seeds
                # every other backend, formatting a stack trace for each one not initialised
                # (0.3 ms per call, a third of encoding all 1,797 digits with the bench's VAE)
                torch.default_generator.manual_seed(self.seed + epoch)
                for index in cuda:
                    with torch.cuda.device(index):
                        torch.cuda.manual_seed(self.seed + epoch)
                for x, y in self._batches(devices[0] if devices else None):
                    if self._is_module:
                        self._capture = []
                        target(x)
                        captured.extend(self._capture)
                        self._capture = None
                    else:
                        captured.append(self._detach(_name_outputs(target(x), self.outputs)))
                    if y is not None:
                        labels.append(torch.as_tensor(y).detach().to("cpu", copy=True))
        finally:
            self._capture = None
            _set_training(modules, modes)
        self._write(epoch, captured, labels, step)
        return True

    def _batches(self, device) -> Iterable[tuple[torch.Tensor, Any]]:
        data = self.data
        items = [data] if isinstance(data, (torch.Tensor, tuple, list)) and _is_batch(data) \
            else data
        for item in items:
            x, y = (item[0], item[1]) if isinstance(item, (tuple, list)) else (item, None)
            x = torch.as_tensor(x)
            yield (x.to(device) if device is not None else x), y

    def _write(self, epoch: int, captured: list[dict], labels: list, step: int | None) -> None:
        if not captured:
            raise InputDataError(
                f"no encoder output was captured for epoch {epoch}; call the encoder inside "
                "`with recorder.epoch(e):` or pass `data`."
            )
        names = list(captured[0])
        out = {n: torch.cat([c[n].reshape(c[n].shape[0], -1) if c[n].dim() > 1 else c[n]
                             for c in captured]) for n in names}
        if self.sample_z and "z" not in out and "mu" in out and "logvar" in out:
            gen = torch.Generator(device="cpu")
            gen.manual_seed(self.seed * 1_000_003 + epoch)
            mu, logvar = out["mu"].float(), out["logvar"].float()
            eps = torch.randn(mu.shape, generator=gen, dtype=mu.dtype)
            out["z"] = mu + torch.exp(0.5 * logvar) * eps
        if labels:
            out["labels"] = torch.cat([lab.reshape(-1) for lab in labels])
            n = next(iter(out.values())).shape[0]
            if out["labels"].shape[0] != n:
                raise InputDataError(
                    f"got {out['labels'].shape[0]} labels for {n} encoded rows in epoch {epoch}."
                )
        self.store.write_latents(epoch, out, step=step)

    # -------------------------------------------------------------- lifetime
    @property
    def handles(self) -> tuple:
        return tuple(self._handles)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Remove the forward hook and close a store this recorder created."""
        if self._closed:
            return
        self._closed = True
        for h in self._handles:
            h.remove()
        self._handles.clear()
        if self._own_store:
            self.store.close()
        else:
            self.store.flush()

    def __enter__(self) -> LatentRecorder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        where = self.store.path if self.store is not None else None
        return (f"LatentRecorder(every_epoch={self.every_epoch}, store={where!r}, "
                f"{'closed' if self._closed else 'open'})")


def _is_batch(data: Any) -> bool:
    """A tensor, or an ``(x, labels)`` pair of tensors, is one batch; anything else iterates."""
    if isinstance(data, torch.Tensor):
        return True
    return (isinstance(data, (tuple, list)) and len(data) == 2
            and all(isinstance(d, torch.Tensor) for d in data))
