"""DiskBounds: the run store's bounds on disk use, alone and through a reopened store."""

from __future__ import annotations

import warnings

import pytest
import torch

from weightstats.capture._bounds import DiskBounds
from weightstats.capture.store import RunStore
from weightstats.errors import RunStoreError, WeightstatsWarning


def _bounds(tmp_path, **kw):
    removed: list[list[str]] = []
    kw.setdefault("max_snapshots", None)
    kw.setdefault("max_bytes", None)
    kw.setdefault("on_limit", "raise")
    return DiskBounds(str(tmp_path), remove=removed.append, **kw), removed


def _write(bounds, step, nbytes=10):
    if bounds.admit_snapshot(nbytes):
        bounds.wrote(nbytes, [(step, f"s{step}", nbytes)])
        return True
    return False


def test_no_bounds_admit_everything(tmp_path):
    bounds, removed = _bounds(tmp_path)
    assert not bounds.bounded
    assert all(_write(bounds, s, 10**9) for s in range(50))
    assert bounds.admit("update", 10**12) and bounds.admit("latent", 10**12)
    assert bounds.payload == 50 * 10**9 and removed == []


def test_thinning_keeps_snapshots_evenly_spaced_and_counts_bytes(tmp_path):
    bounds, removed = _bounds(tmp_path, max_snapshots=4, on_limit="thin")
    kept = [s for s in range(0, 200, 10) if _write(bounds, s)]
    steps = [s for s, _, _ in bounds.snapshots]
    assert steps == [0, 80, 160]
    assert removed[0] == ["s10", "s30"]  # the first thinning: every second of 0, 10, 20, 30
    # every snapshot written and not kept was handed over for deletion, once
    gone = [p for batch in removed for p in batch]
    assert sorted(gone) == sorted(f"s{s}" for s in kept if s not in steps)
    assert len(gone) == len(set(gone)) and bounds.payload == 10 * len(steps)


def test_stop_warns_once_per_kind_and_raise_names_the_bound(tmp_path):
    bounds, _ = _bounds(tmp_path, max_bytes=100, on_limit="stop")
    bounds.wrote(95)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert not bounds.admit("update", 10)
        assert not bounds.admit("update", 1)  # stopped: no second warning
        assert bounds.admit("latent", 5)  # another kind, still within the bound
    assert [str(w.message).count("no more update data") for w in caught] == [1]
    assert all(issubclass(w.category, WeightstatsWarning) for w in caught)
    strict, _ = _bounds(tmp_path, max_bytes=100)
    strict.wrote(95)
    with pytest.raises(RunStoreError, match="max_bytes=100 .*on_limit='thin' or 'stop'"):
        strict.admit("latent", 10)


def test_thin_stops_other_kinds_and_raises_when_thinning_frees_too_little(tmp_path):
    bounds, removed = _bounds(tmp_path, max_bytes=25, on_limit="thin")
    assert _write(bounds, 0) and _write(bounds, 1)
    with pytest.warns(WeightstatsWarning, match="no more update data"):
        assert not bounds.admit("update", 20)  # not a snapshot: no thinning, it stops
    assert removed == []
    with pytest.raises(RunStoreError, match="max_bytes=25"):
        bounds.admit("snapshot", 20)  # thinning frees 10 bytes: not enough
    assert removed == [["s1"]]


def test_reopened_store_counts_what_is_on_disk(tmp_path):
    t = {"w": torch.randn(10, 10)}
    with RunStore.create(tmp_path / "r", max_snapshots=3) as store:
        store.write_snapshot(0, t)
        store.write_snapshot(1, t)
    with RunStore.open(tmp_path / "r", mode="a") as store:
        assert (store.max_snapshots, store.max_bytes, store.on_limit) == (3, None, "raise")
        store.write_snapshot(2, t)  # the third of three
        with pytest.raises(RunStoreError, match="max_snapshots=3"):
            store.write_snapshot(3, t)
    assert RunStore.open(tmp_path / "r").snapshot_steps() == [0, 1, 2]


def test_reopened_store_counts_its_bytes_on_disk(tmp_path):
    t = {"w": torch.randn(10, 10)}  # 400 bytes of tensor data
    with RunStore.create(tmp_path / "r", max_bytes=1000) as store:
        store.write_snapshot(0, t)
        store.write_snapshot(1, t)  # 800 of 1000
    with RunStore.open(tmp_path / "r", mode="a") as store:
        with pytest.raises(RunStoreError, match="max_bytes=1000"):
            store.write_snapshot(2, t)
