"""Snapshots taken between two flushes are written as one shard of stacked snapshots."""

from __future__ import annotations

import os

import numpy as np
import pytest
import scipy.stats
import torch
from capture._models import data, make_mlp, train

from weightstats.capture import hooks
from weightstats.capture.hooks import WeightRecorder
from weightstats.capture.store import RunStore
from weightstats.errors import InputDataError


def _files(run, sub: str) -> list[str]:
    return sorted(f for f in os.listdir(run / sub) if not f.startswith("."))


def _record(run, steps: int, **options):
    model = make_mlp(2, dropout=0.0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = data()
    states = [{n: p.detach().clone() for n, p in model.named_parameters()}]
    with WeightRecorder(model, opt, coords=50, store=run, **options):
        for _ in range(steps):
            train(model, opt, x, y, 1)
            states.append({n: p.detach().clone() for n, p in model.named_parameters()})
    return states


def test_snapshots_between_flushes_share_one_shard_and_read_back_exactly(tmp_path):
    run = tmp_path / "r"
    states = _record(run, 13, every=2, flush_every=5)
    files = _files(run, "snapshots")
    # step 0 alone; then the snapshots kept until each flush (steps 5, 10) and close (13); a
    # group of one is an ordinary single-snapshot file
    assert [f[9:] for f in files] == [
        "step0000000000.safetensors", "steps0000000002-0000000004.safetensors",
        "steps0000000006-0000000010.safetensors", "step0000000012.safetensors"]
    store = RunStore.open(run)
    assert store.snapshot_steps() == [0, 2, 4, 6, 8, 10, 12]
    for step in store.snapshot_steps():
        snap = store.snapshot(step)
        assert list(snap) == list(states[0])
        for n, t in snap.items():
            assert t.shape == states[step][n].shape and torch.equal(t, states[step][n]), (step, n)
        assert torch.equal(store.tensor("3.bias", step), states[step]["3.bias"])
    with pytest.raises(InputDataError, match="not in the snapshot"):
        store.tensor("nope", 4)

    frame = store.frame()
    snaps = frame[frame["kind"] == "snapshot"]
    assert len(snaps) == 7 * len(states[0])
    for _, row in snaps.iterrows():
        x = states[int(row["step"])][row["tensor"]].double().numpy().ravel()
        # references: numpy mean/var(ddof=0); scipy.stats.skew/kurtosis (bias=True, Fisher)
        assert row["numel"] == x.size
        np.testing.assert_allclose([row["mean"], row["var"]], [x.mean(), x.var()], rtol=1e-12)
        np.testing.assert_allclose(row["skewness"], scipy.stats.skew(x), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(row["kurtosis"], scipy.stats.kurtosis(x), rtol=1e-9)


def test_index_rows_of_stacked_snapshots_are_rebuilt_from_the_shard(tmp_path):
    run = tmp_path / "r"
    _record(run, 6, every=1, flush_every=3)
    before = RunStore.open(run).frame()
    for f in _files(run, "index"):
        os.remove(run / "index" / f)
    after = RunStore.open(run).frame()
    cols = ["step", "tensor", "kind", "numel", "mean", "var", "skewness", "kurtosis", "shard"]
    assert len(after) == len(before) > 0
    assert after[cols].equals(before[cols])


def test_one_file_per_snapshot_when_snapshots_are_rare_or_the_store_is_bounded(tmp_path):
    _record(tmp_path / "rare", 8, every=4, flush_every=4)
    assert len(_files(tmp_path / "rare", "snapshots")) == 3  # steps 0, 4, 8
    bounded = RunStore.create(tmp_path / "bounded", max_snapshots=100)
    _record(bounded, 6, every=1, flush_every=3)
    bounded.close()
    assert len(_files(tmp_path / "bounded", "snapshots")) == 7
    assert RunStore.open(tmp_path / "bounded").snapshot_steps() == list(range(7))


def test_a_group_is_written_once_it_reaches_the_byte_bound(tmp_path, monkeypatch):
    monkeypatch.setattr(hooks, "SNAPSHOT_GROUP_BYTES", 1)  # every snapshot fills a group
    run = tmp_path / "r"
    states = _record(run, 4, every=1, flush_every=100)
    assert len(_files(run, "snapshots")) == 5
    store = RunStore.open(run)
    assert torch.equal(store.tensor("0.weight", 3), states[3]["0.weight"])


def test_store_write_snapshots_checks_names_and_keeps_bfloat16(tmp_path):
    with RunStore.create(tmp_path / "r", dtype="bfloat16") as store:
        a = {"w": torch.randn(3, 4).to(torch.bfloat16), "b": torch.zeros(4, dtype=torch.bfloat16)}
        b = {"w": torch.randn(3, 4).to(torch.bfloat16), "b": torch.ones(4, dtype=torch.bfloat16)}
        with pytest.raises(InputDataError, match="same tensors"):
            store.write_snapshots([1, 2], [a, {"w": a["w"]}])
        assert store.write_snapshots([1, 2], [a, b])
        assert not store.write_snapshots([], [])
    store = RunStore.open(tmp_path / "r")
    assert store.snapshot(2)["w"].dtype == torch.bfloat16
    assert torch.equal(store.snapshot(1)["w"], a["w"]) and torch.equal(store.tensor("b", 2), b["b"])
    frame = store.frame()
    const = frame[(frame["tensor"] == "b") & (frame["step"] == 1)].iloc[0]
    assert const["var"] == 0 and np.isnan(const["kurtosis"])
