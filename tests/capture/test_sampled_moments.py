"""WeightRecorder(moments="sampled") and moments=False: only the sampled coordinates are kept and
read each step, on the fused and the block path, and what they record is right."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import torch
from capture._models import data, make_mlp, train

from weightstats.capture.hooks import WeightRecorder
from weightstats.capture.store import RunStore
from weightstats.errors import InputDataError

STAT_COLUMNS = ["mean", "var", "skewness", "kurtosis"]


def _record(path, moments, *, coords=40, every=4, steps=11, step_thread=False):
    """A seeded run with snapshots inside the flush intervals; the weights after each step."""
    model = make_mlp(5, dropout=0.0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = data()
    states = [{n: p.detach().clone() for n, p in model.named_parameters()}]
    with WeightRecorder(model, opt, every=every, coords=coords, flush_every=3, moments=moments,
                        store=path, step_thread=step_thread) as rec:
        groups = list(rec._groups)
        for _ in range(steps):
            train(model, opt, x, y, 1)
            states.append({n: p.detach().clone() for n, p in model.named_parameters()})
    return RunStore.open(path), states, groups


@pytest.fixture(params=["fused", "block", "block-threaded"])
def path_kind(request):
    """The per-step path: numba's kernel, or the block reduction inline or on its thread."""
    if request.param != "fused":
        request.getfixturevalue("block_path")
    return request.param


def test_sampled_moments_are_those_of_the_recorded_sample(tmp_path, path_kind):
    """Each step's moments are numpy's and scipy's of that step's recorded updates; the
    index says how many values they are over; updates and snapshots are exact."""
    store, states, groups = _record(tmp_path / "r", "sampled",
                                    step_thread=path_kind == "block-threaded")
    assert store.manifest["recorders"]["weights"]["moments"] == "sampled"
    assert store.manifest["recorders"]["weights"]["kernel"] == (
        "fused" if path_kind == "fused" else "block")
    assert store.snapshot_steps() == [0, 4, 8]
    for step in (0, 4, 8):
        assert all(torch.equal(t, states[step][n]) for n, t in store.snapshot(step).items())
    for name in store.tensor_names():
        tr = store.trajectories(name)
        expected = np.stack([(states[t][name] - states[t - 1][name]).reshape(-1)[tr.coords]
                             .numpy() for t in range(1, 12)])
        np.testing.assert_array_equal(tr.updates, expected)
        mom = store.update_moments(name)
        assert mom["step"].tolist() == list(range(1, 12))
        assert (mom["numel"] == tr.coords.size).all()
        d = tr.updates.astype(np.float64)
        # references: numpy mean/var (ddof=0), scipy.stats.skew/kurtosis (bias=True, Fisher);
        # the fused kernel sums the float32 updates in float64, the block path in float32
        tol = 1e-9 if path_kind == "fused" else 1e-3
        np.testing.assert_allclose(mom["mean"], d.mean(1), rtol=min(tol, 1e-5), atol=1e-12)
        np.testing.assert_allclose(mom["var"], d.var(1), rtol=min(tol, 1e-4))
        np.testing.assert_allclose(mom["skewness"], scipy.stats.skew(d, axis=1),
                                   rtol=tol, atol=tol / 10)
        np.testing.assert_allclose(mom["kurtosis"], scipy.stats.kurtosis(d, axis=1),
                                   rtol=tol, atol=tol / 10)
    sampled = [t for t in store.tensor_names()
               if store.trajectories(t).coords.size < states[0][t].numel()]
    assert sampled == ["0.weight", "3.weight"]  # the test covers sampled and whole tensors


@pytest.mark.parametrize("moments", ["sampled", False])
def test_the_recorder_keeps_only_the_sample(tmp_path, path_kind, moments):
    """Without exact moments the recorder's per-step buffers hold the sampled coordinates,
    not a copy of the weights (the block's rows, or the fused kernel's previous values)."""
    _, states, groups = _record(tmp_path / "r", moments, coords=8, steps=2,
                                step_thread=path_kind == "block-threaded")
    (g,) = groups
    n_sampled = sum(min(8, t.numel()) for t in states[0].values())
    assert sum(g.coord_counts) == n_sampled < sum(t.numel() for t in states[0].values())
    if path_kind == "fused":
        assert g.prev.numel() == n_sampled
    else:
        assert all(b.shape[-1] == n_sampled for b in g.blocks)


def test_sampled_records_what_exact_records_when_every_coordinate_is_sampled(tmp_path,
                                                                            path_kind):
    """With `coords` above every tensor's size the sample is the whole tensor: the same
    trajectories and snapshots (bit for bit) and the same moments as ``moments="exact"``."""
    threaded = path_kind == "block-threaded"
    a, _, _ = _record(tmp_path / "exact", "exact", coords=10_000, step_thread=threaded)
    b, _, _ = _record(tmp_path / "sampled", "sampled", coords=10_000, step_thread=threaded)
    for name in a.tensor_names():
        np.testing.assert_array_equal(a.trajectories(name).updates, b.trajectories(name).updates)
        ma, mb = a.update_moments(name), b.update_moments(name)
        assert ma["numel"].equals(mb["numel"])
        if path_kind == "fused":  # float64 sums, vectorised in another order
            np.testing.assert_allclose(ma[STAT_COLUMNS], mb[STAT_COLUMNS], rtol=1e-9, atol=1e-15)
        else:  # the same row, the same reduction
            np.testing.assert_array_equal(ma[STAT_COLUMNS], mb[STAT_COLUMNS])
    fa, fb = (s.frame().query("kind == 'snapshot'").reset_index(drop=True) for s in (a, b))
    assert fa[["step", "tensor", "numel"]].equals(fb[["step", "tensor", "numel"]])
    np.testing.assert_allclose(fa[STAT_COLUMNS], fb[STAT_COLUMNS], rtol=1e-12, atol=1e-15)
    for step in a.snapshot_steps():
        sa, sb = a.snapshot(step), b.snapshot(step)
        assert all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("bad", ["approx", "EXACT", 1, 0.5])
def test_moments_setting_is_checked(tmp_path, bad):
    model = make_mlp(0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(InputDataError, match="`moments` must be one of"):
        WeightRecorder(model, opt, moments=bad, store=tmp_path / "r")
    assert not opt._optimizer_step_post_hooks
