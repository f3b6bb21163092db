"""The latent comparison grid behind ``weightstats vae compare``.

For every (dataset, family, latent dimension) of a grid configuration (``data/vae/grid.json``;
:data:`DEFAULT_GRID` is the same grid, :data:`QUICK_GRID` the one-minute smoke version) this
trains a reference VAE with :func:`~weightstats.vae.train.train_vae`, records the encoder's
outputs on the test set with a :class:`~weightstats.capture.latent.LatentRecorder` into one
run directory per model (plus a final snapshot of the weights), and measures on the test set:
ELBO (with its reconstruction and KL terms), the IWAE NLL, active units, MMD to the prior and
the aggregate-posterior KL (:func:`weightstats.analysis.latent.analyze_latent`), clustering
accuracy with Hungarian matching (mixture prior) and test error (M2).

Output directory layout (nothing existing is overwritten without ``force=True``, and ``force``
only removes a directory that this function wrote, recognised by its ``compare.json``)::

    OUT/compare.json        the configuration, versions and the command's settings
    OUT/table.csv           one row per model (columns in :func:`run_grid`)
    OUT/runs/<key>/         a RunStore per model: recorded latents, final weights snapshot
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..errors import InputDataError
from .families import FAMILIES, SPHERICAL_FAMILIES
from .iwae import iwae_bound
from .m2 import supervised_baseline_error
from .marginal import aggregate_kl
from .metrics import active_units, clustering_accuracy
from .train import train_vae

__all__ = [
    "DEFAULT_GRID",
    "QUICK_GRID",
    "TABLE_COLUMNS",
    "CompareResult",
    "evaluate_model",
    "latent_views",
    "load_grid",
    "run_grid",
    "write_compare_report",
]

DEFAULT_GRID: dict[str, Any] = {
    "name": "vae-latents",
    "seed": 0,
    "experiments": [
        {
            "dataset": "digits",
            "families": ["gaussian", "vmf", "power_spherical", "student_t", "mixture", "m2"],
            "latent_dims": [2, 5, 10, 20],
        },
        {
            "dataset": "sphere",
            "families": ["gaussian", "vmf", "power_spherical"],
            "latent_dims": [2, 5, 10],
        },
    ],
    "training": {"epochs": 60, "batch_size": 64, "lr": 0.001, "hidden": [128]},
    "model_options": {
        "student_t": {"df": 3.0},
        "mixture": {"n_components": 10},
        "m2": {"alpha": 20.0},
    },
    "labels_per_class": 10,
    "sphere_data": {"n_train": 1500, "n_test": 500, "sphere_dim": 2},
    "evaluation": {"iwae_k": 5000, "elbo_samples": 10, "mmd_permutations": 200,
                   "max_samples": 1000},
    "record_every": 10,
}

QUICK_GRID: dict[str, Any] = {
    **copy.deepcopy(DEFAULT_GRID),
    "name": "vae-latents-quick",
    "experiments": [
        {
            "dataset": "digits",
            "families": ["gaussian", "vmf", "power_spherical", "student_t", "mixture", "m2"],
            "latent_dims": [2],
        },
        {"dataset": "sphere", "families": ["gaussian", "vmf"], "latent_dims": [2]},
    ],
    "training": {"epochs": 2, "batch_size": 64, "lr": 0.001, "hidden": [64]},
    "sphere_data": {"n_train": 300, "n_test": 100, "sphere_dim": 2},
    "evaluation": {"iwae_k": 20, "elbo_samples": 2, "mmd_permutations": 20, "max_samples": 200},
    "record_every": 1,
}

TABLE_COLUMNS = [
    "dataset", "family", "latent_dim", "elbo", "reconstruction", "kl", "iwae_nll",
    "iwae_nll_se", "iwae_gain_vs_gaussian", "iwae_gain_se", "iwae_k", "active_units", "mmd2",
    "mmd_pvalue", "kl_aggregate_knn", "kl_aggregate_mc", "rayleigh_pvalue",
    "clustering_accuracy", "clustering_chance", "clusters_used", "test_error",
    "baseline_error", "n_labels", "epochs", "train_seconds", "run",
]

_DATASETS = ("digits", "sphere")


@dataclass(frozen=True)
class CompareResult:
    """What :func:`run_grid` produced.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per trained model, columns :data:`TABLE_COLUMNS` (``run`` is the run
        directory relative to `out_dir`).
    out_dir : str
        The output directory.
    config : dict
        The validated grid configuration.
    """

    table: pd.DataFrame
    out_dir: str
    config: dict[str, Any]

    def run_dir(self, dataset: str, family: str, latent_dim: int) -> str:
        """Absolute path of one model's run directory."""
        return os.path.join(self.out_dir, "runs", _key(dataset, family, latent_dim))

    def __repr__(self) -> str:
        return f"CompareResult(models={len(self.table)}, out_dir={self.out_dir!r})"


