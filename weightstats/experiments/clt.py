"""The CLT experiment grid: train small digits models with recorders attached, then analyse.

Each run trains one model (MLP or CNN on scikit-learn's ``digits``) from one initialisation
with one optimizer and learning rate, with a :class:`~weightstats.capture.hooks.WeightRecorder`
recording every optimizer step of a seeded sample of coordinates of each weight tensor. Then
:func:`~weightstats.analysis.clt.analyze_clt` runs on the recorded run. Everything is seeded, so
the same config gives the same table on the same machine.

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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from ..errors import InputDataError

__all__ = [
    "CONFIG_DIR",
    "RunSpec",
    "ExperimentResult",
    "load_config",
    "expand_grid",
    "run_clt_experiment",
]

#: where the bundled configs live (``clt_default.json``, ``clt_quick.json``).
CONFIG_DIR = Path(__file__).resolve().parents[2] / "data" / "experiments"
_MARKER = "experiment.json"
_MODEL_KINDS = ("mlp", "cnn")
_OPTIMIZERS = ("sgd", "adam")


@dataclass(frozen=True)
class RunSpec:
    """One cell of the grid.

    Attributes
    ----------
    run_id : str
        Directory-safe identifier, e.g. ``mlp-64x32-kaiming-uniform-sgd-0.1``.
    model, width, init, optimizer, lr, momentum, epochs, batch_size, seed
        The settings of the run (``width`` is the hidden sizes or channel counts).
    """

    run_id: str
    model: str
    width: tuple[int, ...]
    init: str
    optimizer: str
    lr: float
    momentum: float
    epochs: int
    batch_size: int
    seed: int

    @property
    def width_label(self) -> str:
        return "x".join(str(w) for w in self.width)

    def settings(self) -> dict[str, Any]:
        d = asdict(self)
        d["width"] = self.width_label
        d["n_hidden_units"] = int(sum(self.width))
        return d


@dataclass(frozen=True, eq=False)
class ExperimentResult:
    """What :func:`run_clt_experiment` wrote.

    Attributes
    ----------
    results : pandas.DataFrame
        One row per (run, tensor): :meth:`RunSpec.settings` columns, ``test_accuracy``,
        ``n_optimizer_steps``, ``train_seconds`` and the columns of
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


def load_config(config: str | os.PathLike | Mapping[str, Any] = "default") -> dict:
    """Load and check an experiment config.

    Parameters
    ----------
    config : {'default', 'quick'}, path or mapping
        A bundled config's short name, a JSON file, or the config itself.
    """
    if isinstance(config, Mapping):
        cfg = dict(config)
    else:
        text = str(config)
        path = CONFIG_DIR / f"clt_{text}.json" if text in ("default", "quick") else Path(text)
        if not path.is_file():
            raise InputDataError(f"`config` {text!r} is neither 'default', 'quick' nor an "
                                 f"existing JSON file.")
        try:
            cfg = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise InputDataError(f"`config` {str(path)!r} is not valid JSON: {exc}") from None
        cfg.setdefault("name", path.stem)
    required = ("models", "inits", "optimizers", "epochs", "batch_size")
    missing = [k for k in required if k not in cfg]
    if missing:
        raise InputDataError(f"the experiment config lacks {missing}; see "
                             f"{CONFIG_DIR / 'clt_quick.json'} for the format.")
    from ..nets import INIT_SCHEMES

    for init in cfg["inits"]:
        if init not in INIT_SCHEMES:
            raise InputDataError(f"config `inits` has {init!r}; choose from {list(INIT_SCHEMES)}.")
    for m in cfg["models"]:
        if m.get("kind") not in _MODEL_KINDS:
            raise InputDataError(f"config model kind {m.get('kind')!r} is not one of "
                                 f"{list(_MODEL_KINDS)}.")
        if m["kind"] == "cnn" and any(len(w) != 2 for w in m.get("widths", [])):
            raise InputDataError("config `cnn` widths must be pairs of channel counts.")
    for o in cfg["optimizers"]:
        if o.get("name") not in _OPTIMIZERS:
            raise InputDataError(f"config optimizer {o.get('name')!r} is not one of "
                                 f"{list(_OPTIMIZERS)}.")
        if not o.get("lrs") or any(not (float(lr) > 0) for lr in o["lrs"]):
            raise InputDataError("config optimizer `lrs` must be a non-empty list of positive "
                                 "learning rates.")
    for key in ("epochs", "batch_size"):
        if not isinstance(cfg[key], int) or cfg[key] < 1:
            raise InputDataError(f"config `{key}` must be a positive integer; got {cfg[key]!r}.")
    return cfg


def expand_grid(config: Mapping[str, Any]) -> list[RunSpec]:
    """The runs of a config: models x widths x inits x optimizers x learning rates."""
    specs = []
    seed = int(config.get("seed", 0))
    for m in config["models"]:
        for width in m.get("widths", [[64, 32]] if m["kind"] == "mlp" else [[8, 16]]):
            for init in config["inits"]:
                for o in config["optimizers"]:
                    for lr in o["lrs"]:
                        mom = float(o.get("momentum", 0.0))
                        w = tuple(int(v) for v in width)
                        rid = (f"{m['kind']}-{'x'.join(map(str, w))}-{init}-{o['name']}"
                               f"{'-m' + format(mom, 'g') if mom else ''}-{float(lr):g}")
                        specs.append(RunSpec(rid, m["kind"], w, init, o["name"], float(lr), mom,
                                             int(config["epochs"]), int(config["batch_size"]),
                                             seed))
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


