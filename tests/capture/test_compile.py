"""Hooks registered before ``torch.compile`` keep working (optimizer and forward hooks)."""

from __future__ import annotations

import pytest
import torch
from capture._models import data, make_mlp, train

from weightstats.capture.hooks import LatentRecorder, WeightRecorder
from weightstats.capture.store import RunStore


def _run(tmp_path, backend: str, record: bool):
    torch._dynamo.reset()
    x, y = data()
    model = make_mlp(0, dropout=0.0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    recs = []
    if record:  # attached first, compiled afterwards
        recs = [WeightRecorder(model, opt, every=2, coords=10, store=tmp_path / "w"),
                LatentRecorder(model[0], store=tmp_path / "l", outputs=("mu",))]
    compiled = torch.compile(model, backend=backend)
    train(compiled, opt, x, y, 4)
    if record:
        with recs[1].epoch(0):
            compiled(x)  # the forward hook on the inner Linear fires inside the compiled model
        for r in recs:
            r.close()
    return model, x


@pytest.mark.slow  # importing dynamo alone takes 2-10 s here; inductor compiles for ~20 s
@pytest.mark.parametrize("backend", ["eager", "inductor"])
def test_recorders_attached_before_compile(tmp_path, backend):
    plain, _ = _run(tmp_path / "a", backend, record=False)
    recorded, x = _run(tmp_path, backend, record=True)
    for p, q in zip(plain.parameters(), recorded.parameters()):
        assert torch.equal(p, q)
    store = RunStore.open(tmp_path / "w")
    assert store.snapshot_steps() == [0, 2, 4]
    assert store.trajectories("0.weight").updates.shape == (4, 10)
    assert torch.equal(store.tensor("3.bias", 4), recorded[3].bias.detach())
    lat = RunStore.open(tmp_path / "l").latents(0)["mu"]
    with torch.no_grad():
        torch.testing.assert_close(lat, recorded[0](x))