def _key(dataset: str, family: str, latent_dim: int) -> str:
    return f"{dataset}-{family}-d{int(latent_dim)}"


def load_grid(path: str | os.PathLike | None = None, *, quick: bool = False) -> dict[str, Any]:
    """Read and validate a grid configuration (JSON); without `path`, the built-in grid."""
    if path is None:
        config = copy.deepcopy(QUICK_GRID if quick else DEFAULT_GRID)
    else:
        try:
            with open(path, encoding="utf-8") as fh:
                config = json.load(fh)
        except FileNotFoundError:
            raise InputDataError(f"grid configuration {os.fspath(path)!r} does not exist.") from None
        except (OSError, ValueError) as exc:
            raise InputDataError(f"cannot read grid configuration {os.fspath(path)!r}: {exc}") from None
    return _validate(config)


def _validate(config: Any) -> dict[str, Any]:
    try:
        return _validate_values(config)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        if isinstance(exc, InputDataError):
            raise
        # a value of the wrong type ("epochs": "ten", "experiments": 5, "latent_dims": ["a"])
        raise InputDataError(
            f"the grid configuration has a value of the wrong type ({type(exc).__name__}: {exc}); "
            "compare it with data/vae/grid.json."
        ) from None


def _validate_values(config: Any) -> dict[str, Any]:
    if not isinstance(config, Mapping):
        raise InputDataError("the grid configuration must be a JSON object.")
    base = copy.deepcopy(DEFAULT_GRID)
    unknown = sorted(set(config) - set(base))
    if unknown:
        raise InputDataError(f"unknown grid configuration keys {unknown}; known: {sorted(base)}.")
    for key, value in config.items():
        base[key] = dict(base[key], **value) if isinstance(base[key], dict) and key != "model_options" else value
    epochs = int(base["training"]["epochs"])
    every = int(base["record_every"])
    if epochs < 1 or every < 1 or epochs % every:
        raise InputDataError(
            f"`training.epochs` ({epochs}) must be a positive multiple of `record_every` ({every}), "
            "so that the final epoch's latents are recorded."
        )
    for exp in base["experiments"]:
        if exp.get("dataset") not in _DATASETS:
            raise InputDataError(f"experiment dataset must be one of {list(_DATASETS)}; got {exp.get('dataset')!r}.")
        bad = sorted(set(exp.get("families", [])) - set(FAMILIES))
        if bad or not exp.get("families"):
            raise InputDataError(f"unknown latent families {bad}; known: {sorted(FAMILIES)}.")
        if exp["dataset"] == "sphere" and {"m2", "mixture"} & set(exp["families"]):
            raise InputDataError("the sphere data set has no labels: drop 'm2' and 'mixture' there.")
        dims = exp.get("latent_dims", [])
        if not dims or any(int(d) != d or d < 1 for d in dims):
            raise InputDataError(f"`latent_dims` must be positive integers; got {dims!r}.")
        if set(exp["families"]) & SPHERICAL_FAMILIES and min(dims) < 2:
            raise InputDataError("spherical latents need `latent_dims` of at least 2.")
    return base


def _prepare_out_dir(out_dir: str, force: bool) -> None:
    marker = os.path.join(out_dir, "compare.json")
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise InputDataError(f"output directory {out_dir!r} is a file; give a directory.")
    if os.path.exists(out_dir) and os.listdir(out_dir):
        if not force:
            raise InputDataError(
                f"output directory {out_dir!r} exists and is not empty; pass --force "
                "(force=True) to replace an earlier comparison, or choose another directory."
            )
        if not os.path.isfile(marker):
            raise InputDataError(
                f"output directory {out_dir!r} was not written by `weightstats vae compare` "
                "(no compare.json); refusing to delete it even with --force."
            )
        for name in ("runs", "table.csv", "compare.json"):
            path = os.path.join(out_dir, name)
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.exists(path):
                os.remove(path)
    try:
        os.makedirs(os.path.join(out_dir, "runs"), exist_ok=True)
    except OSError as exc:
        raise InputDataError(f"cannot create output directory {out_dir!r}: {exc.strerror}.") from None


