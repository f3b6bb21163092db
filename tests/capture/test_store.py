"""RunStore: layout, index rebuild, bounds, concurrent reading, input validation."""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import scipy.stats
import torch

from weightstats.capture.store import RunStore
from weightstats.errors import InputDataError, RunStoreError, WeightstatsWarning


def _snap(rng, step_value: float = 0.0) -> dict[str, torch.Tensor]:
    return {"a.weight": torch.from_numpy(rng.standard_t(5, size=(20, 10)).astype(np.float32)),
            "a.bias": torch.full((10,), step_value)}


def test_snapshot_index_statistics_against_scipy(tmp_path, rng):
    tensors = _snap(rng)
    with RunStore.create(tmp_path / "r") as store:
        store.write_snapshot(0, tensors)
    df = RunStore.open(tmp_path / "r").frame()
    assert list(df.columns) == ["step", "epoch", "tensor", "kind", "numel", "mean", "var",
                                "skewness", "kurtosis", "shard", "seq"]
    row = df[df["tensor"] == "a.weight"].iloc[0]
    x = tensors["a.weight"].double().numpy().ravel()
    # references: numpy mean/var(ddof=0); scipy.stats.skew/kurtosis defaults (bias=True, Fisher)
    assert row["numel"] == 200 and row["kind"] == "snapshot" and row["step"] == 0
    np.testing.assert_allclose([row["mean"], row["var"]], [x.mean(), x.var()], rtol=1e-12)
    np.testing.assert_allclose(row["skewness"], scipy.stats.skew(x), rtol=1e-10)
    np.testing.assert_allclose(row["kurtosis"], scipy.stats.kurtosis(x), rtol=1e-10)
    bias = df[df["tensor"] == "a.bias"].iloc[0]
    assert bias["var"] == 0 and np.isnan(bias["skewness"]) and np.isnan(bias["kurtosis"])
    assert pd.isna(row["epoch"])


def test_layout_no_pickle_and_manifest(tmp_path, rng):
    with RunStore.create(tmp_path / "r", metadata={"seed": 7}) as store:
        store.write_snapshot(0, _snap(rng))
        store.write_latents(0, {"mu": torch.zeros(5, 2)})
    files = sorted(str(p.relative_to(tmp_path / "r")) for p in (tmp_path / "r").rglob("*")
                   if p.is_file())
    assert {os.path.splitext(f)[1] for f in files} == {".json", ".safetensors", ".parquet"}
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert manifest["format"] == "weightstats-run" and manifest["closed"] is True
    assert manifest["user"] == {"seed": 7}
    assert manifest["versions"]["torch"] == torch.__version__
    assert manifest["disk_usage_bytes"] > 0
    assert set(manifest["disk_usage"]) == {"manifest", "snapshots", "trajectories", "latents",
                                           "index"}
    store = RunStore.open(tmp_path / "r")
    assert store.disk_usage() == sum(os.path.getsize(tmp_path / "r" / f) for f in files)


def test_rows_without_index_part_are_rebuilt_from_shards(tmp_path, rng):
    """A writer killed after a shard's rename but before its index part loses nothing."""
    store = RunStore.create(tmp_path / "r", background=False)
    store.write_snapshot(0, _snap(rng))
    store.write_snapshot(5, _snap(rng, 1.0))
    steps = np.arange(1, 4)
    upd = torch.randn(3, 4)
    raw = torch.tensor([[0.0, 1.0, 0.0, 3.0 * 6]] * 3)  # mean, var, sum c^3, sum c^4 over n=6
    store.write_trajectories(steps, {"a.weight": (torch.arange(4), upd, raw, (2, 3), 6)})
    store.write_snapshot(10, _snap(rng, 2.0))  # no index part written for this one yet
    reader = RunStore.open(tmp_path / "r")
    df = reader.frame()
    assert reader.snapshot_steps() == [0, 5, 10]
    # and with every index part removed, the whole index is rebuilt from the shards
    for f in os.listdir(tmp_path / "r" / "index"):
        os.remove(tmp_path / "r" / "index" / f)
    df2 = reader.frame()
    pd.testing.assert_frame_equal(df, df2)
    mom = reader.update_moments("a.weight")
    assert mom["step"].tolist() == [1, 2, 3]
    np.testing.assert_allclose(mom["kurtosis"], 0.0)  # m4/m2^2 - 3 = 3 - 3
    store.close()


