"""The CLT experiment grid: train small digits models with recorders attached, then analyse.

Each run trains one model (the MLP or CNN classifier, or the Gaussian VAE, on scikit-learn's
``digits``) from one initialisation with one optimizer and learning rate, with a
:class:`~weightstats.capture.hooks.WeightRecorder` recording every optimizer step of a seeded
sample of coordinates of each weight tensor. Then :func:`~weightstats.analysis.clt.analyze_clt`
runs on the recorded run. Everything is seeded and every run trains on one torch thread, so the
same config gives the same table on the same machine, whether the runs execute one after the
other or in ``jobs`` worker processes.

Output directory layout (nothing existing is overwritten without ``force=True``, and even then
only a directory this module wrote, recognised by its ``experiment.json``)::

    OUT/experiment.json   the config, the versions, and the list of runs
    OUT/runs/<run_id>/    one RunStore per run (``weightstats clt OUT/runs/<run_id>`` reads it)
    OUT/results.csv       one row per (run, tensor): the run's settings + the CLT summary
    OUT/curves.csv        accumulated-update kurtosis against steps, per (run, tensor)
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InputDataError, WeightstatsError
from ._clt_runs import MODEL_KINDS, RunSpec, execute_run, train_run

__all__ = [
    "CONFIG_DIR",
    "ExperimentResult",
    "RunSpec",
    "expand_grid",
    "load_config",
    "run_clt_experiment",
    "train_run",
]

#: where the bundled configs live (``clt_default.json``, ``clt_quick.json``).
CONFIG_DIR = Path(__file__).resolve().parents[2] / "data" / "experiments"
_MARKER = "experiment.json"
_OPTIMIZERS = ("sgd", "adam")


@dataclass(frozen=True, eq=False)
class ExperimentResult:
    """What :func:`run_clt_experiment` wrote.

    Attributes
    ----------
    results : pandas.DataFrame
        One row per (run, tensor): :meth:`RunSpec.settings` columns, ``test_accuracy``
        (classifiers; NaN for the VAE), ``test_neg_elbo`` (VAE: test-set negative ELBO, nats
        per image; NaN for classifiers), ``n_optimizer_steps``, ``train_seconds``,
        ``analysis_seconds``, ``n_warnings`` and the columns of
        :attr:`~weightstats.analysis.clt.CLTAnalysis.summary`.
    curves : pandas.DataFrame
        ``run_id`` + the columns of :attr:`~weightstats.analysis.clt.CLTAnalysis.curves`.
    out_dir : pathlib.Path
    config : dict
    """

    results: pd.DataFrame
    curves: pd.DataFrame
    out_dir: Path
    config: dict

    def __repr__(self) -> str:
        n_runs = self.results["run_id"].nunique() if len(self.results) else 0
        return (f"ExperimentResult({self.config.get('name')!r}, {n_runs} runs, "
                f"{len(self.results)} tensors, out_dir={str(self.out_dir)!r})")


# --------------------------------------------------------------------------- config


def _bundled_config(name: str) -> Path:
    if not CONFIG_DIR.is_dir():
        raise InputDataError(
            f"the bundled experiment configs are not installed (no directory {str(CONFIG_DIR)!r}:"
            " they live in the repository's data/experiments/, which only an editable install "
            "can see); pass your own JSON with --config PATH (Python: config=PATH), e.g. a copy "
            f"of clt_{name}.json from the weightstats repository."
        )
    return CONFIG_DIR / f"clt_{name}.json"


def _check_optimizers(optimizers: Any, where: str) -> None:
    if not isinstance(optimizers, list) or not optimizers:
        raise InputDataError(f"config {where}`optimizers` must be a non-empty list.")
    for o in optimizers:
        if not isinstance(o, Mapping) or o.get("name") not in _OPTIMIZERS:
            name = o.get("name") if isinstance(o, Mapping) else o
            raise InputDataError(f"config optimizer {name!r} is not one of "
                                 f"{list(_OPTIMIZERS)}.")
        lrs = o.get("lrs")
        if not isinstance(lrs, list) or not lrs or any(
                not isinstance(lr, (int, float)) or not lr > 0 for lr in lrs):
            raise InputDataError("config optimizer `lrs` must be a non-empty list of positive "
                                 "learning rates.")


def load_config(config: str | os.PathLike | Mapping[str, Any] = "default") -> dict:
    """Load and check an experiment config.

    Parameters
    ----------
    config : {'default', 'quick'}, path or mapping
        A bundled config's short name, a JSON file, or the config itself. Keys: ``models``
        (each ``{"kind": "mlp" | "cnn" | "vae", "widths": [[...], ...]}``, a VAE also
        ``latent_dim``; any model may list its own ``optimizers``), ``inits``, ``optimizers``
        (each ``{"name": "sgd" | "adam", "lrs": [...], "momentum": m}``), ``epochs``,
        ``batch_size``; optional ``seed``, ``jobs``, ``data``, ``record``, ``analysis``.
    """
    if isinstance(config, Mapping):
        cfg = dict(config)
    else:
        text = str(config)
        path = _bundled_config(text) if text in ("default", "quick") else Path(text)
        if not path.is_file():
            raise InputDataError(f"`config` {text!r} is neither 'default', 'quick' nor an "
                                 f"existing JSON file.")
        try:
            cfg = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise InputDataError(f"`config` {str(path)!r} is not valid JSON: {exc}") from None
        if not isinstance(cfg, dict):
            raise InputDataError(f"`config` {str(path)!r} must hold a JSON object.")
        cfg.setdefault("name", path.stem)
    required = ("models", "inits", "optimizers", "epochs", "batch_size")
    missing = [k for k in required if k not in cfg]
    if missing:
        raise InputDataError(f"the experiment config lacks {missing}; see "
                             "data/experiments/clt_quick.json in the repository for the format.")
    from ..nets import INIT_SCHEMES

    for init in cfg["inits"]:
        if init not in INIT_SCHEMES:
            raise InputDataError(f"config `inits` has {init!r}; choose from {list(INIT_SCHEMES)}.")
    for m in cfg["models"]:
        if not isinstance(m, Mapping) or m.get("kind") not in MODEL_KINDS:
            kind = m.get("kind") if isinstance(m, Mapping) else m
            raise InputDataError(f"config model kind {kind!r} is not one of "
                                 f"{list(MODEL_KINDS)}.")
        widths = m.get("widths", [])
        if not isinstance(widths, list) or any(
                not isinstance(w, list) or not w or any(not isinstance(v, int) or v < 1
                                                        for v in w) for w in widths):
            raise InputDataError(f"config {m['kind']} `widths` must be a list of lists of "
                                 "positive integers.")
        if m["kind"] == "cnn" and any(len(w) != 2 for w in widths):
            raise InputDataError("config `cnn` widths must be pairs of channel counts.")
        if m["kind"] == "vae":
            ld = m.get("latent_dim", 8)
            if not isinstance(ld, int) or ld < 1:
                raise InputDataError(f"config vae `latent_dim` must be a positive integer; got "
                                     f"{ld!r}.")
        if "optimizers" in m:
            _check_optimizers(m["optimizers"], f"{m['kind']} model's ")
    _check_optimizers(cfg["optimizers"], "")
    for key in ("epochs", "batch_size"):
        if not isinstance(cfg[key], int) or cfg[key] < 1:
            raise InputDataError(f"config `{key}` must be a positive integer; got {cfg[key]!r}.")
    jobs = cfg.get("jobs", 1)
    if not isinstance(jobs, int) or jobs < 1:
        raise InputDataError(f"config `jobs` must be a positive integer; got {jobs!r}.")
    return cfg


_DEFAULT_WIDTHS = {"mlp": [[64, 32]], "cnn": [[8, 16]], "vae": [[128]]}


def expand_grid(config: Mapping[str, Any]) -> list[RunSpec]:
    """The runs of a config: models x widths x inits x optimizers x learning rates."""
    specs = []
    seed = int(config.get("seed", 0))
    for m in config["models"]:
        latent = int(m.get("latent_dim", 8)) if m["kind"] == "vae" else 0
        for width in m.get("widths", _DEFAULT_WIDTHS[m["kind"]]):
            for init in config["inits"]:
                for o in m.get("optimizers", config["optimizers"]):
                    for lr in o["lrs"]:
                        mom = float(o.get("momentum", 0.0))
                        w = tuple(int(v) for v in width)
                        zdim = f"-z{latent}" if latent else ""
                        rid = (f"{m['kind']}-{'x'.join(map(str, w))}{zdim}-{init}-{o['name']}"
                               f"{'-m' + format(mom, 'g') if mom else ''}-{float(lr):g}")
                        specs.append(RunSpec(rid, m["kind"], w, init, o["name"], float(lr), mom,
                                             int(config["epochs"]), int(config["batch_size"]),
                                             seed, latent))
    ids = [s.run_id for s in specs]
    if len(set(ids)) != len(ids):
        raise InputDataError("the experiment config lists the same run twice; remove the "
                             "duplicate width, init or learning rate.")
    return specs


# --------------------------------------------------------------------------- running


def _prepare_out_dir(out_dir: Path, *, force: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise InputDataError(f"`out_dir` {str(out_dir)!r} is a file; choose a directory.")
    if out_dir.exists() and any(out_dir.iterdir()):
        if not force:
            raise InputDataError(
                f"`out_dir` {str(out_dir)!r} already exists and is not empty; choose another "
                "directory or pass --force to replace a previous experiment's output."
            )
        if not (out_dir / _MARKER).is_file():
            raise InputDataError(
                f"`out_dir` {str(out_dir)!r} is not empty and was not written by "
                f"`weightstats experiment` (no {_MARKER}); refusing to delete it even with --force."
            )
        for name in ("runs",):
            if (out_dir / name).is_dir():
                shutil.rmtree(out_dir / name)
        for name in (_MARKER, "results.csv", "curves.csv"):
            if (out_dir / name).is_file():
                (out_dir / name).unlink()
    out_dir.mkdir(parents=True, exist_ok=True)


def _run_all(specs: list[RunSpec], out: Path, kwargs: dict[str, Any], jobs: int,
             progress: Callable[[str], None] | None) -> list[tuple]:
    """Execute every run, in `jobs` worker processes when > 1; results in grid order."""
    results: list[tuple | None] = [None] * len(specs)
    done = 0

    def report(i: int) -> None:
        nonlocal done
        done += 1
        if progress is None:
            return
        rows, _, info = results[i]
        counts = rows["verdict"].value_counts().to_dict()
        score = (f"accuracy {info['test_accuracy']:.3f}" if specs[i].model != "vae"
                 else f"test -ELBO {info['test_neg_elbo']:.2f}")
        progress(f"[{done}/{len(specs)}] {specs[i].run_id}: {score}, {counts}")

    run_dirs = [os.fspath(out / "runs" / s.run_id) for s in specs]
    (out / "runs").mkdir(parents=True, exist_ok=True)
    if jobs <= 1:
        for i, spec in enumerate(specs):
            results[i] = execute_run(spec, run_dirs[i], **kwargs)
            report(i)
        return results  # type: ignore[return-value]
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    # spawn, not fork: torch's thread pools do not survive fork reliably
    with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as pool:
        futures = {pool.submit(execute_run, spec, run_dirs[i], **kwargs): i
                   for i, spec in enumerate(specs)}
        try:
            for fut in as_completed(futures):
                i = futures[fut]
                results[i] = fut.result()
                report(i)
        except BrokenProcessPool:
            raise WeightstatsError(
                f"a worker process of `jobs`={jobs} died before finishing its run. Called from "
                "a script, put the call under `if __name__ == '__main__':` (worker processes "
                "re-import the script), or pass jobs=1 (--jobs 1)."
            ) from None
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise
    return results  # type: ignore[return-value]


def run_clt_experiment(
    config: str | os.PathLike | Mapping[str, Any] = "default",
    out_dir: str | os.PathLike = "clt-experiment",
    *,
    force: bool = False,
    jobs: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> ExperimentResult:
    """Train the grid of `config` with recorders attached and analyse every run.

    Parameters
    ----------
    config : {'default', 'quick'}, path or mapping
        See :func:`load_config`.
    out_dir : path
        Output directory (layout in the module docstring). Must be new or empty, unless `force`
        and it holds a previous experiment's output.
    force : bool
        Replace a previous experiment's output in `out_dir`.
    jobs : int, optional
        Worker processes; default the config's ``jobs`` (1 if absent). The table is the same
        for any value (each run is seeded and trains on one thread). Workers are spawned, so
        with ``jobs > 1`` a calling script needs the usual ``if __name__ == '__main__':``
        guard.
    progress : callable, optional
        Called with one line of text per finished run.

    Returns
    -------
    ExperimentResult
    """
    cfg = load_config(config)
    specs = expand_grid(cfg)
    jobs = int(cfg.get("jobs", 1) if jobs is None else jobs)
    if jobs < 1:
        raise InputDataError(f"`jobs` must be at least 1; got {jobs}.")
    jobs = min(jobs, len(specs))
    out = Path(out_dir)
    _prepare_out_dir(out, force=force)
    data_cfg = cfg.get("data", {})
    kwargs = {
        "coords": int(cfg.get("record", {}).get("coords", 1024)),
        "max_samples": int(cfg.get("analysis", {}).get("max_samples", 5000)),
        "families": cfg.get("analysis", {}).get("families"),
        "test_fraction": float(data_cfg.get("test_fraction", 0.25)),
        "split_seed": int(data_cfg.get("split_seed", 0)),
    }
    manifest = {"config": cfg, "versions": _versions(), "runs": [s.run_id for s in specs],
                "jobs": jobs, "status": "running"}
    (out / _MARKER).write_text(json.dumps(manifest, indent=2))
    start = time.perf_counter()
    done = _run_all(specs, out, kwargs, jobs, progress)
    results = pd.concat([r[0] for r in done], ignore_index=True)
    curves = [r[1] for r in done if len(r[1])]
    curve_df = pd.concat(curves, ignore_index=True) if curves else pd.DataFrame()
    results.drop(columns=["decay_note"], errors="ignore").to_csv(out / "results.csv", index=False)
    curve_df.to_csv(out / "curves.csv", index=False)
    manifest["status"] = "done"
    manifest["wall_seconds"] = time.perf_counter() - start
    (out / _MARKER).write_text(json.dumps(manifest, indent=2))
    return ExperimentResult(results=results, curves=curve_df, out_dir=out, config=cfg)


def _versions() -> dict[str, str]:
    import platform
    from importlib.metadata import PackageNotFoundError, version

    import scipy
    import torch

    try:
        ws = version("weightstats")
    except PackageNotFoundError:  # pragma: no cover
        ws = "unknown"
    return {"weightstats": ws, "python": platform.python_version(), "numpy": np.__version__,
            "scipy": scipy.__version__, "pandas": pd.__version__, "torch": torch.__version__}