def _datasets(config: Mapping[str, Any], seed: int) -> dict[str, dict[str, Any]]:
    from ..datasets import load_digits
    from .data import make_sphere_data

    out: dict[str, dict[str, Any]] = {}
    needed = {e["dataset"] for e in config["experiments"]}
    if "digits" in needed:
        d = load_digits(seed=seed)
        out["digits"] = {"x_train": d.x_train, "y_train": d.y_train, "x_test": d.x_test, "y_test": d.y_test}
    if "sphere" in needed:
        s = make_sphere_data(seed=seed, **config["sphere_data"])
        out["sphere"] = {"x_train": s.x_train, "y_train": None, "x_test": s.x_test, "y_test": None}
    return out


@torch.no_grad()
def evaluate_model(model: torch.nn.Module, x_test: torch.Tensor, y_test: torch.Tensor | None, *,
                   iwae_k: int, elbo_samples: int, seed: int) -> dict[str, float]:
    """Test-set ELBO (mean of `elbo_samples` one-sample estimates), its terms, IWAE NLL,
    active units, and clustering accuracy / test error where the family has them.

    ``kl_aggregate_mc`` is :func:`~weightstats.vae.marginal.aggregate_kl` (not for M2).
    ``iwae_nll_se`` is the standard error of the mean over test examples (sd / sqrt(n)); the
    grid adds ``iwae_gain_vs_gaussian`` (NLL of the Gaussian model minus this model's, paired
    over the same test examples) and its paired standard error ``iwae_gain_se``.
    ``iwae_bound`` (per-example L_k, an array) is returned for that and not tabulated.
    ``clustering_chance`` is the Hungarian-matched accuracy of the same cluster sizes assigned
    at random (mean over 20 seeded shuffles), the level a useless clustering reaches.
    """
    model.eval()
    gen = torch.Generator().manual_seed(int(seed))
    rec = kl = 0.0
    for _ in range(int(elbo_samples)):
        r, k = model.elbo_terms(x_test, generator=gen)
        rec += float(r.double().mean()) / elbo_samples
        kl += float(k.double().mean()) / elbo_samples
    bound = iwae_bound(model, x_test, k=iwae_k, seed=seed + 1)
    row = {
        "elbo": rec - kl,
        "reconstruction": rec,
        "kl": kl,
        "iwae_nll": float(-bound.mean()),
        "iwae_nll_se": float(bound.std(ddof=1) / np.sqrt(bound.size)),
        "iwae_bound": bound,
        "iwae_k": int(iwae_k),
        "active_units": active_units(model.posterior_mean(x_test).double().numpy())[0],
        "kl_aggregate_mc": (aggregate_kl(model, x_test, seed=seed + 2)
                            if model.family != "m2" else np.nan),
        "clustering_accuracy": np.nan,
        "clustering_chance": np.nan,
        "clusters_used": np.nan,
        "test_error": np.nan,
    }
    if y_test is not None and hasattr(model, "cluster"):
        clusters = model.cluster(x_test).numpy()
        truth = y_test.numpy()
        row["clustering_accuracy"] = clustering_accuracy(truth, clusters)
        row["clusters_used"] = int(np.unique(clusters).size)
        shuffle = np.random.default_rng(seed)
        row["clustering_chance"] = float(np.mean(
            [clustering_accuracy(truth, shuffle.permutation(clusters)) for _ in range(20)]))
    if y_test is not None and hasattr(model, "predict"):
        row["test_error"] = float((model.predict(x_test) != y_test).double().mean())
    return row


def _prior_info(model: torch.nn.Module) -> dict[str, Any]:
    if model.family == "student_t":
        return {"df": model.df}
    if model.family == "mixture":
        with torch.no_grad():
            return {
                "weights": torch.softmax(model.prior_logits, -1).tolist(),
                "means": model.prior_means.tolist(),
                "scales": model.prior_scales.tolist(),
            }
    return {}


