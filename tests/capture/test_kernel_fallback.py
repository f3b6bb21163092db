"""Without TorchScript the recorder runs the same kernels as Python, with the same records."""

from __future__ import annotations

import numpy as np
import torch
from capture._models import data, make_mlp, train

from weightstats.capture import _kernels, _writer
from weightstats.capture.hooks import WeightRecorder
from weightstats.capture.store import RunStore


def _record(path) -> RunStore:
    model = make_mlp(6, dropout=0.0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    with WeightRecorder(model, opt, every=2, coords=30, flush_every=4, store=path):
        train(model, opt, *data(), 9)
    return RunStore.open(path)


def test_python_fallback_records_what_the_scripted_kernels_record(tmp_path, monkeypatch,
                                                                 block_path):
    scripted = _record(tmp_path / "scripted")
    monkeypatch.setattr(_kernels, "block_kernel", lambda: _kernels.reduce_block)
    monkeypatch.setattr(_writer, "moments_kernel", lambda: _kernels.moments_of)
    python = _record(tmp_path / "python")
    for name in scripted.tensor_names():
        np.testing.assert_array_equal(python.trajectories(name).updates,
                                      scripted.trajectories(name).updates)
    cols = ["mean", "var", "skewness", "kurtosis"]
    a, b = scripted.frame(), python.frame()
    assert a[["step", "tensor", "kind"]].equals(b[["step", "tensor", "kind"]])
    np.testing.assert_allclose(b[cols].to_numpy(), a[cols].to_numpy(), rtol=1e-6, atol=1e-9)


def test_a_kernel_that_fails_to_compile_leaves_the_block_path(tmp_path, monkeypatch):
    """numba installed but unable to compile (an unsupported CPU, a broken LLVM): the recorder
    records through the block path instead of failing."""

    def broken(*args):
        raise RuntimeError("LLVM ERROR: cannot select")

    monkeypatch.setattr(_kernels, "step_kernel", lambda sampled=False: broken)
    run = _record(tmp_path / "r")
    assert run.manifest["recorders"]["weights"]["kernel"] == "block"
    assert len(run.trajectories("0.weight").updates) == 9
