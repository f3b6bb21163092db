"""Where per-tensor work runs: this process, worker processes (``jobs``), or a Dask cluster.

Only ``(checkpoint path, tensor name, options)`` travel to a worker; the worker opens the
checkpoint by path (cached per process, memory-mapped where the format allows) and loads the
one tensor by name. Each tensor's generator depends only on the global seed and its name, so
the rows are identical however the work is spread.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, Callable, Mapping

from ..errors import InputDataError

__all__ = ["run_tasks", "analyze_by_name"]

_OPEN: dict[tuple[str, bool], Any] = {}


def _checkpoint(path: str, allow_pickle: bool):
    key = (path, allow_pickle)
    if key not in _OPEN:
        from ..io.checkpoint import open_checkpoint

        _OPEN[key] = open_checkpoint(path, allow_pickle=allow_pickle)
    return _OPEN[key]


#: Imported once by the fork server; workers fork from it with these already loaded.
_PRELOAD = [
    "torch",
    "scipy.stats",
    "pandas",
    "weightstats.analysis.checkpoint",
    "weightstats.stats.fit",
    "weightstats.stats.mixture",
    "weightstats.stats.normality",
    "weightstats.stats.verdict",
    "weightstats.stats.tails",
]


def _pool_context():
    """Worker start method: a fork server where available, else spawn.

    Plain ``fork`` of this process could deadlock once torch's thread pools run; a fork server
    is a clean process that imported the heavy modules once, so each worker starts in well
    under a second instead of re-importing torch and scipy (several seconds under ``spawn``).
    """
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(_PRELOAD)
        return ctx
    return multiprocessing.get_context("spawn")


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)  # one process per core; no oversubscription


def analyze_by_name(path: str, allow_pickle: bool, name: str, options: Mapping[str, Any]):
    """Worker entry point: open `path` (once per process) and analyse tensor `name`."""
    from .checkpoint import _analyze_entry

    ckpt = _checkpoint(path, allow_pickle)
    return _analyze_entry(ckpt, ckpt.entry(name), options)


def run_tasks(
    tasks,
    opened,
    options,
    *,
    jobs: int,
    scheduler: str | None,
    allow_pickle: bool,
    progress: Callable[[int], None] | None,
):
    """Run ``[(checkpoint index, path or None, entry)]``; return ``{(index, name): row}``."""
    from .checkpoint import _analyze_entry

    tick = progress or (lambda n: None)
    results: dict[tuple[int, str], dict] = {}
    local = [t for t in tasks if t[1] is None or (jobs == 1 and scheduler is None)]
    remote = [t for t in tasks if t not in local]
    for i, _path, entry in local:
        results[(i, entry.name)] = _analyze_entry(opened[i][1], entry, options)
        tick(1)
    if not remote:
        return results
    remote.sort(key=lambda t: -t[2].numel)  # largest first balances the workers
    if scheduler is not None:
        return _run_dask(remote, options, scheduler, allow_pickle, results, tick)
    ctx = _pool_context()
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_init_worker) as pool:
        futures = {
            pool.submit(analyze_by_name, path, allow_pickle, entry.name, dict(options)): (
                i,
                entry.name,
            )
            for i, path, entry in remote
        }
        for future in as_completed(futures):
            results[futures[future]] = future.result()
            tick(1)
    return results


def _run_dask(remote, options, scheduler, allow_pickle, results, tick):
    try:
        from distributed import Client, as_completed as dask_completed
    except ImportError:
        raise InputDataError(
            "`scheduler` needs dask.distributed; pip install 'weightstats[dask]'."
        ) from None
    try:
        client = Client(scheduler, timeout=10, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise InputDataError(
            f"cannot reach the Dask scheduler at {scheduler!r} ({exc}); check --scheduler."
        ) from None
    try:
        futures = {}
        for i, path, entry in remote:
            fut = client.submit(
                analyze_by_name,
                path,
                allow_pickle,
                entry.name,
                dict(options),
                pure=False,
                key=f"weightstats-{i}-{entry.name}-{id(remote)}",
            )
            futures[fut] = (i, entry.name)
        for fut in dask_completed(list(futures), loop=client.loop):
            results[futures[fut]] = fut.result()
            tick(1)
    finally:
        client.close()
    return results
