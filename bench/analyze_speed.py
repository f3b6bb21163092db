"""Speed, accuracy and memory of ``weightstats analyze``, measured side by side in one run.

Run::

    .venv/bin/python bench/analyze_speed.py                      # quick sizes
    .venv/bin/python bench/analyze_speed.py --big-values 2e9     # the 2-billion-value check

It writes synthetic checkpoints (safetensors and torch zip, plus a sharded bf16 one) whose
tensors hold Gaussian, Student-t, uniform and two-component-mixture values, and prints:

1. tensors/s and values/s of the full analysis, and its time divided by one numpy pass over the
   same values (load + sum);
2. how far the default ``max_samples`` subsample moves each statistic from the full-data value;
3. the worker start time per start method, then the speed-up of ``jobs=2`` over ``jobs=1``:
   the median of interleaved pairs beside the load average, each run's CPU seconds, and a
   no-contention estimate from CPU seconds (``--only-jobs`` runs just this part);
4. the speed-up over fitting the same families with ``scipy.stats.<dist>.fit`` plus
   scikit-learn's ``GaussianMixture`` (K = 1..4 by BIC) tensor by tensor; the scipy side is
   timed on a subset of tensors and extrapolated by number of values (said in the output);
5. peak RSS of a child process analysing a sharded bf16 checkpoint, divided by the largest
   tensor's bytes (``resource.getrusage(RUSAGE_CHILDREN)``, measured in a wrapper process so
   no other child counts).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

KINDS = ("gaussian", "t", "uniform", "mixture")


def make_tensor(kind: str, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    n = math.prod(shape)
    if kind == "gaussian":
        x = rng.normal(0, 0.02, n)
    elif kind == "t":
        x = rng.standard_t(10, n) * 0.02  # df > 8: kurtosis (1.0) and its variance finite
    elif kind == "uniform":
        x = rng.uniform(-0.03, 0.03, n)
    else:
        x = np.where(rng.random(n) < 0.5, rng.normal(-0.05, 0.01, n), rng.normal(0.05, 0.01, n))
    return x.astype(np.float32).reshape(shape)


def write_medium(directory: Path, n_params: float, seed: int = 0) -> dict[str, Path]:
    """A ~n_params checkpoint of 1024-wide matrices cycling through KINDS, in three formats."""
    import torch
    from safetensors.torch import save_file

    rng = np.random.default_rng(seed)
    per = 1024 * 1024
    n_tensors = max(4, round(n_params / per))
    sd = {
        f"layers.{i}.{KINDS[i % 4]}.weight": torch.from_numpy(
            make_tensor(KINDS[i % 4], (1024, 1024), rng)
        )
        for i in range(n_tensors)
    }
    paths = {"safetensors": directory / "medium.safetensors", "torch": directory / "medium.pt"}
    save_file(sd, str(paths["safetensors"]))
    torch.save(sd, paths["torch"])
    shard_dir = directory / "sharded"
    shard_dir.mkdir(exist_ok=True)
    names = list(sd)
    weight_map = {}
    for s, part in enumerate(np.array_split(np.arange(len(names)), 3)):
        shard = f"model-{s + 1:05d}-of-00003.safetensors"
        save_file({names[j]: sd[names[j]] for j in part}, str(shard_dir / shard))
        weight_map.update({names[j]: shard for j in part})
    (shard_dir / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    paths["sharded"] = shard_dir
    return paths


def write_big(directory: Path, n_values: float, seed: int = 0) -> tuple[Path, int]:
    """A sharded bf16 checkpoint shaped like a small LLM: a large embedding and 24 blocks.

    The embedding holds ~26 % of the values (as in a 2-billion-parameter model with a 256k
    vocabulary); returns the index path and the largest tensor's bytes.
    """
    import torch
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    width = 2048
    vocab = max(1024, int(n_values * 0.26 / width))
    per_block = (n_values - vocab * width) / 24
    ffn = max(256, int(per_block / (3 * width)))
    layout = [("model.embed_tokens.weight", (vocab, width))]
    for b in range(24):
        layout += [
            (f"model.layers.{b}.mlp.up_proj.weight", (ffn, width)),
            (f"model.layers.{b}.mlp.down_proj.weight", (width, ffn)),
            (f"model.layers.{b}.mlp.gate_proj.weight", (ffn, width)),
        ]
    weight_map, shard, shard_values, shard_no = {}, {}, 0, 1

    def flush():
        nonlocal shard, shard_values, shard_no
        if shard:
            name = f"model-{shard_no:05d}.safetensors"
            save_file(shard, str(directory / name))
            weight_map.update({k: name for k in shard})
            shard, shard_values, shard_no = {}, 0, shard_no + 1

    largest = 0
    for name, shape in layout:
        numel = math.prod(shape)
        t = torch.empty(numel, dtype=torch.bfloat16)
        step = 1 << 24
        for start in range(0, numel, step):
            stop = min(numel, start + step)
            t[start:stop] = (torch.randn(stop - start, generator=g) * 0.02).to(torch.bfloat16)
        shard[name] = t.reshape(shape)
        shard_values += numel
        largest = max(largest, numel * 2)
        if shard_values >= 300_000_000:
            flush()
    flush()
    index = directory / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": weight_map}))
    return index, largest


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def numpy_pass(path: Path) -> float:
    """One numpy pass over every value (load through the same reader, then sum)."""
    from weightstats.io.checkpoint import open_checkpoint

    t0 = time.perf_counter()
    with open_checkpoint(path) as ckpt:
        for e in ckpt.entries:
            np.sum(ckpt.load_tensor(e.name).numpy())
    return time.perf_counter() - t0


def scipy_reference(x: np.ndarray, seed: int) -> None:
    """What a user would otherwise run: scipy's MLE fit per family, sklearn GMM K=1..4 by BIC."""
    from scipy import stats
    from sklearn.mixture import GaussianMixture

    for dist in (stats.norm, stats.laplace, stats.logistic, stats.t, stats.gennorm, stats.uniform):
        dist.fit(x)
    col = x.reshape(-1, 1)
    bics = [GaussianMixture(k, random_state=seed).fit(col).bic(col) for k in range(1, 5)]
    int(np.argmin(bics))


