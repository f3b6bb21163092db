"""Slowdown of CPU training with weightstats recorders attached, measured side by side.

Trains a small MLP classifier and a small VAE on scikit-learn's ``digits`` (no download) with and
without a :class:`WeightRecorder` at ``every`` = 1, 10 and 100 (for the VAE also a
:class:`LatentRecorder` on the whole digits set once per epoch). Runs are interleaved and
repeated in a shuffled order; the script prints the median wall time per configuration and its
ratio to the median without a recorder. Every recorded run includes closing the recorder
(all data flushed to disk).

    .venv/bin/python bench/capture_overhead.py [--repeats 7] [--steps 300] [--threads 1]
                                               [--batch 64] [--no-moments]

Targets (issue 5): <= 1.05 with every=100, <= 1.25 with every=1 (a full snapshot every step).
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch
from sklearn.datasets import load_digits

from weightstats.capture.hooks import LatentRecorder, WeightRecorder

EVERY = (100, 10, 1)


def digits() -> tuple[torch.Tensor, torch.Tensor]:
    d = load_digits()
    return torch.tensor(d.data / 16.0, dtype=torch.float32), torch.tensor(d.target)


class MLP(torch.nn.Sequential):
    def __init__(self) -> None:
        super().__init__(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256),
                         torch.nn.ReLU(), torch.nn.Linear(256, 10))


class VAE(torch.nn.Module):
    def __init__(self, d: int = 8) -> None:
        super().__init__()
        self.encoder = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(),
                                           torch.nn.Linear(256, 2 * d))
        self.decoder = torch.nn.Sequential(torch.nn.Linear(d, 256), torch.nn.ReLU(),
                                           torch.nn.Linear(256, 64))

    def encode(self, x):
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar

    def forward(self, x):
        mu, logvar = self.encode(x)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        return self.decoder(z), mu, logvar


class Encoder(torch.nn.Module):
    """The VAE's encoder as a module returning (mu, logvar), for the LatentRecorder."""

    def __init__(self, vae: VAE) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, x):
        return self.vae.encode(x)


def run(kind: str, every: int | None, steps: int, x, y, folder: Path, batch: int,
        moments: bool = True) -> float:
    torch.manual_seed(0)
    model = MLP() if kind == "mlp" else VAE()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    n = x.shape[0]
    per_epoch = n // batch
    t0 = time.perf_counter()
    recs = []
    if every is not None:
        recs.append(WeightRecorder(model, opt, every=every, moments=moments, store=folder / "w"))
        if kind == "vae":
            enc = Encoder(model)
            recs.append(LatentRecorder(enc, data=(x, y), store=folder / "l"))
    for step in range(steps):
        i = (step % per_epoch) * batch
        xb, yb = x[i:i + batch], y[i:i + batch]
        opt.zero_grad()
        if kind == "mlp":
            loss = torch.nn.functional.cross_entropy(model(xb), yb)
        else:
            recon, mu, logvar = model(xb)
            loss = (torch.nn.functional.mse_loss(recon, xb, reduction="sum")
                    - 0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())) / batch
        loss.backward()
        opt.step()
        if kind == "vae" and every is not None and (step + 1) % per_epoch == 0:
            recs[1].end_epoch((step + 1) // per_epoch)
    for r in recs:
        r.close()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-moments", action="store_true",
                    help="record only the sampled coordinates (WeightRecorder(moments=False))")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    x, y = digits()
    configs = [(kind, every) for kind in ("mlp", "vae") for every in (None, *EVERY)]
    times: dict[tuple, list[float]] = {c: [] for c in configs}
    order_rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        for c in configs:  # warm-up (allocator, file cache)
            run(*c, steps=20, x=x, y=y, folder=Path(tmp) / "warm", batch=args.batch)
            shutil.rmtree(Path(tmp) / "warm", ignore_errors=True)
        for rep in range(args.repeats):
            order = configs[:]
            order_rng.shuffle(order)
            for c in order:
                folder = Path(tmp) / f"r{rep}"
                times[c].append(run(*c, steps=args.steps, x=x, y=y, folder=folder,
                                    batch=args.batch, moments=not args.no_moments))
                shutil.rmtree(folder, ignore_errors=True)
    print(f"{args.steps} steps, batch {args.batch}, {args.threads} torch thread(s), "
          f"moments={not args.no_moments}, {args.repeats} interleaved repeats; "
          "median seconds and ratio to no recorder")
    print(f"{'model':6} {'every':>6} {'median_s':>9} {'ratio':>7} {'min_ratio':>9}")
    for kind in ("mlp", "vae"):
        base = statistics.median(times[(kind, None)])
        base_min = min(times[(kind, None)])
        for every in (None, *EVERY):
            med = statistics.median(times[(kind, every)])
            label = "-" if every is None else str(every)
            print(f"{kind:6} {label:>6} {med:9.3f} {med / base:7.3f} "
                  f"{min(times[(kind, every)]) / base_min:9.3f}")


if __name__ == "__main__":
    main()