def run_grid(
    config: Mapping[str, Any] | None = None,
    *,
    out_dir: str | os.PathLike,
    force: bool = False,
    progress: Callable[[str], None] | None = None,
    num_threads: int | None = 1,
) -> CompareResult:
    """Train and evaluate every model of the grid; write runs and the table under `out_dir`.

    Parameters
    ----------
    config : mapping, optional
        A grid configuration (see :data:`DEFAULT_GRID`); validated by :func:`load_grid`'s rules.
    out_dir : path-like
        Output directory (layout in the module docstring).
    force : bool
        Replace an earlier comparison in `out_dir` (only one this function wrote).
    progress : callable, optional
        Called with one line of text per model.
    num_threads : int or None
        Torch threads for the whole grid (restored afterwards); ``None`` keeps torch's setting.
        The default 1 keeps the grid's time bounded on a shared machine: the full grid took
        6 min 46 s (2 min 27 s of CPU) with 1 thread at load ~10 on 2 cores.

    Returns
    -------
    CompareResult
    """
    config = _validate(copy.deepcopy(dict(config)) if config is not None else DEFAULT_GRID)
    out_dir = os.path.abspath(os.fspath(out_dir))
    _prepare_out_dir(out_dir, force)
    previous_threads = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(int(num_threads))
    try:
        return _run(config, out_dir, progress)
    finally:
        torch.set_num_threads(previous_threads)


def _run(config: dict[str, Any], out_dir: str, progress) -> CompareResult:
    """The body of :func:`run_grid` (validated config, prepared `out_dir`)."""
    from ..analysis.latent import analyze_latent

    seed = int(config["seed"])
    training = config["training"]
    ev = config["evaluation"]
    data = _datasets(config, seed)
    with open(os.path.join(out_dir, "compare.json"), "w", encoding="utf-8") as fh:
        json.dump({"config": config, "torch": torch.__version__}, fh, indent=2)

    rows = []
    bounds: dict[tuple[str, int, str], np.ndarray] = {}
    for exp in config["experiments"]:
        ds = data[exp["dataset"]]
        for dim in exp["latent_dims"]:
            for family in exp["families"]:
                key = _key(exp["dataset"], family, dim)
                run_dir = os.path.join(out_dir, "runs", key)
                info = {"dataset": exp["dataset"], "family": family, "latent_dim": int(dim),
                        "seed": seed, "training": training}
                result = _train_recorded(family, int(dim), ds, config, run_dir, info)
                model = result.model
                metrics = evaluate_model(model, ds["x_test"], ds["y_test"], iwae_k=int(ev["iwae_k"]),
                                         elbo_samples=int(ev["elbo_samples"]), seed=seed)
                latent = analyze_latent(
                    run_dir, family=family, prior=_prior_info(model),
                    n_permutations=int(ev["mmd_permutations"]), max_samples=int(ev["max_samples"]),
                    rng=seed,
                ).summary.iloc[0]
                row = {
                    "dataset": exp["dataset"], "family": family, "latent_dim": int(dim), **metrics,
                    "mmd2": float(latent["mmd2"]), "mmd_pvalue": float(latent["mmd_pvalue"]),
                    "kl_aggregate_knn": float(latent["kl_knn"]),
                    "rayleigh_pvalue": float(latent["rayleigh_pvalue"]),
                    "baseline_error": (
                        supervised_baseline_error(
                            ds["x_train"][result.labelled_index],
                            ds["y_train"][result.labelled_index], ds["x_test"], ds["y_test"],
                            hidden=tuple(training["hidden"]), seed=seed)
                        if family == "m2" else np.nan),
                    "n_labels": (len(result.labelled_index) if result.labelled_index is not None
                                 else np.nan),
                    "epochs": int(training["epochs"]), "train_seconds": result.seconds,
                    "run": os.path.join("runs", key),
                }
                rows.append(row)
                bounds[(exp["dataset"], int(dim), family)] = row.pop("iwae_bound")
                if progress is not None:
                    progress(
                        f"{key}: ELBO {row['elbo']:.2f}, IWAE NLL {row['iwae_nll']:.2f}, "
                        f"AU {row['active_units']}, {row['train_seconds']:.1f} s"
                    )
    for row in rows:
        # paired over test examples: NLL_gaussian - NLL_family and its standard error
        ref = bounds.get((row["dataset"], row["latent_dim"], "gaussian"))
        own = bounds[(row["dataset"], row["latent_dim"], row["family"])]
        if ref is not None:
            diff = own - ref
            row["iwae_gain_vs_gaussian"] = float(diff.mean())
            row["iwae_gain_se"] = float(diff.std(ddof=1) / np.sqrt(diff.size))
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    table.to_csv(os.path.join(out_dir, "table.csv"), index=False)
    return CompareResult(table, out_dir, config)


