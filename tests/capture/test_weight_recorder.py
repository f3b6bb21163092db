"""WeightRecorder: bitwise-identical training, exact trajectories and moments, hook hygiene."""

from __future__ import annotations

import gc
import warnings

import numpy as np
import pytest
import scipy.stats
import torch
from capture._models import data, make_mlp, train

from weightstats.capture.hooks import WeightRecorder, unwatch, watch
from weightstats.capture.store import RunStore
from weightstats.errors import InputDataError, RunStoreError, WeightstatsWarning


@pytest.mark.parametrize(("moments", "step_thread"), [(True, False), (False, False),
                                                      ("sampled", False), (True, True)])
@pytest.mark.parametrize("opt_name", ["adam", "sgd"])
def test_training_is_bitwise_identical_with_recorder(tmp_path, opt_name, moments, step_thread):
    """50 seeded steps (with dropout, so the global RNG matters) with and without a recorder
    (reductions inline, or on the step thread while training goes on)."""
    x, y = data()

    def run(record: bool):
        model = make_mlp(3)
        make = {"adam": lambda p: torch.optim.Adam(p, lr=1e-2),
                "sgd": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)}[opt_name]
        opt = make(model.parameters())
        torch.manual_seed(123)
        if record:
            with WeightRecorder(model, opt, every=1, coords=50, flush_every=7, moments=moments,
                                store=tmp_path / f"run-{opt_name}-{moments}",
                                step_thread=step_thread):
                train(model, opt, x, y, 50)
        else:
            train(model, opt, x, y, 50)
        return model, opt, torch.get_rng_state()

    a, opt_a, rng_a = run(False)
    b, opt_b, rng_b = run(True)
    for (na, pa), (nb, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert na == nb and torch.equal(pa, pb), na
    for sa, sb in zip(opt_a.state.values(), opt_b.state.values()):
        for k in sa:
            assert torch.equal(torch.as_tensor(sa[k]), torch.as_tensor(sb[k])), k
    assert torch.equal(rng_a, rng_b)  # the recorder never drew from torch's global RNG


def test_recorder_does_not_touch_global_rng(tmp_path):
    model = make_mlp(0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = data()
    state = torch.get_rng_state()
    rec = WeightRecorder(model, opt, every=2, coords=7, store=tmp_path / "r")
    model.eval()  # no dropout: the training step itself draws nothing
    train(model, opt, x, y, 5)
    rec.close()
    assert torch.equal(state, torch.get_rng_state())


def test_trajectories_and_snapshots_are_exact(tmp_path):
    model = make_mlp(1, dropout=0.0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = data()
    states = [{n: p.detach().clone() for n, p in model.named_parameters()}]
    with WeightRecorder(model, opt, every=5, coords=100, flush_every=4,
                        store=tmp_path / "r") as rec:
        for _ in range(12):
            train(model, opt, x, y, 1)
            states.append({n: p.detach().clone() for n, p in model.named_parameters()})
    store = RunStore.open(tmp_path / "r")
    assert store.snapshot_steps() == [0, 5, 10]
    for step in (0, 5, 10):
        snap = store.snapshot(step)
        assert list(snap) == [n for n, _ in model.named_parameters()]
        for n, t in snap.items():
            assert torch.equal(t, states[step][n])
        assert torch.equal(store.tensor("3.weight", step), states[step]["3.weight"])
    for name in ("0.weight", "0.bias"):
        tr = store.trajectories(name)
        numel = states[0][name].numel()
        assert tr.steps.tolist() == list(range(1, 13))
        assert tr.coords.shape == (min(100, numel),)
        assert np.all(np.diff(tr.coords) > 0) and tr.coords.max() < numel
        expected = np.stack([(states[t][name] - states[t - 1][name]).reshape(-1)[tr.coords]
                             .numpy() for t in range(1, 13)])
        np.testing.assert_array_equal(tr.updates, expected)  # same float32 subtraction: exact
        assert tr.shape == tuple(states[0][name].shape)
    assert "T=12" in repr(tr) and rec.closed


def test_update_moments_against_scipy(tmp_path):
    model = make_mlp(2, dropout=0.0)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    x, y = data()
    states = [model[0].weight.detach().clone()]
    with WeightRecorder(model, opt, every=100, coords=10, flush_every=3, store=tmp_path / "r"):
        for _ in range(5):
            train(model, opt, x, y, 1)
            states.append(model[0].weight.detach().clone())
    mom = RunStore.open(tmp_path / "r").update_moments("0.weight")
    assert mom["step"].tolist() == [1, 2, 3, 4, 5]
    for t in range(1, 6):
        d = (states[t] - states[t - 1]).double().numpy().ravel()
        row = mom.iloc[t - 1]
        # references: numpy mean/var (ddof=0), scipy.stats.skew/kurtosis (bias=True, Fisher)
        np.testing.assert_allclose(row["mean"], d.mean(), rtol=1e-5, atol=1e-12)
        np.testing.assert_allclose(row["var"], d.var(), rtol=1e-4)
        np.testing.assert_allclose(row["skewness"], scipy.stats.skew(d), rtol=1e-3, atol=1e-4)
        np.testing.assert_allclose(row["kurtosis"], scipy.stats.kurtosis(d), rtol=1e-3, atol=1e-4)
        assert row["numel"] == d.size


def test_hooks_removed_on_exit_and_weakrefs(tmp_path):
    model = make_mlp(0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with WeightRecorder(model, opt, store=tmp_path / "r") as rec:
        assert not opt._optimizer_step_pre_hooks and len(opt._optimizer_step_post_hooks) == 1
        assert len(rec.handles) == 1
    assert not opt._optimizer_step_pre_hooks and not opt._optimizer_step_post_hooks
    assert rec.handles == ()
    rec.close()  # idempotent
    # the recorder does not keep the model alive
    ref = rec._model
    del model, opt
    gc.collect()
    assert ref() is None


def test_watch_is_idempotent_and_unwatch_removes(tmp_path):
    model = make_mlp(0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    r1 = watch(model, opt, store=tmp_path / "w", every=5)
    r2 = watch(model, opt, store=tmp_path / "w", every=5)  # the cell run twice
    assert r1 is r2
    assert len(opt._optimizer_step_post_hooks) == 1
    r3 = watch(model, opt, store=tmp_path / "w2", every=5)  # changed settings: replaced
    assert r3 is not r1 and r1.closed
    assert len(opt._optimizer_step_post_hooks) == 1
    assert unwatch(opt) == 1
    assert not opt._optimizer_step_post_hooks and not opt._optimizer_step_pre_hooks
    assert unwatch() == 0


def test_include_globs_and_errors(tmp_path):
    model = make_mlp(0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with WeightRecorder(model, opt, include="*.weight", store=tmp_path / "a") as rec:
        pass
    assert RunStore.open(tmp_path / "a").tensor_names() == ["0.weight", "3.weight"]
    with WeightRecorder(model, opt, include=lambda n, p: n == "0.bias", store=tmp_path / "b"):
        pass
    assert RunStore.open(tmp_path / "b").tensor_names() == ["0.bias"]
    with pytest.raises(InputDataError, match="`include`"):
        WeightRecorder(model, opt, include="nothing*", store=tmp_path / "c")
    with pytest.raises(InputDataError, match="`every` must be a positive integer"):
        WeightRecorder(model, opt, every=0, store=tmp_path / "d")
    with pytest.raises(InputDataError, match="`optimizer`"):
        WeightRecorder(model, "adam", store=tmp_path / "e")
    # an existing run is never overwritten
    with pytest.raises(RunStoreError, match="mode='a'"):
        WeightRecorder(model, opt, store=tmp_path / "a")
    assert rec.closed


def test_sharded_parameters_skipped_with_one_warning(tmp_path):
    model = make_mlp(0)
    model.register_parameter("shard", torch.nn.Parameter(torch.empty(0)))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with WeightRecorder(model, opt, store=tmp_path / "r") as rec:
            train(model, opt, *data(), 2)
    msgs = [str(w.message) for w in caught if issubclass(w.category, WeightstatsWarning)]
    assert len(msgs) == 1 and "shard" in msgs[0]
    assert rec.skipped == ["shard"]


def test_non_zero_rank_records_nothing(tmp_path, monkeypatch):
    dist = torch.distributed
    monkeypatch.setattr(dist, "is_available", lambda: True)
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_rank", lambda group=None: 1)
    model = make_mlp(0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with WeightRecorder(model, opt, store=tmp_path / "r") as rec:
        train(model, opt, *data(), 2)
    assert not rec.active and not (tmp_path / "r").exists()
    assert not opt._optimizer_step_post_hooks


@pytest.mark.parametrize("step_thread", [False, True])
def test_bfloat16_store_and_coordinate_sampling(tmp_path, step_thread):
    model = make_mlp(0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    store = RunStore.create(tmp_path / "r", dtype="bfloat16")
    with WeightRecorder(model, opt, every=1, coords=20, seed=5, store=store,
                        step_thread=step_thread):
        train(model, opt, *data(), 2)
    store.close()
    snap = RunStore.open(tmp_path / "r").snapshot(2)
    assert snap["0.weight"].dtype == torch.bfloat16
    torch.testing.assert_close(snap["0.weight"].float(), model[0].weight.detach(),
                               rtol=1e-2, atol=1e-3)
    # the coordinate sample is a function of the seed only
    c1 = RunStore.open(tmp_path / "r").trajectories("0.weight").coords
    with WeightRecorder(model, opt, coords=20, seed=5, store=tmp_path / "s"):
        train(model, opt, *data(), 1)
    assert np.array_equal(c1, RunStore.open(tmp_path / "s").trajectories("0.weight").coords)


@pytest.mark.parametrize("step_thread", [False, True])
def test_update_moments_accurate_when_the_mean_dwarfs_the_spread(tmp_path, rng, step_thread):
    """Updates = drift 5.0 (changing each step) + noise of sd 1e-3: mean/sd ~ 5000."""
    w = torch.nn.Parameter(torch.zeros(4000))
    model = torch.nn.Module()
    model.w = w
    opt = torch.optim.SGD([w], lr=1.0)
    noise = rng.standard_t(6, size=(6, 4000)) * 1e-3
    prev, deltas = w.detach().clone(), []
    with WeightRecorder(model, opt, every=100, coords=8, flush_every=4, store=tmp_path / "r",
                        step_thread=step_thread):
        for t in range(6):
            w.grad = -torch.from_numpy(5.0 + 0.5 * t + noise[t]).float()
            opt.step()
            deltas.append((w.detach() - prev).double().numpy())
            prev = w.detach().clone()
    mom = RunStore.open(tmp_path / "r").update_moments("w")
    for t, d in enumerate(deltas):
        row = mom.iloc[t]
        # references: numpy mean/var, scipy.stats.skew/kurtosis of the exact float32 differences
        np.testing.assert_allclose(row["mean"], d.mean(), rtol=1e-7)
        np.testing.assert_allclose(row["var"], d.var(), rtol=1e-3)
        np.testing.assert_allclose(row["skewness"], scipy.stats.skew(d), atol=0.02)
        np.testing.assert_allclose(row["kurtosis"], scipy.stats.kurtosis(d), atol=0.05)


def test_recorders_left_open_are_flushed_at_exit(tmp_path):
    from weightstats.capture import _writer, hooks

    model = make_mlp(0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    rec = WeightRecorder(model, opt, every=100, flush_every=10, store=tmp_path / "r")
    train(model, opt, *data(), 3)
    hooks._close_open_recorders()  # what atexit runs first ...
    _writer._close_open_writers()  # ... then this
    assert rec.closed and not opt._optimizer_step_post_hooks
    store = RunStore.open(tmp_path / "r")
    assert store.trajectories("0.weight").steps.tolist() == [1, 2, 3]
    assert store.manifest["closed"] is True


@pytest.mark.parametrize("step_thread", [False, True])
def test_mixed_dtypes_keep_model_order(tmp_path, step_thread):
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2).double(),
                                torch.nn.Linear(2, 2).to(torch.bfloat16))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with WeightRecorder(model, opt, every=1, store=tmp_path / "r", step_thread=step_thread):
        before = [p.detach().clone() for p in model.parameters()]
        for p in model.parameters():
            p.grad = torch.ones_like(p)
        opt.step()
    store = RunStore.open(tmp_path / "r")
    names = [n for n, _ in model.named_parameters()]
    assert store.tensor_names() == names and list(store.snapshot(1)) == names
    for (n, p), b in zip(model.named_parameters(), before):
        tr = store.trajectories(n)
        exact = (p.detach().float() - b.float()) if p.dtype == torch.bfloat16 else p.detach() - b
        np.testing.assert_array_equal(tr.updates[0], exact.reshape(-1)[tr.coords].numpy())
    assert store.snapshot(1)["1.weight"].dtype == torch.float32  # the store's dtype
