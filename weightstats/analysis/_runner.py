"""Where per-tensor work runs: this process, worker processes (``jobs``), or a Dask cluster.

Only ``(checkpoint path, tensor name, options)`` travel to a worker; the worker opens the
checkpoint by path (cached per process, memory-mapped where the format allows) and loads the
one tensor by name. Each tensor's generator depends only on the global seed and its name, so
the rows are identical however the work is spread (and BLAS/OpenMP thread counts do not change
them: checked in tests/analysis/test_runner.py).

Workers (Linux) are forked from this process, which has already imported the engine, so they
start in ~0.2 s; a fork server that imports torch/scipy first took ~4 s and ``spawn`` ~11 s on
the 2-core development machine (bench/analyze_speed.py, ``[jobs]`` section, measures it).
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import sys
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from ..errors import InputDataError, WeightstatsError

__all__ = ["analyze_by_name", "run_tasks", "start_method"]

_OPEN: dict[tuple[str, bool], Any] = {}

#: In-memory checkpoints of the runs being forked (``opened`` of :func:`run_tasks`, keyed by
#: run so that concurrent runs in threads do not mix); a forked worker reads them from its copy
#: of the parent's memory, so state dicts are never pickled.
_INHERITED: dict[int, list] = {}

#: Thread-count variables read by OpenMP/BLAS libraries that a worker's own children load.
_THREAD_ENV = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)

#: Imported once by the fork server where ``fork`` is not used (macOS).
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


def _checkpoint(path: str, allow_pickle: bool):
    key = (path, allow_pickle)
    if key not in _OPEN:
        from ..io.checkpoint import open_checkpoint

        _OPEN[key] = open_checkpoint(path, allow_pickle=allow_pickle)
    return _OPEN[key]


def start_method() -> str:
    """How ``jobs`` workers start here: ``'fork'`` on Linux, else a fork server or spawn.

    ``fork`` copies this process, which has already imported torch, scipy and the engine, so a
    worker is ready in a fraction of a second. It is safe here because the parent holds no
    CUDA context for this work, OpenBLAS shuts its threads down across ``fork``
    (``pthread_atfork``), and each worker sets torch/OpenMP/BLAS to one thread before any
    numerical work, so it never enters the parent's OpenMP thread pool (the libgomp hang that
    makes fork unsafe after parallel regions; torch's DataLoader workers rely on the same).
    macOS system libraries are not fork-safe, so there a fork server imports the heavy modules
    once and workers fork from it. As with any ``fork``, a caller that runs its own threads
    doing numerical work while ``jobs > 1`` starts its pool should not rely on it (Python 3.12+
    warns about forking multi-threaded processes); the runner's own threads are idle then.
    """
    methods = multiprocessing.get_all_start_methods()
    if sys.platform.startswith("linux") and "fork" in methods:
        return "fork"
    if "forkserver" in methods:
        return "forkserver"
    return "spawn"


def _pool_context(method: str):
    """The multiprocessing context for `method`, with the engine imported before workers start.

    Under ``fork`` the modules are imported here, once, so the workers inherit them; left to
    the workers, each would import scipy.stats and the engine itself after the fork (on the
    2-core machine that made a 2-worker pool take ~3 s to answer instead of ~0.2 s). A
    ``jobs=1`` run imports the same modules in this process, so this costs nothing extra.
    """
    ctx = multiprocessing.get_context(method)
    if method == "forkserver":
        ctx.set_forkserver_preload(_PRELOAD)
    elif method == "fork":
        for module in _PRELOAD:
            importlib.import_module(module)
    return ctx


def _cuda_initialized() -> bool:
    torch = sys.modules.get("torch")
    return bool(torch is not None and torch.cuda.is_initialized())


def _init_worker() -> None:
    """One thread per worker process (the workers are the parallelism; no oversubscription)."""
    _OPEN.clear()  # never reuse file handles inherited from the parent (shared offsets)
    for var in _THREAD_ENV:
        os.environ[var] = "1"  # for libraries loaded later, and for this worker's children
    import torch

    torch.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn (a dependency) requires it
        return
    # OpenBLAS (numpy's, scipy's) is already initialised, so the environment variables above
    # no longer reach it; threadpoolctl sets the running libraries' thread counts directly.
    threadpool_limits(limits=1)


def analyze_by_name(path: str, allow_pickle: bool, name: str, options: Mapping[str, Any]):
    """Worker entry point: open `path` (once per process) and analyse tensor `name`."""
    from .checkpoint import _analyze_entry

    ckpt = _checkpoint(path, allow_pickle)
    return _analyze_entry(ckpt, ckpt.entry(name), options)


def _analyze_inherited(run: int, index: int, entry: Any, options: Mapping[str, Any]):
    """Forked-worker entry point for an in-memory checkpoint inherited from the parent."""
    from .checkpoint import _analyze_entry

    return _analyze_entry(_INHERITED[run][index][1], entry, options)


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
    """Run ``[(checkpoint index, path or None, entry)]``; return ``{(index, name): row}``.

    With ``jobs > 1`` the parent only submits and collects: tensors go to the workers one at a
    time (chunk size 1), largest first (longest-processing-time order; an entry's cost is an
    increasing function of its size), so the workers finish close together.
    """
    from .checkpoint import _analyze_entry

    tick = progress or (lambda n: None)
    results: dict[tuple[int, str], dict] = {}
    method = start_method() if scheduler is None and jobs > 1 else None
    # In-memory checkpoints stay here, except under fork where workers inherit them (not when
    # this process uses CUDA: a forked child cannot touch the parent's CUDA tensors).
    inherit = method == "fork" and not _cuda_initialized()
    local = [
        t for t in tasks if (jobs == 1 and scheduler is None) or (t[1] is None and not inherit)
    ]
    local_ids = {id(t) for t in local}
    remote = [t for t in tasks if id(t) not in local_ids]
    for i, _path, entry in local:
        results[(i, entry.name)] = _analyze_entry(opened[i][1], entry, options)
        tick(1)
    if not remote:
        return results
    remote.sort(key=lambda t: -t[2].numel)  # stable: equal sizes keep their order
    if scheduler is not None:
        return _run_dask(remote, options, scheduler, allow_pickle, results, tick)
    return _run_pool(remote, opened, options, jobs, method, allow_pickle, results, tick)


def _run_pool(remote, opened, options, jobs, method, allow_pickle, results, tick):
    options = dict(options)
    run = id(opened)
    if method == "fork":
        _INHERITED[run] = opened  # read by the forked copies; the pool forks all workers first
    try:
        with ProcessPoolExecutor(
            max_workers=min(jobs, len(remote)),
            mp_context=_pool_context(method),
            initializer=_init_worker,
        ) as pool:
            futures = {}
            for i, path, entry in remote:
                if path is None:
                    fut = pool.submit(_analyze_inherited, run, i, entry, options)
                else:
                    fut = pool.submit(analyze_by_name, path, allow_pickle, entry.name, options)
                futures[fut] = (i, entry.name)
            try:
                for future in as_completed(futures):
                    results[futures[future]] = future.result()
                    tick(1)
            except BrokenProcessPool:
                raise WeightstatsError(
                    f"a worker process ended abruptly (out of memory?) while analysing with "
                    f"jobs={jobs}; retry with fewer jobs or a smaller max_samples."
                ) from None
            except BaseException:
                for fut in futures:
                    fut.cancel()
                raise
    finally:
        _INHERITED.pop(run, None)
    return results


def _run_dask(remote, options, scheduler, allow_pickle, results, tick):
    try:
        from distributed import Client
        from distributed import as_completed as dask_completed
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
