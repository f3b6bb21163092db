"""How a WeightRecorder's cost grows with the model: moments="exact" against "sampled".

Trains MLPs of growing width on scikit-learn's ``digits`` (CPU, no download) without a recorder
and with ``WeightRecorder(every=100)`` at ``moments="exact"`` (a copy of every weight, all of
them read after each step), ``"sampled"`` (only the 4,096 sampled coordinates per tensor kept
and read, and their moments) and ``False`` (no moments). Runs are interleaved and repeated in a
shuffled order; per width the script prints the median wall time of a run without a recorder,
each setting's ratio to it, the per-step work of the recorder's kernel alone (median
microseconds of the optimizer-step hook in a hot cache, no training) and the bytes of the
recorder's per-step buffers (previous values, flush buffers).

    .venv/bin/python bench/capture_scaling.py [--widths 256,1024,2048] [--repeats 5]
                                              [--steps 300] [--batch 64] [--dir .]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from _interleave import interleaved
from sklearn.datasets import load_digits

from weightstats.capture.hooks import WeightRecorder

MODES = {"exact": True, "sampled": "sampled", "none": False}


def mlp(width: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(64, width), torch.nn.ReLU(),
                               torch.nn.Linear(width, width), torch.nn.ReLU(),
                               torch.nn.Linear(width, width), torch.nn.ReLU(),
                               torch.nn.Linear(width, 10))


def run(width: int, mode: str | None, steps: int, x, y, batch: int, folder: Path) -> float:
    """Wall seconds of `steps` Adam steps, creating and closing the recorder included."""
    model = mlp(width)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    per_epoch = x.shape[0] // batch
    t0 = time.perf_counter()
    rec = (None if mode is None else
           WeightRecorder(model, opt, every=100, moments=MODES[mode], store=folder))
    for step in range(steps):
        i = (step % per_epoch) * batch
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x[i:i + batch]), y[i:i + batch]).backward()
        opt.step()
    if rec is not None:
        rec.close()
    return time.perf_counter() - t0


def hook_cost(width: int, mode: str, folder: Path) -> tuple[float, int]:
    """(median microseconds of the recorder's step hook alone, bytes of its step buffers)."""
    model = mlp(width)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    rec = WeightRecorder(model, opt, every=10**9, moments=MODES[mode], store=folder)
    (group,) = rec._groups
    held = [getattr(group, "prev", None), group.upd, group.mom,
            *getattr(group, "blocks", [])]
    nbytes = sum(t.numel() * t.element_size() for t in held if t is not None)
    times = []
    for _ in range(300):
        t0 = time.perf_counter()
        rec._post_step(opt, (), {})
        times.append(time.perf_counter() - t0)
    rec.close()
    return statistics.median(times[50:]) * 1e6, nbytes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--widths", default="256,1024,2048")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dir", default=".", help="where the runs are written (a temporary "
                                               "folder inside it, removed at the end)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    d = load_digits()
    x = torch.tensor(d.data / 16.0, dtype=torch.float32)
    y = torch.tensor(d.target)
    widths = [int(w) for w in args.widths.split(",")]
    configs = [(w, m) for w in widths for m in (None, *MODES)]
    with tempfile.TemporaryDirectory(dir=args.dir, prefix=".capture-scaling-") as tmp:
        hooks = {}
        for w in widths:
            for m in MODES:
                hooks[(w, m)] = hook_cost(w, m, Path(tmp) / f"hook-{w}-{m}")
        times = interleaved(
            configs,
            lambda c, folder: run(*c, steps=args.steps, x=x, y=y, batch=args.batch,
                                  folder=folder),
            repeats=args.repeats, folder=Path(tmp),
            warm_up=lambda c, folder: run(*c, steps=5, x=x, y=y, batch=args.batch,
                                          folder=folder))
    print(f"{args.steps} Adam steps, batch {args.batch}, {args.threads} torch thread(s), "
          f"every=100, {args.repeats} interleaved repeats; ratio: median wall time over the "
          "median without a recorder; hook_us: the step hook alone (hot cache); "
          "buffers_MB: the recorder's per-step buffers")
    print(f"{'width':>6} {'weights':>9} {'step_ms':>8} {'moments':>8} {'ratio':>6} "
          f"{'hook_us':>8} {'buffers_MB':>10}")
    for w in widths:
        base = statistics.median(times[(w, None)])
        n = sum(p.numel() for p in mlp(w).parameters())
        for m in MODES:
            us, nbytes = hooks[(w, m)]
            print(f"{w:6d} {n:9d} {1e3 * base / args.steps:8.2f} {m:>8} "
                  f"{statistics.median(times[(w, m)]) / base:6.3f} {us:8.1f} "
                  f"{nbytes / 2**20:10.2f}")


if __name__ == "__main__":
    main()
