"""Lightning / Hugging Face adapters, driven through minimal fakes of their callback protocols.

lightning and transformers both install next to the pinned torch (checked with
``pip install --dry-run``), but they are not dependencies; these tests inject fake
``lightning.pytorch`` / ``transformers`` modules exposing just the base classes the adapters use
and call the hooks in the order the real trainers do.
"""

from __future__ import annotations

import sys
import types

import pytest
import torch
from capture._models import data, make_mlp

from weightstats.capture.integrations import hf_callback, lightning_callback, unwrap_optimizer
from weightstats.capture.store import RunStore
from weightstats.errors import InputDataError


class _Callback:  # the base classes of both libraries take no constructor arguments
    pass


class _Wrapper:
    """Like LightningOptimizer / AcceleratedOptimizer: forwards step() to `.optimizer`."""

    def __init__(self, optimizer):
        self.optimizer = optimizer

    def step(self, *a, **k):
        return self.optimizer.step(*a, **k)

    def zero_grad(self):
        self.optimizer.zero_grad()


@pytest.fixture
def fake_libs(monkeypatch):
    lightning = types.ModuleType("lightning")
    pl = types.ModuleType("lightning.pytorch")
    pl.Callback = type("Callback", (_Callback,), {})
    lightning.pytorch = pl
    tf = types.ModuleType("transformers")
    tf.TrainerCallback = type("TrainerCallback", (_Callback,), {})
    monkeypatch.setitem(sys.modules, "lightning", lightning)
    monkeypatch.setitem(sys.modules, "lightning.pytorch", pl)
    monkeypatch.setitem(sys.modules, "transformers", tf)
    return pl, tf


def _loop(model, wrapped, steps=6):
    x, y = data()
    for _ in range(steps):
        wrapped.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        wrapped.step()


def test_lightning_callback_protocol(tmp_path, fake_libs):
    pl, _ = fake_libs
    model = make_mlp(0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    cb = lightning_callback(store=tmp_path / "pl", every=3)
    assert isinstance(cb, pl.Callback)
    trainer = types.SimpleNamespace(optimizers=[_Wrapper(opt)], is_global_zero=True)
    cb.on_train_start(trainer, model)
    _loop(model, trainer.optimizers[0])
    cb.on_train_end(trainer, model)
    assert not opt._optimizer_step_post_hooks
    store = RunStore.open(tmp_path / "pl")
    assert store.snapshot_steps() == [0, 3, 6]
    assert torch.equal(store.tensor("3.weight", 6), model[3].weight.detach())


def test_hf_callback_protocol_and_non_zero_process(tmp_path, fake_libs):
    _, tf = fake_libs
    model = make_mlp(0)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    cb = hf_callback(store=tmp_path / "hf", every=2, coords=5)
    assert isinstance(cb, tf.TrainerCallback)
    state = types.SimpleNamespace(is_world_process_zero=True)
    cb.on_train_begin(None, state, None, model=model, optimizer=_Wrapper(opt))
    _loop(model, opt, steps=4)
    cb.on_train_end(None, state, None, model=model, optimizer=opt)
    assert RunStore.open(tmp_path / "hf").trajectories("0.bias").updates.shape == (4, 5)
    other = hf_callback(store=tmp_path / "hf-rank1")
    other.on_train_begin(None, types.SimpleNamespace(is_world_process_zero=False), None,
                         model=model, optimizer=opt)
    other.on_train_end(None, state, None)
    assert not (tmp_path / "hf-rank1").exists()


def test_adapters_errors(tmp_path, fake_libs, monkeypatch):
    with pytest.raises(InputDataError, match="`store=`"):
        hf_callback(every=3)
    with pytest.raises(InputDataError, match="cannot find a torch.optim.Optimizer"):
        unwrap_optimizer(object())
    monkeypatch.setitem(sys.modules, "transformers", None)  # not installed
    with pytest.raises(ImportError, match="pip install transformers"):
        hf_callback(store=tmp_path / "x")