RSS_CHILD = r"""
import resource, subprocess, sys
code = sys.argv[1]
subprocess.run([sys.executable, "-c", code], check=True)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)
"""


def child_peak_rss(code: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", RSS_CHILD, code], check=True, capture_output=True, text=True
    ).stdout
    return int(out.strip().splitlines()[-1])


START_CODE = r"""
import sys, time
import weightstats.analysis.checkpoint  # the engine, imported as the CLI does before analysing
from concurrent.futures import ProcessPoolExecutor
from weightstats.analysis import _runner
for module in _runner._PRELOAD:  # imported by jobs=1 and jobs=2 alike, before any pool
    __import__(module)
t0 = time.perf_counter()
ctx = _runner._pool_context(sys.argv[1])
with ProcessPoolExecutor(2, mp_context=ctx, initializer=_runner._init_worker) as pool:
    [f.result() for f in [pool.submit(_runner._cuda_initialized) for _ in range(2)]]
print(time.perf_counter() - t0)
"""


def worker_start_seconds(method: str) -> float:
    """Seconds from creating a 2-worker pool to both workers answering, in a fresh process."""
    out = subprocess.run(
        [sys.executable, "-c", START_CODE, method], check=True, capture_output=True, text=True
    ).stdout
    return float(out.strip().splitlines()[-1])


def lpt_makespan(costs: list[float], workers: int) -> float:
    """Finish time of `costs` given largest first to whichever worker is free first."""
    loads = [0.0] * workers
    for c in sorted(costs, reverse=True):
        loads[loads.index(min(loads))] += c
    return max(loads)


