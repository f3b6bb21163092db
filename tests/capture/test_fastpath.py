"""The recorder's fast paths: hand-written safetensors encoding, batched snapshot moments, the
fused per-step kernel, the step worker of the block path (threaded and inline give bitwise the
same records; errors reach the caller)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import scipy.stats
import torch
from capture._models import data, make_mlp, train
from safetensors import safe_open
from safetensors.torch import load

from weightstats.capture import _block, _group, _io, _kernels, _writer
from weightstats.capture._io import JobThread
from weightstats.capture.hooks import WeightRecorder
from weightstats.capture.store import RunStore
from weightstats.errors import InputDataError


def test_safetensors_parts_read_back_by_safetensors(tmp_path, rng):
    tensors = {
        "f32": torch.from_numpy(rng.normal(size=(3, 5)).astype(np.float32)),
        "f64": torch.from_numpy(rng.normal(size=7)),
        "bf16": torch.randn(4, 2, generator=torch.Generator().manual_seed(1)).to(torch.bfloat16),
        "i64": torch.arange(5, dtype=torch.int64),
        "empty": torch.empty(0, 3),
        "scalar": torch.tensor(2.5),
        "strided": torch.arange(12.0).view(3, 4).t(),  # not contiguous
        "flag": torch.tensor([True, False, True]),
    }
    path = str(tmp_path / "x.safetensors")
    _io.atomic_save_tensors(path, tensors, {"kind": "snapshot", "rows": "[1]"})
    with open(path, "rb") as fh:
        back = load(fh.read())
    assert list(back) != [] and set(back) == set(tensors)
    for k, t in tensors.items():
        assert back[k].dtype == t.dtype and torch.equal(back[k], t), k
    with safe_open(path, framework="pt") as f:
        assert f.metadata() == {"kind": "snapshot", "rows": "[1]"}
        assert torch.equal(f.get_tensor("bf16"), tensors["bf16"])


@pytest.mark.parametrize("small", [_writer.SMALL_MOMENTS, 0])
def test_index_moments_match_per_tensor_and_scipy(tmp_path, rng, monkeypatch, small):
    """The store's index statistics (one float64 call for several tensors: numpy for small
    ones, the scripted kernel above SMALL_MOMENTS values) equal the same call on each tensor
    alone, and numpy / scipy."""
    monkeypatch.setattr(_writer, "SMALL_MOMENTS", small)
    xs = [torch.from_numpy(rng.standard_t(4, size=(50, 20)).astype(np.float32)),
          torch.empty(0),
          torch.from_numpy(1e4 + rng.normal(size=300)),  # mean dwarfs the spread
          torch.full((9,), 3.0),
          torch.from_numpy(rng.gamma(2.0, size=33).astype(np.float32)).to(torch.bfloat16)]
    store = RunStore.create(tmp_path / "r")
    many = store._moment_rows(xs)
    for x, row in zip(xs, many):
        one = store._moment_rows([x])[0]
        assert row["numel"] == one["numel"] == x.numel()
        for k in ("mean", "var", "skewness", "kurtosis"):
            np.testing.assert_allclose(row[k], one[k], rtol=1e-9, atol=0, equal_nan=True)
        if x.numel() and x.std() > 0:
            a = x.double().numpy().ravel()  # references: numpy var(ddof=0), scipy defaults
            np.testing.assert_allclose(row["var"], a.var(), rtol=1e-9)
            np.testing.assert_allclose(row["skewness"], scipy.stats.skew(a), rtol=1e-7)
            np.testing.assert_allclose(row["kurtosis"], scipy.stats.kurtosis(a), rtol=1e-7)
    assert np.isnan(many[1]["mean"]) and np.isnan(many[3]["skewness"])
    store.close()


def _record(path, threaded: bool) -> RunStore:
    model = make_mlp(4, dropout=0.0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = data()
    with WeightRecorder(model, opt, every=3, coords=40, flush_every=5, store=path,
                        step_thread=threaded) as rec:
        assert rec._worker.threaded is threaded
        train(model, opt, x, y, 13)
    return RunStore.open(path)


def test_threaded_and_inline_worker_record_the_same_bits(tmp_path, block_path):
    a = _record(tmp_path / "threaded", True)
    b = _record(tmp_path / "inline", False)
    assert a.manifest["recorders"]["weights"]["step_thread"] is True
    for name in a.tensor_names():
        ta, tb = a.trajectories(name), b.trajectories(name)
        np.testing.assert_array_equal(ta.updates, tb.updates)
        ma, mb = a.update_moments(name), b.update_moments(name)
        np.testing.assert_array_equal(ma[["mean", "var", "skewness", "kurtosis"]].to_numpy(),
                                      mb[["mean", "var", "skewness", "kurtosis"]].to_numpy())
        assert ma["step"].tolist() == list(range(1, 14))


def test_fused_and_block_paths_record_the_same(tmp_path, monkeypatch):
    """numba's one-pass kernel and the block reduction record the same updates, bit for bit,
    and the same moments up to the block path's float32 sums (each path is checked against
    numpy elsewhere)."""
    fused = _record(tmp_path / "fused", False)
    assert fused.manifest["recorders"]["weights"]["kernel"] == "fused"
    monkeypatch.setattr(_kernels, "step_kernel", lambda sampled=False: None)
    block = _record(tmp_path / "block", False)
    assert block.manifest["recorders"]["weights"]["kernel"] == "block"
    cols = ["mean", "var", "skewness", "kurtosis"]
    # snapshots: taken by the kernel's pass (with their power sums) or copied, the same bits;
    # statistics from the kernel's shifted sums or the store's two-pass float64 kernel
    fs, bs = (r.frame().query("kind == 'snapshot'").reset_index(drop=True)
              for r in (fused, block))
    assert fs[["step", "tensor"]].equals(bs[["step", "tensor"]]) and len(fs) == 5 * 4
    np.testing.assert_allclose(fs[cols].to_numpy(), bs[cols].to_numpy(), rtol=1e-9, atol=1e-12)
    for step in fs["step"].unique():
        a, b = fused.snapshot(int(step)), block.snapshot(int(step))
        assert all(torch.equal(a[k], b[k]) for k in b)
    for name in fused.tensor_names():
        np.testing.assert_array_equal(fused.trajectories(name).updates,
                                      block.trajectories(name).updates)
        np.testing.assert_allclose(fused.update_moments(name)[cols].to_numpy(),
                                   block.update_moments(name)[cols].to_numpy(),
                                   rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", ["in_place", "into_another_buffer", "snapshot"])
def test_fused_kernel_moments_match_numpy_when_the_mean_dwarfs_the_spread(rng, mode):
    """Power sums about the sampled mean, in float64: the central moments of -Δw stay exact
    when every coordinate moves by about the same amount (a mean 10^4 standard deviations
    away from zero), in each of the kernel's modes: the step of most steps (the previous
    weights overwritten in place), the step after a snapshot (the weights written into
    another buffer) and a snapshot step, whose snapshot is the weights, with their moments."""
    kernel = _kernels.step_kernel()
    if kernel is None:
        pytest.skip("numba is not installed")
    sizes = [3000, 7, 1]
    before = [rng.normal(size=n).astype(np.float32) for n in sizes]
    after = [(b + np.float32(1e-2) + np.float32(1e-6) * rng.standard_t(5, size=b.size)
              .astype(np.float32)).astype(np.float32) for b in before]
    params = [torch.from_numpy(a) for a in after]
    prev = np.concatenate(before)
    coords = [np.sort(rng.permutation(n)[:min(n, 50)]) for n in sizes]
    bounds = np.cumsum([0, *[c.size for c in coords]]).astype(np.int64)
    upd = np.empty(bounds[-1], np.float32)
    mom = np.empty((5, len(sizes)))
    snap, snap_sums = np.empty_like(prev), np.empty((5, len(sizes)))
    old = prev.copy()
    in_place, snapshot = mode == "in_place", mode == "snapshot"
    kernel(np.array([p.data_ptr() for p in params], np.int64), prev, prev if in_place else snap,
           in_place, np.cumsum([0, *sizes[:-1]]).astype(np.int64), np.array(sizes, np.int64),
           np.concatenate(coords).astype(np.int64), bounds, upd, 0, 1, mom, True,
           snap_sums, snapshot)
    if in_place:  # the previous weights are now the current ones
        np.testing.assert_array_equal(prev, np.concatenate(after))
    else:  # read only: the weights went into the other buffer
        np.testing.assert_array_equal(prev, old)
        np.testing.assert_array_equal(snap, np.concatenate(after))
    if snapshot:
        snap_raw = _io.moments_from_sums(snap_sums.T, np.array(sizes))
        for k, n in enumerate(sizes):  # the snapshot's statistics, against numpy and scipy
            a = after[k].astype(np.float64)
            fin = _io.finish_moments(snap_raw[k], n)
            np.testing.assert_allclose(fin[:2], [a.mean(), a.var()], rtol=1e-12, atol=1e-300)
            if n > 2:
                np.testing.assert_allclose(fin[2:], [scipy.stats.skew(a),
                                                     scipy.stats.kurtosis(a)], rtol=1e-9)
    fin = _group.update_moments_from_sums(torch.from_numpy(mom)[None], sizes)
    for k, n in enumerate(sizes):
        d = (after[k] - before[k]).astype(np.float64)  # Δw as recorded: float32 differences
        assert np.array_equal(upd[bounds[k]:bounds[k + 1]], (after[k] - before[k])[coords[k]])
        raw = _io.finish_moments(fin[0, :, k].numpy(), n)
        np.testing.assert_allclose(raw[0], d.mean(), rtol=1e-9)
        np.testing.assert_allclose(raw[1], d.var(), rtol=1e-6, atol=1e-30)
        if n > 2:
            np.testing.assert_allclose(raw[2], scipy.stats.skew(d), rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(raw[3], scipy.stats.kurtosis(d), rtol=1e-5, atol=1e-6)


def test_fused_kernel_follows_parameters_that_move(tmp_path):
    """A parameter replaced after the recorder attached (``param.data = ...``, here also
    made non-contiguous) is still read correctly: the kernel never reads a stale address."""
    model = make_mlp(4, dropout=0.0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = data()
    w = model[0].weight
    rec = WeightRecorder(model, opt, every=1, coords=10_000, flush_every=4,
                         store=tmp_path / "r")
    states = [w.detach().clone()]
    for step in range(6):
        train(model, opt, x, y, 1)
        if step == 2:
            w.data = w.data.t().contiguous().t()  # new storage, strided view
            assert not w.is_contiguous()
        states.append(w.detach().clone())
    rec.close()
    tr = RunStore.open(tmp_path / "r").trajectories("0.weight")
    expected = np.stack([(states[t] - states[t - 1]).reshape(-1)[tr.coords].numpy()
                         for t in range(1, len(states))])
    np.testing.assert_array_equal(tr.updates, expected)


def test_step_thread_must_be_bool(tmp_path):
    model = make_mlp(0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(InputDataError, match="`step_thread` must be True, False or None"):
        WeightRecorder(model, opt, store=tmp_path / "r", step_thread="yes")


@pytest.mark.parametrize("threaded", [True, False])
def test_worker_runs_in_order_and_raises_on_the_caller(threaded):
    w = JobThread(threaded=threaded, name="test-worker", no_grad=True)
    seen = []
    for i in range(50):
        w.submit(lambda i=i: seen.append(i))
    w.wait()
    assert seen == list(range(50))

    def boom():
        raise ValueError("bad step")

    if threaded:
        w.submit(boom)
        with pytest.raises(ValueError, match="bad step"):
            w.wait()
    else:  # inline: the job's exception surfaces at once
        with pytest.raises(ValueError, match="bad step"):
            w.submit(boom)
    w.submit(lambda: seen.append("after"))  # the worker keeps going after a reported error
    w.close()
    assert seen[-1] == "after"


def test_worker_thread_starts_with_the_first_job():
    w = JobThread(threaded=True, name="test-lazy-worker")
    assert w.threaded and w._thread is None
    assert "test-lazy-worker" not in {t.name for t in threading.enumerate()}
    seen = []
    w.submit(lambda: seen.append(threading.current_thread().name))
    w.wait()
    assert seen == ["test-lazy-worker"]
    w.close()
    assert not w._thread.is_alive()
    JobThread(threaded=True, name="test-unused-worker").close()  # never started: nothing to join


def test_fused_recorder_keeps_no_idle_step_thread(tmp_path):
    """Every group fused: nothing is ever handed to the step worker, so no thread runs."""
    pytest.importorskip("numba")
    model = make_mlp(0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = data()
    with WeightRecorder(model, opt, every=5, store=tmp_path / "r", step_thread=True) as rec:
        assert rec.store.manifest["recorders"]["weights"]["kernel"] == "fused"
        train(model, opt, x, y, steps=12)
        assert "weightstats-step-worker" not in {t.name for t in threading.enumerate()}


def test_worker_close_reraises_and_stops_the_thread():
    w = JobThread(threaded=True, name="test-worker", max_pending=2)

    def boom():
        raise RuntimeError("write failed")

    w.submit(boom)
    thread = w._thread
    with pytest.raises(RuntimeError, match="write failed"):
        w.close()
    assert not thread.is_alive() and not w.threaded


def test_ring_waits_when_worker_is_behind(tmp_path, monkeypatch, block_path):
    """More steps than both blocks hold queued behind a slow reduction: every step is still
    recorded (the training thread waits for a block to be free)."""
    gate = threading.Event()
    real = _block.BlockGroup._reduce

    def slow(self, *args):
        gate.wait(5)
        real(self, *args)

    monkeypatch.setattr(_block.BlockGroup, "_reduce", slow)
    model = make_mlp(5, dropout=0.0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = data()
    states = [model[0].weight.detach().clone()]
    rec = WeightRecorder(model, opt, every=100, coords=30, flush_every=50, store=tmp_path / "r",
                         step_thread=True)
    timer = threading.Timer(0.3, gate.set)
    timer.start()
    rows = rec._groups[0].rows
    assert rows > 1 and len(rec._groups[0].blocks) == 2
    for _ in range(2 * rows + 3):  # blocks in the post-hook until the gate opens
        train(model, opt, x, y, 1)
        states.append(model[0].weight.detach().clone())
    rec.close()
    timer.join()
    tr = RunStore.open(tmp_path / "r").trajectories("0.weight")
    expected = np.stack([(states[t] - states[t - 1]).reshape(-1)[tr.coords].numpy()
                         for t in range(1, len(states))])
    np.testing.assert_array_equal(tr.updates, expected)


def test_scripted_kernels_match_their_python_definitions(rng):
    block = torch.from_numpy(rng.normal(size=(2, 4, 30)).astype(np.float32))
    coords = torch.tensor([0, 7, 29])
    args = ([0, 10, 25], [10, 15, 5])
    outs = []
    for fn in (_kernels.reduce_block, _kernels.block_kernel()):
        b = block.clone()
        upd, mom = torch.empty(3, 3), torch.empty(3, 5, 3)
        fn(b, 3, coords, upd, mom, *args)
        outs.append((upd, mom))
    torch.testing.assert_close(outs[0][0], outs[1][0], rtol=0, atol=0)
    torch.testing.assert_close(outs[0][1], outs[1][1], rtol=1e-6, atol=1e-7)
    # the gathered updates are the exact differences of consecutive rows
    expected = (block[0, :3] - block[0, 1:4])[:, coords]
    torch.testing.assert_close(outs[0][0], expected, rtol=0, atol=0)
    pieces = [torch.from_numpy(rng.normal(size=n)) for n in (5, 0, 40)]
    torch.testing.assert_close(_kernels.moments_kernel()(pieces), _kernels.moments_of(pieces),
                               equal_nan=True)


def test_numpy_moments_of_small_tensors_match_the_scripted_kernel(rng):
    """Small tensors' index statistics come from numpy: the same numbers as the kernel."""
    xs = [torch.from_numpy(rng.normal(3.0, 2.0, size=(40, 7)).astype(np.float32)),
          torch.empty(0),
          torch.from_numpy(rng.gamma(2.0, size=50)),
          torch.arange(20),  # integer labels
          torch.from_numpy(rng.normal(size=33).astype(np.float32)).to(torch.bfloat16)]
    expected = _kernels.moments_kernel()([x if x.dtype in (torch.float32, torch.float64)
                                          else x.float() for x in xs]).numpy()
    np.testing.assert_allclose(_io.moments_numpy(xs), expected, rtol=1e-12, atol=1e-12,
                               equal_nan=True)


