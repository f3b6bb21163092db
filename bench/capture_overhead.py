"""Slowdown of CPU training with weightstats recorders attached, measured side by side.

Trains a small MLP classifier and a small VAE on scikit-learn's ``digits`` (no download) with and
without a :class:`WeightRecorder` at ``every`` = 1, 10 and 100 (for the VAE also a
:class:`LatentRecorder` on a fixed evaluation batch of 256 digits once per 28-step epoch;
``100+all``: every=100 with the latents of all 1,797 digits instead; ``100s`` and ``1s``:
every=100 and every=1 with ``moments="sampled"``, the moments of the sampled coordinates'
updates, which reads only those each step). Runs are interleaved and
repeated in a shuffled order; the script prints the median wall time per configuration and its
ratio to the median without a recorder. Every recorded run includes creating and closing the
recorders (all data flushed to disk); ``fixed_ms`` says how much of the run that took. A second
run without a recorder (``noise``) gives the ratio that noise alone produces; ``copy`` hooks in
one copy of the weights per step into a fixed buffer and nothing else (the least any recorder
of exact per-step updates must do); ``kernels`` hooks in only the recorder's per-step work (the
copy into the block and the block reductions, no files): the in-loop floor of recording every
step. Besides wall time it prints the ratio of
process CPU time (all threads), which other processes on a loaded machine disturb less; the
recorder's threads make CPU time exceed wall time when a second core is free.

``--floor`` also times, alone in a hot cache, the per-step work with the kernels the recorder
uses: the copy of the weights on the training thread, the block reduction's share per step
(differences, sampled-coordinate gather, moments), and for a snapshot one concatenation plus
writing one file, each as a fraction of a training step.

    .venv/bin/python bench/capture_overhead.py [--repeats 7] [--steps 2000] [--threads 1]
                                               [--batch 64] [--moments exact] [--floor]
                                               [--step-thread auto|on|off] [--dir .]

Targets (issue 5): <= 1.05 with every=100, <= 1.25 with every=1 (a full snapshot every step).
The kernels line runs whichever per-step path the recorder would pick (numba's fused pass for
these float32 CPU models; the block path where numba is missing).
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

from weightstats.capture.hooks import LatentRecorder, WeightRecorder
from weightstats.capture.store import RunStore

EVERY = (100, 10, 1)
#: the same with moments="sampled" (the label's "s")
EVERY_SAMPLED = ("100s", "1s")

#: rows of the fixed evaluation batch whose latents the VAE runs record once per epoch
EVAL_ROWS = 256

try:
    from weightstats.capture._group import Group  # noqa: F401
    from weightstats.capture._io import JobThread  # noqa: F401
    _HAS_KERNELS = True
except ImportError:  # a weightstats from before the step worker, for before/after figures
    _HAS_KERNELS = False


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


def train_step(kind: str, model, opt, xb, yb) -> None:
    """One optimizer step: cross-entropy for the MLP, the Gaussian ELBO for the VAE."""
    opt.zero_grad()
    if kind == "mlp":
        loss = torch.nn.functional.cross_entropy(model(xb), yb)
    else:
        recon, mu, logvar = model(xb)
        loss = (torch.nn.functional.mse_loss(recon, xb, reduction="sum")
                - 0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())) / xb.shape[0]
    loss.backward()
    opt.step()


def run(kind: str, every: int | str | None, steps: int, x, y, folder: Path, batch: int,
        moments: bool | str = True, step_thread: bool | None = None
        ) -> tuple[float, float, float]:
    """(wall seconds, process CPU seconds, seconds spent creating and closing the recorders)
    of one training run; ``every="noise"``: none; ``every="kernels"``: only the recorder's
    per-step kernels, hooked in bare (no files); ``every="100+all"``: every=100 with the
    latents of all 1,797 digits instead of a fixed batch of :data:`EVAL_ROWS`; ``"100s"``,
    ``"1s"``: every=100 or 1 with ``moments="sampled"``."""
    if every == "noise":
        every = None
    if isinstance(every, str) and every.endswith("s") and every[:-1].isdigit():
        every, moments = int(every[:-1]), "sampled"
    eval_rows = EVAL_ROWS
    if every == "100+all":
        every, eval_rows = 100, x.shape[0]
    torch.manual_seed(0)
    model = MLP() if kind == "mlp" else VAE()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    n = x.shape[0]
    per_epoch = n // batch
    t0, c0 = time.perf_counter(), time.process_time()
    recs = []
    if every == "kernels":
        recs.append(_BareKernels(model, opt, moments=moments, step_thread=step_thread))
    elif every == "copy":
        recs.append(_BareCopy(model, opt))
    elif every is not None:
        recs.append(WeightRecorder(model, opt, every=every, moments=moments, store=folder / "w",
                                   step_thread=step_thread))
        if kind == "vae":
            enc = Encoder(model)
            recs.append(LatentRecorder(enc, data=(x[:eval_rows], y[:eval_rows]),
                                       store=folder / "l"))
    fixed = time.perf_counter() - t0
    for step in range(steps):
        i = (step % per_epoch) * batch
        train_step(kind, model, opt, x[i:i + batch], y[i:i + batch])
        if kind == "vae" and len(recs) == 2 and (step + 1) % per_epoch == 0:
            recs[1].end_epoch((step + 1) // per_epoch)
    t_close = time.perf_counter()
    for r in recs:
        r.close()
    t1 = time.perf_counter()
    return t1 - t0, time.process_time() - c0, fixed + t1 - t_close


class _BareKernels:
    """The per-step kernels of a WeightRecorder, hooked on the optimizer with nothing else: no
    flushes, no snapshots, no files; the block reductions inline or on a thread as the
    recorder would choose. Its ratio is the in-loop floor of the per-step work, cache
    effects included."""

    def __init__(self, model, opt, *, moments: bool | str, step_thread: bool | None) -> None:
        from weightstats.capture._block import use_step_thread
        from weightstats.capture._group import make_group
        from weightstats.capture._io import JobThread

        gen = torch.Generator().manual_seed(0)
        named = [(n, p, torch.randperm(p.numel(), generator=gen)[:4096].sort().values)
                 for n, p in model.named_parameters()]
        threaded = use_step_thread() if step_thread is None else step_thread
        self.worker = JobThread(threaded=threaded, name="bench", no_grad=True)
        self.g = make_group(named, moments=moments, flush_every=100, worker=self.worker)
        self.row = 0
        self.handles = [opt.register_step_post_hook(self.post)]

    def post(self, *args) -> None:
        with torch.no_grad():
            self.g.post(self.row)
        self.row = (self.row + 1) % 100

    def close(self) -> None:
        for h in self.handles:
            h.remove()
        self.worker.close()


class _BareCopy:
    """One copy of the weights after each step into a fixed buffer, nothing else: the least
    that any recorder of exact per-step updates must do (it needs w_{t-1} to take w_t - w_{t-1})."""

    def __init__(self, model, opt) -> None:
        self.params = list(model.parameters())
        self.buffers = [torch.empty_like(p) for p in self.params]
        self.handles = [opt.register_step_post_hook(self.post)]

    def post(self, *args) -> None:
        with torch.no_grad():
            torch._foreach_copy_(self.buffers, self.params)

    def close(self) -> None:
        for h in self.handles:
            h.remove()


def _median_us(f, n: int = 200) -> float:
    f()
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1e6


def floor(x, y, batch: int, folder: Path) -> None:
    """Time the minimal per-step work alone and print it next to a training step."""
    for kind in ("mlp", "vae"):
        _floor_one(kind, x, y, batch, folder / kind)


def _floor_one(kind: str, x, y, batch: int, folder: Path) -> None:
    from weightstats.capture._block import BlockGroup
    from weightstats.capture._group import make_group
    from weightstats.capture._io import JobThread

    torch.manual_seed(0)
    model = MLP() if kind == "mlp" else VAE()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    ps = list(model.parameters())
    xb, yb = x[:batch], y[:batch]

    t_step = _median_us(lambda: train_step(kind, model, opt, xb, yb))
    gen = torch.Generator().manual_seed(0)
    named = [(str(i), p, torch.randperm(p.numel(), generator=gen)[:4096].sort().values)
             for i, p in enumerate(ps)]
    worker = JobThread(threaded=False, name="bench")
    g = BlockGroup(named, moments=True, flush_every=100, worker=worker)
    fused = make_group(named, moments=True, flush_every=100, worker=worker)
    rows = g.rows
    with torch.no_grad():
        t_train = _median_us(lambda: torch._foreach_copy_(g.row_views[0][1], ps))
        t_gather = _median_us(lambda: torch.index_select(g.blocks[0][0, :rows], 1, g.coords_all,
                                                         out=g.upd[:rows])) / rows
        # the whole reduction (differences, gather, moments), one block, divided per step
        t_mom = _median_us(lambda: g._reduce(0, rows, 0, g.upd, g.mom), n=50) / rows - t_gather
        t_fused = _median_us(lambda: fused.post(0)) if fused.fused else float("nan")
        t_cat = _median_us(lambda: torch.cat([p.detach().reshape(-1) for p in ps]))
    snap = {str(i): p.detach().clone() for i, p in enumerate(ps)}
    folder.mkdir(parents=True, exist_ok=True)
    counter = iter(range(10**9))
    store = RunStore.create(folder / "run", background=False)
    t_file = _median_us(lambda: store.write_snapshot(next(counter), snap), n=100)
    store.close()
    n = sum(p.numel() for p in ps)
    print(f"{kind}: {len(ps)} tensors, {n} weights, training step {t_step:.0f} us; per step "
          f"(share of a step), alone in a hot cache: training thread copy {t_train:.0f} us "
          f"({t_train / t_step:.1%}); reduction of a block of {rows} steps, per step: gather "
          f"{t_gather:.0f} us + differences and moments {t_mom:.0f} us "
          f"({(t_gather + t_mom) / t_step:.1%}, on the step thread when a core is free); or "
          f"all of it in numba's fused kernel, inline: {t_fused:.0f} us "
          f"({t_fused / t_step:.1%}); snapshot: cat {t_cat:.0f} us ({t_cat / t_step:.1%}) "
          f"+ one file {t_file:.0f} us on the writer thread ({t_file / t_step:.1%})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--steps", type=int, default=2000,
                    help="training steps per run (2000: 72 epochs of digits at batch 64)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--moments", choices=("exact", "sampled", "none"), default="exact",
                    help="WeightRecorder(moments=...) of the kernels and every= lines (the "
                         "100s and 1s lines are always 'sampled')")
    ap.add_argument("--step-thread", choices=("auto", "on", "off"), default="auto",
                    help="WeightRecorder(step_thread=...): block reductions on a thread "
                         "(auto: when torch leaves a core free)")
    ap.add_argument("--dir", default=".",
                    help="where the runs are written (a temporary folder inside it, removed at "
                         "the end); default the current directory, where a user's runs would "
                         "live: on the measurement VM /tmp created files 2-7x slower than "
                         "other folders of the same disk")
    ap.add_argument("--floor", action="store_true",
                    help="also time the minimal per-step work alone")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    x, y = digits()
    if args.floor:
        with tempfile.TemporaryDirectory(dir=args.dir, prefix=".capture-bench-") as tmp:
            floor(x, y, args.batch, Path(tmp))
    extra = ("noise", "copy", "kernels") if _HAS_KERNELS else ("noise", "copy")
    shown = {kind: (None, *extra, *EVERY, *EVERY_SAMPLED,
                    *(("100+all",) if kind == "vae" else ()))
             for kind in ("mlp", "vae")}
    moments = {"exact": True, "sampled": "sampled", "none": False}[args.moments]
    configs = [(kind, every) for kind in ("mlp", "vae") for every in shown[kind]]
    step_thread = {"auto": None, "on": True, "off": False}[args.step_thread]
    with tempfile.TemporaryDirectory(dir=args.dir, prefix=".capture-bench-") as tmp:
        results = interleaved(
            configs,
            lambda c, folder: run(*c, steps=args.steps, x=x, y=y, folder=folder,
                                  batch=args.batch, moments=moments, step_thread=step_thread),
            repeats=args.repeats, folder=Path(tmp),
            warm_up=lambda c, folder: run(*c, steps=20, x=x, y=y, folder=folder,
                                          batch=args.batch))
    # per configuration: wall seconds, process CPU seconds, creating and closing the recorders
    times, cpus, fixed = ({c: [r[k] for r in rs] for c, rs in results.items()} for k in range(3))
    print(f"{args.steps} steps, batch {args.batch}, {args.threads} torch thread(s), "
          f"moments={args.moments}, step_thread={args.step_thread}, "
          f"{args.repeats} interleaved repeats; "
          "median wall seconds, ratios to no recorder (noise: a second run without one); "
          "fixed_ms: creating and closing the recorders, included in the run")
    print(f"{'model':6} {'every':>7} {'median_s':>9} {'ratio':>7} {'min_ratio':>9} "
          f"{'cpu_ratio':>9} {'fixed_ms':>8}")
    for kind in ("mlp", "vae"):
        base = statistics.median(times[(kind, None)])
        base_min = min(times[(kind, None)])
        base_cpu = statistics.median(cpus[(kind, None)])
        for every in shown[kind]:
            med = statistics.median(times[(kind, every)])
            label = "-" if every is None else str(every)
            print(f"{kind:6} {label:>7} {med:9.3f} {med / base:7.3f} "
                  f"{min(times[(kind, every)]) / base_min:9.3f} "
                  f"{statistics.median(cpus[(kind, every)]) / base_cpu:9.3f} "
                  f"{1e3 * statistics.median(fixed[(kind, every)]):8.1f}")


if __name__ == "__main__":
    main()
