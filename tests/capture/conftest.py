"""Capture tests train tiny models: one torch thread is faster and deterministic on a busy box."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def block_path(monkeypatch):
    """Record through the block path (as where numba is missing) instead of the fused kernel."""
    from weightstats.capture import _kernels

    monkeypatch.setattr(_kernels, "step_kernel", lambda sampled=False: None)