@pytest.mark.parametrize("moments", [True, False])
def test_snapshot_every_step_through_the_fused_pass_matches_the_block_path(tmp_path, monkeypatch,
                                                                          moments):
    """every=1: each snapshot buffer is also the next step's previous weights, and the
    store (one file per snapshot when bounded) hands it back while the recorder may still
    read it. Every snapshot, update and statistic equals the block path's."""

    def record(path):
        model = make_mlp(4, dropout=0.0)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        store = RunStore.create(path, max_snapshots=1000)
        with WeightRecorder(model, opt, every=1, coords=40, flush_every=4, store=store,
                            moments=moments):
            train(model, opt, *data(), 11)
        store.close()
        return RunStore.open(path)

    fused = record(tmp_path / "fused")
    monkeypatch.setattr(_kernels, "step_kernel", lambda sampled=False: None)
    block = record(tmp_path / "block")
    assert fused.manifest["recorders"]["weights"]["kernel"] == "fused"
    for step in range(12):
        a, b = fused.snapshot(step), block.snapshot(step)
        assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in b), step
    cols = ["mean", "var", "skewness", "kurtosis"]
    fs, bs = (r.frame().query("kind == 'snapshot'").sort_values(["step", "tensor"])
              for r in (fused, block))
    np.testing.assert_allclose(fs[cols].to_numpy(), bs[cols].to_numpy(), rtol=1e-9, atol=1e-12)
    for name in fused.tensor_names():
        np.testing.assert_array_equal(fused.trajectories(name).updates,
                                      block.trajectories(name).updates)