def test_temporary_files_are_ignored(tmp_path, rng):
    with RunStore.create(tmp_path / "r") as store:
        store.write_snapshot(0, _snap(rng))
    (tmp_path / "r" / "snapshots" / ".00000009-step0000000099.safetensors.tmp-1-2").write_bytes(
        b"partial")
    (tmp_path / "r" / "index" / ".00000009.parquet.tmp-1-2").write_bytes(b"partial")
    store = RunStore.open(tmp_path / "r")
    assert store.snapshot_steps() == [0]
    RunStore.open(tmp_path / "r", mode="a").close()  # an appender cleans them up
    assert not [f for f in os.listdir(tmp_path / "r" / "snapshots") if f.startswith(".")]


@pytest.mark.slow  # a second Python process importing torch: 3-8 s on a busy machine
def test_reader_in_another_process_while_writing(tmp_path, rng):
    """The store is readable while a writer still has it open (index parts + orphan shards)."""
    import subprocess
    import sys

    store = RunStore.create(tmp_path / "r")
    store.write_snapshot(0, _snap(rng))
    store.write_snapshot(1, _snap(rng))
    store.flush()
    code = ("from weightstats.capture.store import RunStore; import sys; "
            "s = RunStore.open(sys.argv[1]); print(s.snapshot_steps(), "
            "s.manifest['closed'], float(s.tensor('a.bias', 1)[0]))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "r")],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[0, 1] False 0.0"
    with pytest.raises(RunStoreError, match="being written by process"):
        RunStore.open(tmp_path / "r", mode="a")  # one writer at a time
    store.close()


def test_max_snapshots_raise_stop_and_thin(tmp_path, rng):
    with RunStore.create(tmp_path / "a", max_snapshots=2) as store:
        store.write_snapshot(0, _snap(rng))
        store.write_snapshot(1, _snap(rng))
        with pytest.raises(RunStoreError, match="max_snapshots=2.*on_limit='thin'"):
            store.write_snapshot(2, _snap(rng))
    with RunStore.create(tmp_path / "b", max_snapshots=2, on_limit="stop") as store:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            written = [store.write_snapshot(s, _snap(rng)) for s in range(4)]
    assert written == [True, True, False, False]
    assert len([w for w in caught if issubclass(w.category, WeightstatsWarning)]) == 1
    with RunStore.create(tmp_path / "c", max_snapshots=4, on_limit="thin") as store:
        for s in range(0, 200, 10):
            store.write_snapshot(s, _snap(rng))
    steps = RunStore.open(tmp_path / "c").snapshot_steps()
    assert len(steps) <= 4 and steps[0] == 0
    assert len(set(np.diff(steps))) == 1  # evenly thinned: 0, 80, 160
    assert steps == [0, 80, 160]


def test_max_bytes_and_bfloat16_halves_disk(tmp_path, rng):
    t = {"w": torch.randn(100, 100)}  # 40 000 bytes as float32
    with RunStore.create(tmp_path / "a", max_bytes=100_000) as store:
        store.write_snapshot(0, t)
        store.write_snapshot(1, t)
        with pytest.raises(RunStoreError, match="max_bytes=100000"):
            store.write_snapshot(2, t)
    with RunStore.create(tmp_path / "b", dtype="bfloat16") as store:
        store.write_snapshot(0, {"w": t["w"].to(torch.bfloat16)})
    a = RunStore.open(tmp_path / "a").disk_usage(by_kind=True)["snapshots"]
    b = RunStore.open(tmp_path / "b").disk_usage(by_kind=True)["snapshots"]
    assert b < 0.3 * a  # one bf16 snapshot vs two float32 ones


def test_store_iv(tmp_path, rng):
    with pytest.raises(InputDataError, match="`dtype` must be one of"):
        RunStore.create(tmp_path / "x", dtype="float16")
    with pytest.raises(InputDataError, match="`on_limit` must be one of"):
        RunStore.create(tmp_path / "x", on_limit="ignore")
    with pytest.raises(InputDataError, match="`max_snapshots`"):
        RunStore.create(tmp_path / "x", max_snapshots=0)
    with pytest.raises(RunStoreError, match="does not exist"):
        RunStore.open(tmp_path / "missing")
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "data.txt").write_text("user data")
    with pytest.raises(RunStoreError, match="not a weightstats run"):
        RunStore.open(tmp_path / "plain")
    with pytest.raises(RunStoreError, match="not empty; choose a new directory"):
        RunStore.create(tmp_path / "plain")
    assert (tmp_path / "plain" / "data.txt").read_text() == "user data"  # never overwritten
    with RunStore.create(tmp_path / "r") as store:
        store.write_snapshot(0, _snap(rng))
    reader = RunStore.open(tmp_path / "r")
    with pytest.raises(InputDataError, match="`step`=3 has no snapshot.*recorded steps: 0"):
        reader.snapshot(3)
    with pytest.raises(InputDataError, match="`name`='nope'"):
        reader.tensor("nope", 0)
    with pytest.raises(InputDataError, match="`name`='a.weight' has no recorded trajectories"):
        reader.trajectories("a.weight")
    with pytest.raises(InputDataError, match="`epoch`=0 has no latents"):
        reader.latents(0)
    with pytest.raises(RunStoreError, match="read-only"):
        reader.write_snapshot(1, _snap(rng))
    with pytest.raises(InputDataError, match="`mode` must be"):
        RunStore.open(tmp_path / "r", mode="w")
    (tmp_path / "r" / "index" / "00000099.parquet").write_bytes(b"garbage")
    with pytest.raises(RunStoreError, match="unreadable"):
        reader.frame()


