"""A writer killed with SIGKILL mid-run leaves a store that reads back intact and continues."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from weightstats.capture.hooks import WeightRecorder
from weightstats.capture.store import RunStore

# where fork is missing, a fresh interpreter runs _child_train from this very file
CHILD = "import runpy, sys; runpy.run_path(sys.argv[1])['_child_train'](sys.argv[2])"


def _seeded_run() -> tuple:
    """The model, optimizer and batch that the writer child and the reference both train."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.Tanh(), torch.nn.Linear(256, 8))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(128, 64, generator=g), torch.randint(0, 8, (128,), generator=g)
    return model, opt, x, y


def _reference_states(n_steps: int) -> list[dict[str, torch.Tensor]]:
    """The same run, in this process, without a recorder (single-threaded: bitwise equal)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model, opt, x, y = _seeded_run()
        states = [{n: p.detach().clone() for n, p in model.named_parameters()}]
        for _ in range(n_steps):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
            states.append({n: p.detach().clone() for n, p in model.named_parameters()})
        return states, model, opt, (x, y)
    finally:
        torch.set_num_threads(threads)


def _child_train(run: str) -> None:  # pragma: no cover - runs in the forked child
    torch.set_num_threads(1)
    from weightstats.capture import hooks

    model, opt, x, y = _seeded_run()
    hooks.WeightRecorder(model, opt, every=1, coords=64, flush_every=5, store=run)
    while True:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


def _start_writer(run) -> int:
    """Fork a writer (fast: torch is already imported) or, where fork is missing, spawn one."""
    if hasattr(os, "fork"):
        pid = os.fork()
        if pid == 0:  # child
            try:
                _child_train(str(run))
            finally:
                os._exit(1)
        return pid
    argv = [sys.executable, "-c", CHILD, __file__, str(run)]
    return subprocess.Popen(argv).pid  # pragma: no cover


@pytest.mark.slow  # 2-4 s idle, 10+ s on a loaded machine; run in CI with -m slow
@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_sigkill_mid_run_then_reopen_and_continue(tmp_path):
    run = tmp_path / "run"
    pid = _start_writer(run)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # wait for a few trajectory flushes
            folder = run / "trajectories"
            if folder.exists() and len([f for f in os.listdir(folder) if f[0] != "."]) >= 2:
                break
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                pytest.fail("writer exited early")
            time.sleep(0.01)
        else:
            pytest.fail("writer made no progress")
        time.sleep(0.03)  # land the kill somewhere in the middle of a write
    finally:
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL

    store = RunStore.open(run)  # opens despite the stale writer.lock
    frame = store.frame()
    steps = store.snapshot_steps()
    assert steps[0] == 0 and len(steps) >= 10
    assert steps == list(range(steps[-1] + 1))  # every completed snapshot is there
    states, model, opt, (x, y) = _reference_states(steps[-1] + 7)
    for s in steps:  # ... and reads back bit for bit
        snap = store.snapshot(s)
        assert all(torch.equal(snap[n], states[s][n]) for n in states[s]), s
    tr = store.trajectories("0.weight")
    assert tr.steps.tolist() == list(range(1, tr.steps[-1] + 1))
    assert len(tr.steps) >= 10
    expected = np.stack([(states[t]["0.weight"] - states[t - 1]["0.weight"]).reshape(-1)
                         [tr.coords].numpy() for t in tr.steps])
    np.testing.assert_array_equal(tr.updates, expected)
    assert set(frame["kind"]) == {"snapshot", "update"}

    # continue the run from its last snapshot, in this process
    last = steps[-1]
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.copy_(states[last][n])
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    appender = RunStore.open(run, mode="a")
    with WeightRecorder(model, opt, every=1, coords=64, flush_every=5, store=appender,
                        start_step=last):
        for _ in range(7):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    appender.close()
    reread = RunStore.open(run)
    assert reread.snapshot_steps() == list(range(last + 8))
    assert torch.equal(reread.tensor("2.bias", last + 7), model[2].bias.detach())
    tr2 = reread.trajectories("0.weight")
    # updates flushed before the kill, then the continued ones; no step twice. Updates still
    # buffered in memory at the kill (fewer than flush_every) are lost by design.
    assert np.all(np.diff(tr2.steps) > 0)
    assert set(tr.steps) | set(range(last + 1, last + 8)) == set(tr2.steps)
    assert last + 1 - tr.steps[-1] <= 5
    assert reread.manifest["closed"] is True
    assert not (run / "writer.lock").exists()
    leftovers = [f for d in os.listdir(run) if (run / d).is_dir()
                 for f in os.listdir(run / d) if f.startswith(".")]
    assert leftovers == []  # the appender removed the killed writer's temporary files