def bench_jobs(path: Path, reference, repeats: int) -> float:
    """jobs=1 and jobs=2 timed in interleaved pairs; returns the best jobs=1 wall time.

    The machine may be shared, so beside the measured ratio (median of the pairs) this prints
    the load average and a no-contention estimate from CPU seconds, which other processes do
    not inflate: jobs=1's per-tensor CPU times scheduled largest-first on two workers, plus
    jobs=1's serial part (open, hash, frame) and the measured worker start.
    """
    import statistics

    from weightstats.analysis._runner import start_method
    from weightstats.analysis.checkpoint import analyze_checkpoint

    method = start_method()
    starts = {m: worker_start_seconds(m) for m in dict.fromkeys([method, "forkserver", "spawn"])}
    print(
        "[jobs] worker start (2-worker pool to first answers, fresh process): "
        + ", ".join(f"{m} {t:.2f} s" for m, t in starts.items())
        + f"; analyze uses {method}"
    )
    pairs, differ = [], set()
    for r in range(repeats):
        load_before = os.getloadavg()[0]
        per_tensor: list[float] = []
        last = [time.process_time()]

        def tick(n, per_tensor=per_tensor, last=last):
            now = time.process_time()
            per_tensor.append(now - last[0])
            last[0] = now

        c0 = time.process_time()
        f1, t1 = timed(
            analyze_checkpoint,
            path,
            jobs=1,
            progress=tick,
            on_total=lambda n, last=last: last.__setitem__(0, time.process_time()),
        )
        cpu1 = time.process_time() - c0
        serial = cpu1 - sum(per_tensor)
        ch0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        c0 = time.process_time()
        f2, t2 = timed(analyze_checkpoint, path, jobs=2)
        parent2 = time.process_time() - c0
        ch1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        workers_cpu = (ch1.ru_utime - ch0.ru_utime) + (ch1.ru_stime - ch0.ru_stime)
        load_after = os.getloadavg()[0]
        for f in (f1, f2):
            differ |= {c for c in reference.columns if not f[c].equals(reference[c])}
        ideal2 = lpt_makespan(per_tensor, 2) + serial + starts[method]
        pairs.append((t1, t2, cpu1 / ideal2))
        print(
            f"   pair {r + 1}: jobs=1 {t1:.1f} s (CPU {cpu1:.1f} s), jobs=2 {t2:.1f} s (workers' "
            f"CPU {workers_cpu:.1f} s, parent CPU {parent2:.2f} s): {t1 / t2:.2f}x; "
            f"load average {load_before:.1f} -> {load_after:.1f}; no-contention estimate "
            f"{cpu1 / ideal2:.2f}x"
        )
    ratio = statistics.median(p[0] / p[1] for p in pairs)
    est = statistics.median(p[2] for p in pairs)
    load = os.getloadavg()[0]
    cores = os.cpu_count() or 1
    bound = (
        f"; the load average ({load:.1f}) is above 1.5 on this {cores}-core machine, so the "
        "two workers did not get two free cores and the measured ratio is bounded by the "
        "cores left free by other processes"
        if load > 1.5
        else ""
    )
    try:
        autogroup = Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1"
    except OSError:
        autogroup = False
    if autogroup and load > 1.5:
        bound += (
            " (and the kernel's autogroup scheduling is on: CPU time is shared per session, so "
            "beside other busy sessions the two workers split this session's share, as jobs=1 "
            "had it alone)"
        )
    print(
        f"[jobs] speed-up of jobs=2 over jobs=1, median of {repeats} interleaved pairs: "
        f"{ratio:.2f}x (target >= 1.7); no-contention estimate from CPU seconds {est:.2f}x"
        f"{bound}. Identical frames for jobs=1 and jobs=2: {not differ}"
        + (f" (columns differing: {sorted(differ)})" if differ else "")
    )
    return min(p[0] for p in pairs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--params", type=float, default=25e6, help="size of the speed checkpoint")
    ap.add_argument(
        "--big-values",
        type=float,
        default=2e8,
        help="values in the sharded bf16 checkpoint for the RSS check (2e9 = 4 GB)",
    )
    ap.add_argument(
        "--scipy-tensors",
        type=int,
        default=2,
        help="tensors timed with scipy/sklearn (the rest is extrapolated)",
    )
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--skip-big", action="store_true")
    ap.add_argument("--skip-jobs", action="store_true")
    ap.add_argument(
        "--jobs-repeats", type=int, default=3, help="interleaved jobs=1 / jobs=2 pairs timed"
    )
    ap.add_argument("--only-jobs", action="store_true", help="run only the jobs section")
    ap.add_argument("--only-memory", action="store_true", help="run only the peak-RSS check")
    args = ap.parse_args()

    from weightstats.analysis.checkpoint import (
        DEFAULT_MAX_SAMPLES,
        analyze_checkpoint,
        analyze_tensor,
    )

    tmp = tempfile.TemporaryDirectory(dir=args.workdir)
    work = Path(tmp.name)
    print(f"weightstats analyze benchmark (cpu count {os.cpu_count()}, work dir {work})")

    # 5. memory first (before writing the medium files, so the page cache is not crowded)
    if not args.skip_big:
        big, largest = write_big(work / "big", int(args.big_values))
        tiny = work / "tiny.safetensors"
        import torch
        from safetensors.torch import save_file

        save_file({"w": torch.randn(64, 64)}, str(tiny))
        base_code = (
            f"from weightstats.analysis.checkpoint import analyze_checkpoint; "
            f"analyze_checkpoint({str(tiny)!r})"
        )
        run_code = (
            f"from weightstats.analysis.checkpoint import analyze_checkpoint; "
            f"analyze_checkpoint({str(big)!r})"
        )
        baseline = child_peak_rss(base_code)
        (peak, seconds) = timed(child_peak_rss, run_code)
        print(
            f"[memory] sharded bf16 checkpoint of {args.big_values:.3g} values, largest tensor "
            f"{largest / 1e6:.0f} MB: child peak RSS {peak / 1e6:.0f} MB "
            f"(a 4,096-value checkpoint: {baseline / 1e6:.0f} MB) -> peak / largest tensor = "
            f"{peak / largest:.2f} (target < 3); (peak - that constant) / largest = "
            f"{(peak - baseline) / largest:.2f}; analysis took {seconds:.0f} s"
        )
        for f in (work / "big").iterdir():
            f.unlink()
    if args.only_memory:
        tmp.cleanup()
        return

    paths = write_medium(work, args.params)
    if args.only_jobs:
        bench_jobs(
            paths["safetensors"], analyze_checkpoint(paths["safetensors"]), args.jobs_repeats
        )
        tmp.cleanup()
        return
    frame, t_ws = timed(analyze_checkpoint, paths["safetensors"])
    n_values = int(frame["numel"].sum())
    n_tensors = len(frame)
    t_np = numpy_pass(paths["safetensors"])
    print(
        f"[speed] {n_tensors} tensors, {n_values:,} values, default max_samples="
        f"{DEFAULT_MAX_SAMPLES:,}: {t_ws:.1f} s = {n_tensors / t_ws:.2f} tensors/s, "
        f"{n_values / t_ws / 1e6:.2f} M values/s; one numpy pass (load + sum) {t_np:.2f} s; "
        f"analysis / numpy pass = {t_ws / t_np:.0f}x"
    )
    print(
        "        verdicts: "
        + ", ".join(f"{k} {v}" for k, v in frame["verdict"].value_counts().items())
    )
    _, t_torch = timed(analyze_checkpoint, paths["torch"])
    _, t_shard = timed(analyze_checkpoint, paths["sharded"])
    print(
        f"        same checkpoint as torch zip: {t_torch:.1f} s; "
        f"as 3 safetensors shards: {t_shard:.1f} s"
    )

    # 2. accuracy of the default subsample against all values (one tensor of each kind)
    from weightstats.io.checkpoint import open_checkpoint

    # Statistics that are 0 for a Gaussian (skewness, kurtosis, W1) or scale with n (delta BIC)
    # are compared on an absolute scale (per value for delta BIC); the others relatively.
    # KS distances are probabilities: an absolute error of 0.01 is one percentage point.
    relative = ["sd", "tail_mass_ratio"]
    absolute = [
        "skewness",
        "excess_kurtosis",
        "wasserstein1",
        "dbic_per_value",
        "ks_kaiming_uniform",
        "ks_normal_init",
    ]
    print(
        f"[accuracy] default max_samples={DEFAULT_MAX_SAMPLES:,} vs all 1,048,576 values "
        "(relative error for sd and tail mass ratio; absolute for skewness, excess kurtosis, "
        "W1, delta BIC per value and the KS distances):"
    )
    worst: dict[str, float] = {}
    with open_checkpoint(paths["safetensors"]) as ckpt:
        for i, kind in enumerate(KINDS):
            e = ckpt.entries[i]
            x = ckpt.load_tensor(e.name)
            rows = [
                analyze_tensor(
                    x, e.shape, "linear_weight", max_samples=m, rng=np.random.default_rng(0)
                )
                for m in (DEFAULT_MAX_SAMPLES, None)
            ]
            for r in rows:
                r["dbic_per_value"] = r["delta_bic_normal"] / r["n_used"]
            errs = {}
            for c in relative + absolute:
                a, b = rows[0][c], rows[1][c]
                errs[c] = abs(a - b) / abs(b) if c in relative and b else abs(a - b)
                worst[c] = max(worst.get(c, 0.0), errs[c])
            same = rows[0]["verdict"] == rows[1]["verdict"]
            print(
                f"   {kind:9s} verdict {'same' if same else 'DIFFERENT'} ({rows[0]['verdict']}); "
                + ", ".join(
                    f"{c} {errs[c]:.2%}" if c in relative else f"{c} {errs[c]:.4f}"
                    for c in relative + absolute
                )
            )
    within = [c for c in worst if worst[c] <= 0.01]
    print(
        f"   within 1% (or 0.01): {', '.join(within)}; "
        f"not: {', '.join(f'{c} ({worst[c]:.3g})' for c in worst if c not in within) or 'none'}"
    )

    # 3. jobs
    if not args.skip_jobs:
        t1 = bench_jobs(paths["safetensors"], frame, args.jobs_repeats)

    # 4. against scipy.stats fit + sklearn GaussianMixture: the same tensors timed side by side
    # (weightstats then scipy, tensor by tensor, so machine load affects both alike)
    with open_checkpoint(paths["safetensors"]) as ckpt:
        chosen = ckpt.entries[: args.scipy_tensors]
        t_ref = t_ours = 0.0
        ref_values = 0
        for e in chosen:
            _, t = timed(
                analyze_tensor,
                ckpt.row_source(e.name),
                e.shape,
                "linear_weight",
                rng=np.random.default_rng(0),
            )
            t_ours += t
            x = ckpt.load(e.name).ravel()
            _, t = timed(scipy_reference, x, 0)
            t_ref += t
            ref_values += x.size
    est = t_ref * n_values / ref_values
    best = min(t_ws, t1) if not args.skip_jobs else t_ws
    print(
        f"[vs scipy] on {len(chosen)} tensors ({ref_values:,} values), side by side: scipy.stats "
        f"fit of 6 families + sklearn GaussianMixture K=1..4 {t_ref:.1f} s, weightstats full "
        f"analysis (families, mixture, normality, tails, row-wise view) {t_ours:.1f} s -> "
        f"{t_ref / t_ours:.0f}x faster (target >= 30). Extrapolated by values to the "
        f"{n_values:,}-value checkpoint, scipy/sklearn would take {est:.0f} s against "
        f"{best:.1f} s measured for weightstats (best of its jobs=1 runs): {est / best:.0f}x"
    )
    tmp.cleanup()


if __name__ == "__main__":
    main()
