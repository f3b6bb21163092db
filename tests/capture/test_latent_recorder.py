"""LatentRecorder: output naming, fixed data vs. captured forwards, RNG and hook hygiene."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import torch

from weightstats.capture.hooks import LatentRecorder, WeightRecorder
from weightstats.capture.store import RunStore
from weightstats.errors import InputDataError


class Encoder(torch.nn.Module):
    """A VAE encoder that samples z itself with the global RNG (as most VAEs do)."""

    def __init__(self, kind: str = "tuple") -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Dropout(0.5))
        self.mu = torch.nn.Linear(16, 2)
        self.logvar = torch.nn.Linear(16, 2)
        self.kind = kind

    def forward(self, x):
        h = self.body(x)
        mu, logvar = self.mu(h), self.logvar(h)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        if self.kind == "dict":
            return {"loc": mu, "kappa": logvar.exp().sum(1), "sample": z}
        if self.kind == "pair":
            return mu, logvar
        return mu, logvar, z


def _xy(n=20):
    g = torch.Generator().manual_seed(3)
    return torch.randn(n, 8, generator=g), torch.arange(n) % 3


def test_fixed_batch_tuple_outputs_and_rng_untouched(tmp_path):
    enc = Encoder("tuple")
    x, y = _xy()
    enc.train()
    state = torch.get_rng_state()
    with LatentRecorder(enc, data=(x, y), every_epoch=2, store=tmp_path / "r") as rec:
        assert len(enc._forward_hooks) == 1
        recorded = [rec.end_epoch(e) for e in range(5)]
    assert recorded == [True, False, True, False, True]
    assert torch.equal(state, torch.get_rng_state())  # the encoder's randn ran in a forked RNG
    assert not enc._forward_hooks  # removed on exit
    assert enc.training and enc.body[1].training  # train mode restored
    store = RunStore.open(tmp_path / "r")
    assert store.latent_epochs() == [0, 2, 4]
    lat = store.latents(2)
    assert set(lat) == {"mu", "logvar", "z", "labels"}
    with torch.no_grad():  # eval mode, no dropout: mu is deterministic
        enc.eval()
        mu, logvar, _ = enc(x)
    torch.testing.assert_close(lat["mu"], mu)
    torch.testing.assert_close(lat["logvar"], logvar)
    assert torch.equal(lat["labels"], y)
    assert lat["z"].shape == (20, 2)
    # the encoder's own z is reproducible: seeded by the recorder's seed and the epoch
    assert torch.equal(RunStore.open(tmp_path / "r").latents(2)["z"], lat["z"])
    assert not torch.equal(store.latents(0)["z"], store.latents(4)["z"])
    frame = store.frame()
    rows = frame[frame["kind"] == "latent"]
    assert set(rows["tensor"]) == {"mu", "logvar", "z", "labels"}
    np.testing.assert_allclose(rows[(rows.epoch == 2) & (rows.tensor == "mu")]["mean"].iloc[0],
                               mu.double().mean().item(), rtol=1e-6)


def test_dict_outputs_mapping_and_whole_eval_set(tmp_path):
    enc = Encoder("dict")
    x, y = _xy(30)
    batches = [(x[i:i + 8], y[i:i + 8]) for i in range(0, 30, 8)]  # a loader over the eval set
    with LatentRecorder(enc, data=batches, store=tmp_path / "r",
                        outputs={"mu": "loc", "kappa": "kappa", "z": "sample"}) as rec:
        rec.end_epoch(0)
    lat = RunStore.open(tmp_path / "r").latents(0)
    assert set(lat) == {"mu", "kappa", "z", "labels"}
    assert lat["mu"].shape == (30, 2) and lat["kappa"].shape == (30,)
    assert torch.equal(lat["labels"], y)


def test_pair_outputs_sample_z_with_own_generator(tmp_path):
    enc = Encoder("pair")
    x, _ = _xy()
    enc.eval()
    with LatentRecorder(enc, data=x, store=tmp_path / "r", seed=4) as rec:
        rec.end_epoch(0)
    lat = RunStore.open(tmp_path / "r").latents(0)
    g = torch.Generator().manual_seed(4 * 1_000_003 + 0)
    with torch.no_grad():
        mu, logvar = enc(x)
    expected = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=g)
    torch.testing.assert_close(lat["z"], expected)


def test_captured_forwards_inside_epoch_block_and_shared_store(tmp_path):
    enc = Encoder("tuple")
    opt = torch.optim.SGD(enc.parameters(), lr=0.1)
    store = RunStore.create(tmp_path / "r")
    x, y = _xy()
    with WeightRecorder(enc, opt, every=1, store=store) as wrec, \
            LatentRecorder(enc, store=store, outputs=("mu", "logvar", None)) as lrec:
        for epoch in range(2):
            opt.zero_grad()
            enc(x)[0].pow(2).sum().backward()
            opt.step()
            with lrec.epoch(epoch, step=wrec.step):
                for i in range(0, 20, 10):
                    enc(x[i:i + 10])
                    lrec.add_labels(y[i:i + 10])
        enc(x)  # outside the block: not recorded
    store.close()
    reader = RunStore.open(tmp_path / "r")
    assert reader.latent_epochs() == [0, 1]
    lat = reader.latents(1)
    assert lat["mu"].shape == (20, 2) and set(lat) == {"mu", "logvar", "z", "labels"}
    frame = reader.frame()
    assert frame.loc[frame.kind == "latent", "step"].dropna().unique().tolist() == [1, 2]
    assert reader.snapshot_steps() == [0, 1, 2]
    assert set(reader.manifest["recorders"]) == {"weights", "latents"}


def test_plain_function_encoder(tmp_path):
    w = torch.randn(8, 3)
    x, y = _xy()
    with LatentRecorder(lambda inp: {"mu": inp @ w}, data=(x, y), store=tmp_path / "r") as rec:
        rec.end_epoch(0)
    torch.testing.assert_close(RunStore.open(tmp_path / "r").latents(0)["mu"], x @ w)


def test_latent_recorder_iv(tmp_path):
    enc = Encoder("tuple")
    with pytest.raises(InputDataError, match="`every_epoch`"):
        LatentRecorder(enc, every_epoch=0, store=tmp_path / "a")
    with pytest.raises(InputDataError, match="`module_or_fn`"):
        LatentRecorder(3, store=tmp_path / "b")
    with LatentRecorder(enc, store=tmp_path / "c") as rec:
        with pytest.raises(InputDataError, match="no `data`"):
            rec.end_epoch(0)
        with pytest.raises(InputDataError, match="no encoder output was captured"):
            with rec.epoch(0):
                pass
    dict_enc = Encoder("dict")
    with LatentRecorder(dict_enc, data=_xy()[0], store=tmp_path / "d",
                        outputs={"mu": "nope"}) as rec:
        with pytest.raises(InputDataError, match="does not have"):
            rec.end_epoch(0)
    with LatentRecorder(Encoder("tuple"), data=_xy()[0], store=tmp_path / "e") as rec:
        with pytest.raises(InputDataError, match="weak reference"):  # nothing kept it alive
            rec.end_epoch(0)
    assert not enc._forward_hooks


@pytest.mark.parametrize("group_s", [0.0, 3600.0])
def test_short_epochs_share_a_shard_and_read_back_per_epoch(tmp_path, monkeypatch, group_s):
    """Epochs ending within LATENT_GROUP_S of the last latent shard are written together
    (one file, keys per epoch); each reads back as its own, also from the shard's own rows."""
    from weightstats.capture import _writer

    monkeypatch.setattr(_writer, "LATENT_GROUP_S", group_s)
    store = RunStore.create(tmp_path / "r")
    written = {}
    for epoch in range(4):
        g = torch.Generator().manual_seed(epoch)
        lat = {"mu": torch.randn(6, 2, generator=g), "labels": torch.arange(6) + epoch}
        written[epoch] = lat
        store.write_latents(epoch, lat, step=10 * epoch)
    store.close()
    files = sorted(f.name for f in (tmp_path / "r" / "latents").iterdir())
    # the first epoch is written as it ends; the next ones, within the interval, together
    assert files == ([f"{e:08d}-epoch{e:06d}.safetensors" for e in range(4)] if group_s == 0
                     else ["00000000-epoch000000.safetensors",
                           "00000001-epoch000001-000003.safetensors"])
    for reopened in (RunStore.open(tmp_path / "r"), None):
        if reopened is None:  # the index parts gone: rows rebuilt from the shards
            for part in (tmp_path / "r" / "index").iterdir():
                part.unlink()
            reopened = RunStore.open(tmp_path / "r")
        assert reopened.latent_epochs() == [0, 1, 2, 3]
        df = reopened.frame()
        rows = df[df["kind"] == "latent"]
        assert rows["epoch"].tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
        assert rows["step"].tolist() == [0, 0, 10, 10, 20, 20, 30, 30]
        for epoch, lat in written.items():
            back = reopened.latents(epoch)
            assert set(back) == {"mu", "labels"}
            torch.testing.assert_close(back["mu"], lat["mu"])
            assert torch.equal(back["labels"], lat["labels"])
            mu_row = rows[(rows["epoch"] == epoch) & (rows["tensor"] == "mu")].iloc[0]
            a = lat["mu"].double().numpy().ravel()  # references: numpy, scipy (bias=True)
            np.testing.assert_allclose(mu_row["mean"], a.mean(), rtol=1e-12)
            np.testing.assert_allclose(mu_row["var"], a.var(), rtol=1e-9)
            np.testing.assert_allclose(mu_row["skewness"], scipy.stats.skew(a), rtol=1e-7)
            np.testing.assert_allclose(mu_row["kurtosis"], scipy.stats.kurtosis(a), rtol=1e-7)
            assert mu_row["numel"] == a.size