def _train_recorded(family: str, dim: int, ds: Mapping[str, Any], config: Mapping[str, Any],
                    run_dir: str, info: dict[str, Any]):
    """Train one model with a LatentRecorder on the test inputs; finish its run directory with
    a snapshot of the final weights and the learned prior (``manifest['recorders']['vae']``)."""
    from ..capture.latent import LatentRecorder
    from ..capture.store import RunStore

    training = config["training"]
    store = RunStore.create(run_dir, metadata={"vae": info})
    holder: dict[str, Any] = {}
    recorder = LatentRecorder(
        lambda x: holder["model"].latent_outputs(x),
        data=(ds["x_test"], ds["y_test"]) if ds["y_test"] is not None else ds["x_test"],
        every_epoch=int(config["record_every"]),
        store=store,
        seed=int(config["seed"]),
    )

    def record(epoch: int, model: torch.nn.Module) -> None:
        holder["model"] = model
        recorder.end_epoch(epoch)

    with store, recorder:
        result = train_vae(
            family,
            ds["x_train"],
            latent_dim=dim,
            epochs=int(training["epochs"]),
            batch_size=int(training["batch_size"]),
            lr=float(training["lr"]),
            hidden=tuple(training["hidden"]),
            seed=int(config["seed"]),
            y_train=ds["y_train"],
            labels_per_class=int(config["labels_per_class"]),
            model_options=config["model_options"].get(family),
            callbacks=[record],
        )
        model = result.model
        store.write_snapshot(int(training["epochs"]),
                             {k: v.detach().clone() for k, v in model.state_dict().items()})
        store.set_recorder("vae", {**info, "prior": _prior_info(model),
                                   "options": _jsonable(result.options)})
    return result


def _jsonable(options: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in options.items()}


def latent_views(result: CompareResult, *, latent_dim: int = 2, max_points: int = 600,
                 seed: int = 0) -> list:
    """Recorded test codes (last epoch) and prior draws of every model with `latent_dim`."""
    from ..analysis.latent import prior_sampler
    from ..capture.store import RunStore
    from ..report.sections.vae import LatentView

    gen = np.random.default_rng(seed)
    views = []
    for row in result.table[result.table["latent_dim"] == latent_dim].itertuples():
        store = RunStore.open(os.path.join(result.out_dir, row.run))
        latents = store.latents(store.latent_epochs()[-1])
        info = (store.manifest.get("recorders") or {}).get("vae") or {}
        z = latents["z"].double().numpy()[:max_points]
        labels = latents["labels"].numpy()[:max_points] if "labels" in latents else None
        prior = prior_sampler(row.family, z.shape[1], info.get("prior"))(max_points, gen)
        key = _key(row.dataset, row.family, row.latent_dim).replace("_", "-")
        views.append(LatentView(key, f"{row.dataset}, {row.family}, d={row.latent_dim}", z, prior,
                                labels))
    return views


def write_compare_report(result: CompareResult, path: str | os.PathLike, *, force: bool = False,
                         command: str = "", json_path: str | os.PathLike | None = None) -> str:
    """Write the comparison as a self-contained HTML report (the VAE section alone)."""
    from ..report.model import build_report
    from ..report.render import write_report
    from ..report.sections.vae import vae_section

    section = vae_section(result.table, latent_views(result), command=command,
                          config=result.config)
    meta = {"grid": result.config["name"], "seed": result.config["seed"],
            "models": len(result.table), "torch": torch.__version__}
    report = build_report("weightstats: VAE latents", [section], meta)
    return str(write_report(report, path, force=force, json_path=json_path))
