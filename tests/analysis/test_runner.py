"""Worker processes of ``analyze_checkpoint(jobs=N)``: same rows, fast start, one thread each."""

from __future__ import annotations

import os
import sys
from concurrent.futures import ProcessPoolExecutor

import pandas as pd
import pytest
from helpers import importorskip, skip_unless

from weightstats.analysis import _runner
from weightstats.analysis.checkpoint import analyze_checkpoint
from weightstats.errors import WeightstatsError

torch = importorskip("torch")
from safetensors.torch import save_file

LINUX = sys.platform.startswith("linux")


@pytest.fixture
def files(tmp_path):
    """A safetensors file and a torch zip file of a few unequal tensors (seeded)."""
    g = torch.Generator().manual_seed(7)
    save_file(
        {
            "encoder.0.weight": torch.randn(60, 50, generator=g) * 0.05,
            "encoder.1.weight": torch.rand(40, 30, generator=g) - 0.5,
            "encoder.1.bias": torch.randn(40, generator=g),
        },
        str(tmp_path / "a.safetensors"),
    )
    torch.save(
        {"head.weight": torch.distributions.StudentT(3.0).sample((25, 40))}, tmp_path / "b.pt"
    )
    return [tmp_path / "a.safetensors", tmp_path / "b.pt"]


def test_start_method_is_fork_on_linux():
    skip_unless(LINUX, "fork start is used on Linux only")
    assert _runner.start_method() == "fork"


def test_jobs_give_identical_frames_with_files_and_state_dicts(files):
    g = torch.Generator().manual_seed(3)
    state = {"fc.weight": torch.randn(70, 20, generator=g), "fc.bias": torch.randn(70, generator=g)}
    sources = [*files, state]
    one = analyze_checkpoint(sources, max_samples=1200, seed=4, jobs=1)
    two = analyze_checkpoint(sources, max_samples=1200, seed=4, jobs=2)
    three = analyze_checkpoint(sources, max_samples=1200, seed=4, jobs=3)
    assert (one["status"] == "analysed").sum() == 5  # encoder.1.bias: fewer than min_numel
    pd.testing.assert_frame_equal(one, two)
    pd.testing.assert_frame_equal(one, three)


def _record_runs(monkeypatch):
    calls = []

    def fake_pool(remote, opened, options, jobs, method, allow_pickle, results, tick):
        calls.append(([(i, e.name) for i, _p, e in remote], method))
        from weightstats.analysis.checkpoint import _analyze_entry

        for i, _p, e in remote:
            results[(i, e.name)] = _analyze_entry(opened[i][1], e, options)
        return results

    monkeypatch.setattr(_runner, "_run_pool", fake_pool)
    return calls


def test_workers_get_largest_tensors_first(monkeypatch):
    skip_unless(LINUX, "in-memory state dicts reach workers only when forked")
    calls = _record_runs(monkeypatch)
    g = torch.Generator().manual_seed(0)
    sizes = {"a.weight": (10, 10), "b.weight": (40, 40), "c.weight": (20, 20), "d.weight": (40, 40)}
    state = {k: torch.randn(*s, generator=g) for k, s in sizes.items()}
    analyze_checkpoint(state, max_samples=None, jobs=2)
    ((order, method),) = calls
    assert method == "fork"
    # Largest first; equal sizes keep layer order (b before d).
    assert [name for _i, name in order] == ["b.weight", "d.weight", "c.weight", "a.weight"]


def test_jobs_one_runs_everything_here(monkeypatch):
    calls = _record_runs(monkeypatch)
    analyze_checkpoint({"w": torch.randn(30, 30)}, jobs=1)
    assert calls == []


def _probe():
    from threadpoolctl import threadpool_info

    # Big enough for torch's parallel path: a forked child that kept 2 threads hangs here in
    # libgomp (checked by hand: fork after a parallel region, then torch.randn(4e6).sum()).
    torch.randn(4_000_000).sum().item()
    return torch.get_num_threads(), sorted({p["num_threads"] for p in threadpool_info()})


def test_workers_are_single_threaded_even_after_parallel_torch_in_parent():
    """A forked worker must not enter the parent's OpenMP pool (libgomp hangs) nor oversubscribe.

    The parent first runs a multi-threaded torch op, so its OpenMP/BLAS pools exist at fork.
    """
    importorskip("threadpoolctl")
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        x = torch.randn(1000, 1000)
        (x @ x).sum().item()
        torch.randn(4_000_000).sum().item()
        ctx = _runner._pool_context(_runner.start_method())
        pool = ProcessPoolExecutor(2, mp_context=ctx, initializer=_runner._init_worker)
        try:
            futures = [pool.submit(_probe) for _ in range(2)]
            got = [f.result(timeout=60) for f in futures]
        finally:
            for proc in list(pool._processes.values()):  # a hung worker must not hang pytest
                proc.kill()
            pool.shutdown(wait=True, cancel_futures=True)
    finally:
        torch.set_num_threads(before)
    assert got == [(1, [1])] * 2


def test_rows_do_not_depend_on_thread_counts(files):
    """Workers run with one BLAS/OpenMP thread, the jobs=1 path with the caller's setting."""
    threadpoolctl = importorskip("threadpoolctl")
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        many = analyze_checkpoint(files, max_samples=1200, seed=9)
        torch.set_num_threads(1)
        with threadpoolctl.threadpool_limits(limits=1):
            single = analyze_checkpoint(files, max_samples=1200, seed=9)
    finally:
        torch.set_num_threads(before)
    pd.testing.assert_frame_equal(many, single)


def _die(*args):
    os._exit(3)  # a worker killed mid-task (the OOM killer, a segfault in a library)


def test_dead_worker_is_one_line_error(files, monkeypatch):
    skip_unless(LINUX, "workers see the patched entry point only when forked")
    monkeypatch.setattr(_runner, "analyze_by_name", _die)
    with pytest.raises(WeightstatsError, match=r"worker process ended abruptly.*fewer jobs"):
        analyze_checkpoint(files[0], jobs=2)


def test_concurrent_runs_in_threads_keep_their_own_state_dicts():
    from concurrent.futures import ThreadPoolExecutor

    g = torch.Generator().manual_seed(11)
    states = [{"w": torch.randn(40, 40, generator=g) * (k + 1)} for k in range(2)]
    with ThreadPoolExecutor(2) as threads:
        two = list(threads.map(lambda s: analyze_checkpoint(s, max_samples=900, jobs=2), states))
    for state, frame in zip(states, two):
        pd.testing.assert_frame_equal(frame, analyze_checkpoint(state, max_samples=900, jobs=1))