def test_waiting_latents_are_written_at_flush(tmp_path, monkeypatch):
    from weightstats.capture import _writer

    monkeypatch.setattr(_writer, "LATENT_GROUP_S", 3600.0)
    store = RunStore.create(tmp_path / "r")
    store.write_latents(0, {"mu": torch.zeros(3, 2)})
    store.write_latents(1, {"mu": torch.ones(3, 2)})  # within the interval: waits
    store._writer.wait()
    assert [f.name for f in (tmp_path / "r" / "latents").iterdir()] == [
        "00000000-epoch000000.safetensors"]
    store.flush()
    assert RunStore.open(tmp_path / "r").latent_epochs() == [0, 1]
    store.write_latents(2, {"mu": torch.full((3, 2), 2.0)})
    store.close()
    reader = RunStore.open(tmp_path / "r")
    assert reader.latent_epochs() == [0, 1, 2]
    assert torch.equal(reader.latents(2)["mu"], torch.full((3, 2), 2.0))


def test_training_flags_restored_and_custom_setattr_respected(tmp_path):
    """Every module is in eval mode while the latents are taken and back in its own mode
    after; a module class with its own ``__setattr__`` gets the flag through it."""
    seen_setattr = []

    class Watched(torch.nn.Linear):
        def __setattr__(self, name, value):
            if name == "training":
                seen_setattr.append(value)
            super().__setattr__(name, value)

    class Enc(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Linear(4, 4)
            self.b = Watched(4, 2)
            self.during = None

        def forward(self, x):
            self.during = [m.training for m in self.modules()]
            return self.b(self.a(x))

    enc = Enc()
    enc.a.eval()  # a mixed state, restored as it was
    with LatentRecorder(enc, data=torch.randn(8, 4), store=tmp_path / "r") as rec:
        seen_setattr.clear()
        rec.end_epoch(0)
    assert enc.during == [False, False, False]
    assert [m.training for m in enc.modules()] == [True, False, True]
    assert seen_setattr == [False, True]


def test_training_as_a_property_gets_its_setter(tmp_path):
    """A class whose ``training`` is a property (``torch.nn.cpp.ModuleWrapper`` has one)
    keeps ``Module.__setattr__`` but must still get eval mode through its setter."""

    class PropertyTraining(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(4, 4)
            self.seen = []

        @property
        def training(self):
            return self.__dict__.get("_mode", True)

        @training.setter
        def training(self, mode):
            self.__dict__["_mode"] = mode

        def forward(self, x):
            self.seen.append(self.training)
            return torch.nn.functional.dropout(self.lin(x), 0.9, training=self.training)

    enc = PropertyTraining()
    with LatentRecorder(enc, data=torch.ones(16, 4), store=tmp_path / "r") as rec:
        rec.end_epoch(0)
    assert enc.seen == [False] and enc.training
    mu = RunStore.open(tmp_path / "r").latents(0)["mu"]
    assert not (mu == 0).all(axis=1).any()  # no dropout: eval mode took effect
