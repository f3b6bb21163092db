"""A process that recorded a run can still fork workers that use torch.distributed."""

from __future__ import annotations

import sys

import pytest
import torch
from capture._models import data, make_mlp, train
from capture import test_distributed

from weightstats.capture.hooks import WeightRecorder


@pytest.mark.slow  # two forked processes and a gloo rendezvous
@pytest.mark.timeout(120)
@pytest.mark.skipif(sys.platform != "linux" or not torch.distributed.is_available(),
                    reason="needs torch.distributed and fork")
def test_distributed_children_forked_after_a_threaded_recording(tmp_path):
    # reductions forked onto torch's inter-op pool made this hang: a forked child inherits the
    # pool without its threads, and torch.distributed sends work to it
    model = make_mlp(0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with WeightRecorder(model, opt, every=1, flush_every=5, store=tmp_path / "parent",
                        step_thread=True):
        train(model, opt, *data(), 12)
    test_distributed.test_only_rank_zero_writes(tmp_path)