def test_worker_threads_run_torch_on_one_intra_op_thread():
    """A job thread's torch ops use one intra-op thread (their own OpenMP/MKL teams competed
    with training's and slowed it 4x when torch used every core); the creating thread's count
    and torch's default for threads created later are unchanged."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        w = JobThread(threaded=True, name="test-worker")
        seen = []
        w.submit(lambda: (torch.randn(100_000).sum(), seen.append(torch.get_num_threads())))
        w.wait()
        w.close()
        later = []
        t = threading.Thread(target=lambda: later.append(torch.get_num_threads()))
        t.start()
        t.join()
        assert seen == [1]
        assert torch.get_num_threads() == 2 and later == [2]
    finally:
        torch.set_num_threads(before)


def test_moments_from_sums_numpy_and_torch_agree(rng):
    """The numpy path (CPU, the writer thread) and the torch path (CUDA buffers) give the same
    raw moments, NaN where a tensor is empty, and those of numpy on the values."""
    xs = [rng.standard_t(5, size=n) * 1e-3 + 0.5 for n in (1000, 3, 1)]
    rows = []
    for x in xs:
        a = x.mean() + 1e-4  # a shift near the mean, as the kernels take it
        z = x - a
        rows.append([z.sum(), (z**2).sum(), (z**3).sum(), (z**4).sum(), a])
    rows.append([0.0, 0.0, 0.0, 0.0, 0.0])  # an empty tensor
    sums = np.array(rows)
    numel = np.array([x.size for x in xs] + [0])
    by_numpy = _io.moments_from_sums(sums, numel)
    by_torch = _io.moments_from_sums(torch.from_numpy(sums), torch.from_numpy(numel)).numpy()
    np.testing.assert_allclose(by_numpy, by_torch, rtol=1e-13, atol=0)
    assert np.isnan(by_numpy[-1]).all() and np.isnan(by_torch[-1]).all()
    for x, row in zip(xs, by_numpy):
        c = x - x.mean()
        np.testing.assert_allclose(row, [x.mean(), c.var(), (c**3).sum(), (c**4).sum()],
                                   rtol=1e-8, atol=1e-25)
    mom = torch.from_numpy(np.stack([sums.T, sums.T]))  # (steps, 5, K), as the groups keep it
    cpu = _group.update_moments_from_sums(mom, list(numel))
    assert cpu.shape == (2, 4, 4) and cpu.is_contiguous()
    np.testing.assert_allclose(cpu[0].numpy().T[:3], by_numpy[:3] * [-1, 1, -1, 1], rtol=1e-13)


def test_worker_thread_that_fails_to_start_queues_nothing(monkeypatch):
    """A thread that cannot start leaves the worker unstarted (no job queued for nobody);
    the next submit starts it."""
    w = JobThread(threaded=True, name="test-start-fails")
    real = threading.Thread.start

    def refuse(self):
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    with pytest.raises(RuntimeError, match="can't start"):
        w.submit(lambda: None)
    assert w._thread is None and w._queue.empty()
    monkeypatch.setattr(threading.Thread, "start", real)
    seen = []
    w.submit(lambda: seen.append(1))
    w.close()
    assert seen == [1]


@pytest.mark.parametrize(("shape", "numel"), [((5,), [10]), ((3, 5), [[7], [8], [9]]),
                                              ((2, 1, 5), [4, 6, 8])])
def test_moments_from_sums_broadcasts_as_torch_does(rng, shape, numel):
    sums = np.abs(rng.normal(size=shape)) + 1.0
    by_numpy = _io.moments_from_sums(sums, np.array(numel))
    by_torch = _io.moments_from_sums(torch.from_numpy(sums), torch.tensor(numel)).numpy()
    assert by_numpy.shape == by_torch.shape
    np.testing.assert_allclose(by_numpy, by_torch, rtol=1e-13)