def _build(spec: RunSpec):
    import torch

    from ..nets import DigitsCNN, DigitsMLP, init_weights

    model = DigitsMLP(hidden=spec.width) if spec.model == "mlp" else DigitsCNN(channels=spec.width)
    init_weights(model, spec.init, generator=torch.Generator().manual_seed(spec.seed))
    if spec.optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=spec.lr, momentum=spec.momentum)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=spec.lr)
    return model, opt


def train_run(spec: RunSpec, data: Any, run_dir: Path, *, coords: int) -> dict[str, Any]:
    """Train one run with a :class:`WeightRecorder` attached; return its training summary."""
    import torch

    from ..capture.hooks import WeightRecorder
    from ..nets import train_classifier

    torch.manual_seed(spec.seed)  # nothing should draw from it; pinned in case a layer does
    model, opt = _build(spec)
    steps_per_epoch = -(-int(data.x_train.shape[0]) // spec.batch_size)
    start = time.perf_counter()
    with WeightRecorder(model, opt, every=steps_per_epoch, include="*weight", coords=coords,
                        store=os.fspath(run_dir), seed=spec.seed):
        history = train_classifier(model, opt, data, epochs=spec.epochs,
                                   batch_size=spec.batch_size, seed=spec.seed)
    return {"test_accuracy": history.test_accuracy[-1], "n_optimizer_steps": history.steps,
            "train_seconds": time.perf_counter() - start}


def run_clt_experiment(
    config: str | os.PathLike | Mapping[str, Any] = "default",
    out_dir: str | os.PathLike = "clt-experiment",
    *,
    force: bool = False,
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
    progress : callable, optional
        Called with one line of text per finished run.

    Returns
    -------
    ExperimentResult
    """
    from .. import __name__ as _pkg  # noqa: F401  (keeps the import graph explicit)
    from ..analysis.clt import analyze_clt
    from ..datasets import load_digits

    cfg = load_config(config)
    specs = expand_grid(cfg)
    out = Path(out_dir)
    _prepare_out_dir(out, force=force)
    data_cfg = cfg.get("data", {})
    data = load_digits(test_fraction=float(data_cfg.get("test_fraction", 0.25)),
                       seed=int(data_cfg.get("split_seed", 0)))
    coords = int(cfg.get("record", {}).get("coords", 1024))
    max_samples = int(cfg.get("analysis", {}).get("max_samples", 5000))
    families = cfg.get("analysis", {}).get("families")
    manifest = {"config": cfg, "versions": _versions(), "runs": [s.run_id for s in specs],
                "status": "running"}
    (out / _MARKER).write_text(json.dumps(manifest, indent=2))
    rows, curves = [], []
    for i, spec in enumerate(specs):
        run_dir = out / "runs" / spec.run_id
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        info = train_run(spec, data, run_dir, coords=coords)
        t0 = time.perf_counter()
        res = analyze_clt(os.fspath(run_dir), max_samples=max_samples, families=families,
                          rng=spec.seed)
        info["analysis_seconds"] = time.perf_counter() - t0
        settings = spec.settings()
        summary = res.summary.copy()
        for k, v in reversed(list({**settings, **info}.items())):
            summary.insert(0, k, v)
        rows.append(summary)
        if len(res.curves):
            curves.append(res.curves.assign(run_id=spec.run_id))
        if progress is not None:
            counts = res.summary["verdict"].value_counts().to_dict()
            progress(f"[{i + 1}/{len(specs)}] {spec.run_id}: accuracy "
                     f"{info['test_accuracy']:.3f}, {counts}")
    results = pd.concat(rows, ignore_index=True)
    curve_df = pd.concat(curves, ignore_index=True) if curves else pd.DataFrame()
    if len(curve_df):
        curve_df = curve_df[["run_id"] + [c for c in curve_df.columns if c != "run_id"]]
    results.drop(columns=["decay_note"], errors="ignore").to_csv(out / "results.csv", index=False)
    curve_df.to_csv(out / "curves.csv", index=False)
    manifest["status"] = "done"
    (out / _MARKER).write_text(json.dumps(manifest, indent=2))
    return ExperimentResult(results=results, curves=curve_df, out_dir=out, config=cfg)


def _versions() -> dict[str, str]:
    import platform

    import scipy
    import torch

    from importlib.metadata import PackageNotFoundError, version

    try:
        ws = version("weightstats")
    except PackageNotFoundError:  # pragma: no cover
        ws = "unknown"
    return {"weightstats": ws, "python": platform.python_version(), "numpy": np.__version__,
            "scipy": scipy.__version__, "pandas": pd.__version__, "torch": torch.__version__}
