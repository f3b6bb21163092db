"""Under a real torch.distributed group (gloo, two processes) only rank 0 writes."""

from __future__ import annotations

import os
import sys

import pytest
import torch

from weightstats.capture.store import RunStore


def _worker(rank: int, world: int, run: str, port: str) -> None:  # pragma: no cover - child
    import torch.distributed as dist

    from weightstats.capture.hooks import WeightRecorder

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        model = torch.nn.Linear(4, 2)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        with WeightRecorder(model, opt, every=1, store=run) as rec:
            for _ in range(3):
                opt.zero_grad()
                model(torch.randn(8, 4)).sum().backward()
                # gradients averaged by hand after backward rather than by DDP inside it:
                # torch 2.13 stashes a Python object in thread-local state during backward,
                # gloo's work objects capture it, and destroying them on gloo's thread at
                # teardown needs the GIL that the destroying main thread holds (a deadlock,
                # about 1 run in 4, with or without a recorder)
                for p in model.parameters():
                    dist.all_reduce(p.grad)
                    p.grad /= world
                opt.step()
        assert rec.active == (rank == 0)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # two processes and a gloo rendezvous
@pytest.mark.skipif(sys.platform != "linux" or not torch.distributed.is_available(),
                    reason="needs torch.distributed and fork")
def test_only_rank_zero_writes(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    mp.start_processes(_worker, args=(2, str(tmp_path / "run"), port), nprocs=2,
                       start_method="fork", join=True)
    store = RunStore.open(tmp_path / "run")
    assert store.snapshot_steps() == [0, 1, 2, 3]
    assert len(store.manifest["sessions"]) == 1  # one writer only
    assert store.tensor_names() == ["weight", "bias"]
