"""IWAE evaluation of a small VAE: one torch thread against torch's default, side by side.

Run: .venv/bin/python bench/vae_threads.py
Prints the wall time of ``iwae_bound(k=K)`` on the 450 test digits with 1 thread and with the
default thread count, interleaved over repeats, and their ratio. The answer depends on the
load: on the shared 2-core machine at load ~4 the ratio was 0.61-0.65 (2 threads faster); at
load ~10 one thread was 5.7x faster (12.0 s vs 68.5 s for k = 5,000). ``weightstats vae
compare`` therefore defaults to ``--threads 1``; the library functions keep torch's setting.
"""

from __future__ import annotations

import statistics
import sys
import time

import torch

from weightstats.datasets import load_digits
from weightstats.vae.iwae import iwae_bound
from weightstats.vae.train import train_vae


def main(k: int = 1000, repeats: int = 3) -> None:
    data = load_digits()
    model = train_vae("gaussian", data.x_train, latent_dim=5, epochs=2, seed=0).model
    default = torch.get_num_threads()
    times: dict[str, list[float]] = {"1 thread": [], f"{default} threads (default)": []}
    for _ in range(repeats):
        for label, threads in (("1 thread", 1), (f"{default} threads (default)", None)):
            start = time.perf_counter()
            iwae_bound(model, data.x_test, k=k, num_threads=threads)
            times[label].append(time.perf_counter() - start)
    medians = {label: statistics.median(t) for label, t in times.items()}
    for label, m in medians.items():
        print(f"{label:>24}: median {m:.2f} s over {repeats} runs (k={k}, 450 examples)")
    one, many = medians.values()
    print(f"ratio default / 1 thread: {many / one:.2f}")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