def test_index_parts_are_parquet(tmp_path, rng):
    with RunStore.create(tmp_path / "r") as store:
        store.write_snapshot(0, _snap(rng))
    parts = os.listdir(tmp_path / "r" / "index")
    assert len(parts) == 1
    table = pq.read_table(tmp_path / "r" / "index" / parts[0])
    assert table.num_rows == 2 and "kurtosis" in table.column_names


def test_index_part_holds_every_batch_row_as_given(tmp_path):
    """One part from batches of both kinds (dict rows with gaps, numpy column batches) reads
    back row for row, in order, with the schema's types."""
    from weightstats.capture import _io

    rows = [{"step": 3, "epoch": None, "tensor": "a", "kind": "snapshot", "numel": 6,
             "mean": 0.5, "var": 1.0, "skewness": 0.0, "kurtosis": -1.2, "shard": "s/1",
             "seq": 1},
            {"step": None, "epoch": 2, "tensor": "mu", "kind": "latent", "numel": 8,
             "mean": -0.1, "var": 2.0, "skewness": 0.3, "kurtosis": 0.4, "shard": "l/2",
             "seq": 2}]
    fin = np.arange(2 * 3 * 4, dtype=np.float64).reshape(2, 3, 4) / 7
    numeric = _io.moment_index_rows("update", np.array([10, 11]), ["x", "y", "z"], [4, 5, 6],
                                    fin, "t/3", 3)
    later = _io.moment_index_rows("update", np.array([12]), ["x"], [4], fin[:1, :1] + 1, "t/4", 4)
    for i, batches in enumerate([[_io.columns(rows), numeric, _io.columns(rows[:1])],
                                 [numeric, later]]):  # mixed; numpy columns only
        path = str(tmp_path / f"part{i}.parquet")
        _io.write_index_part(path, batches)
        got = pq.read_table(path)
        assert got.schema.equals(_io._INDEX_SCHEMA)
        want = pd.concat([pd.DataFrame(b) for b in batches], ignore_index=True)
        assert got.num_rows == len(want) == [9, 7][i]
        for col in _io.INDEX_COLUMNS:
            assert got.column(col).to_pylist() == [None if pd.isna(v) else v
                                                   for v in want[col]], col


def test_write_failure_surfaces_as_run_store_error(tmp_path, rng):
    import shutil

    store = RunStore.create(tmp_path / "r")
    shutil.rmtree(tmp_path / "r" / "snapshots")  # the disk "fails" under the writer thread
    store.write_snapshot(0, _snap(rng))
    with pytest.raises(RunStoreError, match="writing to run"):
        store.flush()
    (tmp_path / "r" / "snapshots").mkdir()
    store.close()


def test_resumed_writer_defaults_to_last_recorded_step(tmp_path):
    from weightstats.capture.hooks import WeightRecorder

    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(4, 3)
    with WeightRecorder(model, opt, every=2, flush_every=2, store=tmp_path / "r"):
        for _ in range(4):
            opt.zero_grad()
            model(x).sum().backward()
            opt.step()
    with WeightRecorder(model, opt, every=2, store=RunStore.open(tmp_path / "r", mode="a")) as r:
        assert r.step == 4
        opt.zero_grad()
        model(x).sum().backward()
        opt.step()
    r.store.close()
    reader = RunStore.open(tmp_path / "r")
    assert reader.snapshot_steps() == [0, 2, 4]
    assert reader.trajectories("weight").steps.tolist() == [1, 2, 3, 4, 5]
    assert len(reader.manifest["sessions"]) == 2
    summary = reader.summary()
    assert summary["snapshots"] == 3 and summary["snapshot_steps"] == (0, 4)
    assert summary["update_steps"] == 5 and summary["tensors"] == 2 and summary["closed"]
    assert summary["disk_usage_bytes"] == reader.disk_usage() > 0
