"""Is a trained weight Gaussian because it is a sum of many updates, because of its
initialisation, or not Gaussian at all?

The core works on plain arrays: :func:`analyze_clt_arrays` takes W_0, W_T and (optionally) the
recorded coordinate trajectories of one tensor. :func:`analyze_clt` is the thin adapter for a
run directory written by the recorders (:class:`weightstats.capture.store.RunStore`) or for a
pair of checkpoints (initial, final); with a pair, everything that needs trajectories is marked
unavailable rather than guessed.

For each tensor it reports

* the decomposition ``W_T = W_0 + dW``: fits, effect sizes and shape verdicts of W_0, dW and
  W_T; ``||dW|| / ||W_0||``; ``corr(W_0, W_T)`` and the share of W_T's variance W_0 explains;
* the CLT's assumptions on the trajectories: autocorrelation at lags 1..L and n_eff, drift of
  the update spread, the Lindeberg-style largest single-step share;
* the CLT's prediction: the excess kurtosis of the accumulated update against the number of
  steps, with ``kappa_1 / n`` and its fitted log-log slope (see :mod:`._clt_stats`);
* a verdict with its reason (see :mod:`._clt_verdict`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .._validation import as_sample, to_numpy
from ..errors import InputDataError, WeightstatsError
from ._clt_stats import (
    Decomposition,
    TrajectoryDiagnostics,
    as_trajectories,
    decomposition,
    kurtosis_curve,
    trajectory_diagnostics,
)
from ._clt_verdict import CLT_LABELS, CLTVerdict, decide_clt

__all__ = [
    "CLT_LABELS",
    "COMPONENTS",
    "CLTAnalysis",
    "CLTTensorResult",
    "CLTVerdict",
    "analyze_clt",
    "analyze_clt_arrays",
]

#: the three parts of the decomposition, in the order tables show them.
COMPONENTS = ("init", "update", "final")

_UNAVAILABLE = "unavailable: only two checkpoints (no recorded trajectories)"


@dataclass(frozen=True, eq=False)
class CLTTensorResult:
    """The CLT analysis of one tensor.

    Attributes
    ----------
    tensor : str
    decomposition : Decomposition
        Relative change, correlation, variance share and shape distance of W_0 and W_T.
    components : pandas.DataFrame
        One row per component (``init``, ``update``, ``final``); see :func:`analyze_clt`.
    trajectory : TrajectoryDiagnostics or None
        None when no trajectories were recorded (two checkpoints).
    curve : pandas.DataFrame or None
        The accumulated update's kurtosis against the number of steps (:func:`kurtosis_curve`).
    verdict : CLTVerdict
    trajectory_status : str
        ``'available'`` or why not.
    trajectory_sum_error : float
        ``||sum of recorded updates - dW|| / ||dW||`` on the sampled coordinates (0 when every
        step was recorded; large when the recorder skipped steps).
    """

    tensor: str
    decomposition: Decomposition
    components: pd.DataFrame
    trajectory: TrajectoryDiagnostics | None
    curve: pd.DataFrame | None
    verdict: CLTVerdict
    trajectory_status: str = "available"
    trajectory_sum_error: float = float("nan")

    def __repr__(self) -> str:
        return (f"CLTTensorResult({self.tensor!r}, {self.verdict.label!r}, "
                f"{self.decomposition!r}, trajectory={self.trajectory_status!r})")

    def evidence(self) -> dict[str, Any]:
        """Flat dict of every number the verdict saw (one row of :attr:`CLTAnalysis.summary`)."""
        comp = self.components.set_index("component")
        row: dict[str, Any] = {"tensor": self.tensor}
        row.update(self.decomposition.to_dict())
        for c in COMPONENTS:
            for col in ("label", "best_family", "skewness", "excess_kurtosis"):
                row[f"{col}_{c}"] = comp.at[c, col] if c in comp.index else np.nan
        row["frozen_share_update"] = (comp.at["update", "frozen_share"]
                                      if "frozen_share" in comp.columns else np.nan)
        row["has_trajectories"] = self.trajectory is not None
        row["trajectory_status"] = self.trajectory_status
        row["trajectory_sum_error"] = self.trajectory_sum_error
        traj_keys = [
            "n_steps", "n_coords", "acf_lag1", "tau", "n_eff", "tau_truncated", "spread_ratio",
            "n_equivalent_spread", "max_step_variance_share", "max_step_share",
            "scale_persistence", "persistent_scale_kurtosis", "tail_index", "decay_slope",
            "decay_slope_se", "decay_kappa1", "decay_noise_floor", "decay_fit_last",
            "decay_n_fit_points", "decay_final_kurtosis", "decay_predicted_iid_final",
            "decay_predicted_independent_final", "decay_note",
        ]
        tdict = self.trajectory.to_dict() if self.trajectory is not None else {}
        for k in traj_keys:
            row[k] = tdict.get(k, np.nan)
        if self.trajectory is not None:
            row["n_eff_ratio"] = self.trajectory.n_eff / self.trajectory.n_steps
        else:
            row["n_eff_ratio"] = np.nan
        row["verdict"] = self.verdict.label
        row["reason"] = self.verdict.reason
        return row


@dataclass(frozen=True, eq=False)
class CLTAnalysis:
    """The CLT analysis of a run or of a checkpoint pair.

    Attributes
    ----------
    summary : pandas.DataFrame
        One row per tensor: the decomposition (``relative_change``, ``corr_init_final``,
        ``init_variance_share``, ``shape_distance``), ``label_*``/``best_family_*``/
        ``skewness_*``/``excess_kurtosis_*`` for ``init``, ``update`` and ``final`` (the
        update's on the coordinates that moved), ``frozen_share_update`` (share of exactly
        zero updates: coordinates that never received a gradient), the
        trajectory diagnostics (``n_steps``, ``n_coords``, ``acf_lag1``, ``tau``, ``n_eff``,
        ``n_eff_ratio``, ``spread_ratio``, ``max_step_share``, ``scale_persistence``,
        ``persistent_scale_kurtosis``, ``tail_index``, ``decay_slope``, ``decay_slope_se``,
        ``decay_kappa1``, ``decay_final_kurtosis``, ...; NaN without trajectories, with
        ``trajectory_status`` saying why), ``verdict`` and ``reason``.
    components : pandas.DataFrame
        One row per (tensor, component): ``n``, ``n_used``, ``mean``, ``sd``, ``skewness``,
        ``excess_kurtosis``, ``wasserstein1``, ``tail_mass_ratio``, ``best_family``,
        ``delta_bic_normal``, ``label``, ``reason``.
    curves : pandas.DataFrame
        Long format, one row per (tensor, n): the columns of :func:`kurtosis_curve`.
    acf : pandas.DataFrame
        Long format, one row per (tensor, lag): ``acf``.
    tensors : dict
        name -> :class:`CLTTensorResult`.
    source : str
        What was analysed.
    """

    summary: pd.DataFrame
    components: pd.DataFrame
    curves: pd.DataFrame
    acf: pd.DataFrame
    tensors: dict = field(repr=False)
    source: str = ""

    def __repr__(self) -> str:
        counts = self.summary["verdict"].value_counts().to_dict() if len(self.summary) else {}
        return f"CLTAnalysis({self.source!r}, {len(self.summary)} tensors, verdicts={counts})"

    @property
    def trajectories_available(self) -> bool:
        return bool(len(self.summary)) and bool(self.summary["has_trajectories"].any())


# --------------------------------------------------------------------------- components


def _describe_component(x: np.ndarray, *, rng: np.random.Generator, max_samples: int,
                        families: Sequence[str] | None = None) -> dict[str, Any]:
    """Fits, effect sizes and shape verdict of one component, from the statistics engine."""
    row: dict[str, Any] = {"n": int(x.size), "mean": float(x.mean()), "sd": float(x.std())}
    if x.size < 8 or np.ptp(x) == 0:
        row.update(n_used=int(x.size), skewness=np.nan, excess_kurtosis=np.nan,
                   wasserstein1=np.nan, tail_mass_ratio=np.nan, best_family=None,
                   delta_bic_normal=np.nan, label="degenerate",
                   reason="constant or fewer than 8 values")
        return row
    xs = rng.choice(x, max_samples, replace=False) if x.size > max_samples else x
    row["n_used"] = int(xs.size)
    from ..stats.fit import fit_families
    from ..stats.normality import effect_sizes

    eff = effect_sizes(xs).to_dict()
    row["skewness"] = float(eff.get("skewness", np.nan))
    row["excess_kurtosis"] = float(eff.get("excess_kurtosis", np.nan))
    row["wasserstein1"] = float(eff.get("wasserstein1", np.nan))
    row["tail_mass_ratio"] = float(eff.get("tail_mass_ratio", np.nan))
    try:
        fam = fit_families(xs, rng=rng) if families is None else fit_families(
            xs, tuple(families), rng=rng)
    except (ValueError, FloatingPointError, WeightstatsError) as exc:
        # a degenerate sample can break one family's optimiser; keep the other evidence
        row["best_family"], row["delta_bic_normal"] = None, np.nan
        row["fit_note"] = f"family fits failed: {exc}"
    else:
        row["best_family"] = str(fam["family"].iloc[0])
        normal = fam.loc[fam["family"] == "normal", "bic"]
        row["delta_bic_normal"] = (float(normal.iloc[0] - fam["bic"].min()) if len(normal)
                                   else np.nan)
    try:
        from ..stats.verdict import classify_shape
    except ImportError as exc:  # stats.verdict is being written alongside this module
        row["label"], row["reason"] = None, f"shape verdict unavailable ({exc})"
        return row
    shape = classify_shape(xs, rng=rng)
    row["label"] = str(shape.label)
    row["reason"] = str(shape.reason)
    return row


# --------------------------------------------------------------------------- array core


def analyze_clt_arrays(
    w0: Any,
    wt: Any,
    *,
    steps: Any = None,
    updates: Any = None,
    coords: Any = None,
    tensor: str = "tensor",
    max_lag: int | None = None,
    max_samples: int = 5_000,
    families: Sequence[str] | None = None,
    rng: np.random.Generator | int | None = None,
) -> CLTTensorResult:
    """CLT analysis of one tensor from its initial and final values and its trajectories.

    Parameters
    ----------
    w0, wt : array_like
        The tensor at initialisation and after training (any shape; same number of entries).
    steps : array_like of shape (T,), optional
        Recorded optimiser step of each trajectory row.
    updates : array_like of shape (T, C), optional
        Recorded updates of C sampled coordinates; None for a checkpoint pair, which marks the
        trajectory-based parts as unavailable.
    coords : array_like of int, shape (C,), optional
        Flat indices of the sampled coordinates (used to check that the recorded updates add up
        to dW).
    tensor : str
        Name used in tables.
    max_lag : int, optional
        Largest autocorrelation lag (default ``min(50, T // 4)``).
    max_samples : int
        Fits and shape verdicts use a random subsample of at most this many entries.
    families : sequence of str, optional
        Families fitted to W_0, dW and W_T (default: the statistics engine's default set).
    rng : numpy.random.Generator or int, optional
        Randomness for subsampling and the statistics engine.

    Returns
    -------
    CLTTensorResult
    """
    rng = np.random.default_rng(rng)
    a0 = as_sample(w0, name="w0", min_size=8, allow_constant=True)
    at = as_sample(wt, name="wt", min_size=8, allow_constant=True)
    if a0.size != at.size:
        raise InputDataError(
            f"`w0` has {a0.size} entries but `wt` has {at.size}; pass the same tensor before "
            "and after training."
        )
    dec = decomposition(a0, at, rng=rng)
    dw = at - a0
    # Coordinates whose update is exactly 0 never received a gradient (e.g. first-layer weights
    # of input pixels that are 0 in every image): they are not sums of updates, and their point
    # mass at 0 breaks continuous fits. dW's shape is described on the coordinates that moved;
    # ``frozen_share`` says how many did not (the trajectory diagnostics below skip them too).
    moved = dw[dw != 0]
    frozen = 1.0 - moved.size / dw.size
    rows = []
    for comp, x in zip(COMPONENTS, (a0, moved if moved.size >= 8 else dw, at)):
        row = {"tensor": tensor, "component": comp,
               "frozen_share": frozen if comp == "update" else np.nan}
        row.update(_describe_component(x, rng=rng, max_samples=max_samples,
                                       families=families))
        rows.append(row)
    components = pd.DataFrame(rows)
    traj = curve = None
    status = _UNAVAILABLE
    sum_err = float("nan")
    if updates is not None:
        s, u = as_trajectories(steps, updates)
        # frozen sampled coordinates (every recorded update exactly 0) would add a point mass
        # at 0 that the diagnostics read as persistent scale structure; they are counted in
        # frozen_share instead, and the CLT's assumptions are checked on the coordinates that
        # moved (all of them when fewer than 8 moved, which then reads as degenerate)
        moving = np.any(u != 0, axis=0)
        um = u[:, moving] if 8 <= moving.sum() < moving.size else u
        curve = kurtosis_curve(s, um)
        traj = trajectory_diagnostics(s, um, max_lag=max_lag, curve=curve)
        status = "available"
        if coords is not None:
            idx = np.asarray(coords, dtype=np.int64).reshape(-1)
            if idx.size != u.shape[1] or idx.min() < 0 or idx.max() >= dw.size:
                raise InputDataError(
                    f"`coords` must hold {u.shape[1]} flat indices into a tensor of "
                    f"{dw.size} entries."
                )
            ref = dw[idx]
            den = float(np.linalg.norm(ref))
            sum_err = float(np.linalg.norm(u.sum(axis=0) - ref)) / den if den > 0 else np.nan
    comp = components.set_index("component")
    ev = dict(dec.to_dict())
    ev.update({f"label_{c}": comp.at[c, "label"] for c in COMPONENTS})
    ev["has_trajectories"] = traj is not None
    if traj is not None:
        ev.update(traj.to_dict())
    verdict = decide_clt(ev)
    return CLTTensorResult(tensor=tensor, decomposition=dec, components=components,
                           trajectory=traj, curve=curve, verdict=verdict,
                           trajectory_status=status, trajectory_sum_error=sum_err)


# --------------------------------------------------------------------------- adapters


def _collect(results: list[CLTTensorResult], source: str, skipped: list) -> CLTAnalysis:
    summary = pd.DataFrame([r.evidence() for r in results])
    components = (pd.concat([r.components for r in results], ignore_index=True)
                  if results else pd.DataFrame())
    curves = pd.concat(
        [r.curve.assign(tensor=r.tensor) for r in results if r.curve is not None],
        ignore_index=True,
    ) if any(r.curve is not None for r in results) else pd.DataFrame(
        columns=["tensor", "n", "step", "kurtosis", "step_kurtosis", "step_variance",
                 "predicted_iid", "predicted_independent", "noise_floor"])
    if len(curves):
        curves = curves[["tensor"] + [c for c in curves.columns if c != "tensor"]]
    acf = pd.DataFrame(
        [{"tensor": r.tensor, "lag": i + 1, "acf": v}
         for r in results if r.trajectory is not None for i, v in enumerate(r.trajectory.acf)],
        columns=["tensor", "lag", "acf"],
    )
    summary.attrs["source"] = source
    summary.attrs["skipped"] = list(skipped)
    return CLTAnalysis(summary=summary, components=components, curves=curves, acf=acf,
                       tensors={r.tensor: r for r in results}, source=source)


def _selected(name: str, shape: tuple, tensors: Sequence[str] | None, min_numel: int) -> bool:
    if tensors is not None:
        return name in tensors
    return len(shape) >= 2 and int(np.prod(shape)) >= min_numel


def _load_pair_side(side: Any, which: str) -> tuple[dict[str, np.ndarray], str]:
    if isinstance(side, Mapping):
        return {str(k): to_numpy(v, name=f"{which}[{k!r}]") for k, v in side.items()}, "<dict>"
    if isinstance(side, (str, os.PathLike)):
        from ..io.checkpoint import open_checkpoint

        with open_checkpoint(side) as ck:
            shaped = {}
            for e in ck.entries:
                shaped[e.name] = np.asarray(ck.load(e.name), dtype=np.float64).reshape(e.shape)
        return shaped, os.fspath(side)
    raise InputDataError(
        f"`{which}` must be a checkpoint path or a mapping of tensor names to arrays; got "
        f"{type(side).__name__}."
    )


def _is_store(obj: Any) -> bool:
    return all(hasattr(obj, a) for a in ("snapshot_steps", "tensor", "trajectories"))


def analyze_clt(
    source: Any,
    *,
    tensors: Sequence[str] | None = None,
    min_numel: int = 64,
    max_lag: int | None = None,
    max_samples: int = 5_000,
    families: Sequence[str] | None = None,
    rng: np.random.Generator | int | None = 0,
) -> CLTAnalysis:
    """CLT analysis of every weight tensor of a recorded run or of a checkpoint pair.

    Parameters
    ----------
    source : RunStore, path of a run directory, or (init, final) pair
        A run written by :class:`~weightstats.capture.hooks.WeightRecorder` (its first and last
        snapshots are W_0 and W_T; its coordinate trajectories test the CLT), or a pair of
        checkpoint paths / ``{name: array}`` mappings (trajectory-based parts unavailable).
    tensors : sequence of str, optional
        Names to analyse; default: every tensor with at least two dimensions and `min_numel`
        entries (weights, not biases).
    min_numel : int
        Smallest tensor analysed by default.
    max_lag : int, optional
        Largest autocorrelation lag (default ``min(50, T // 4)``).
    max_samples : int
        Subsample size for fits and shape verdicts.
    families : sequence of str, optional
        Families fitted to each component (default: the statistics engine's default set).
    rng : numpy.random.Generator or int, optional
        Seed or generator (default 0, so reports are reproducible).

    Returns
    -------
    CLTAnalysis
        ``.summary`` (one row per tensor), ``.components``, ``.curves``, ``.acf``, ``.tensors``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> w0 = {"w": rng.uniform(-1, 1, (64, 64))}
    >>> wt = {"w": w0["w"] + 1e-3 * rng.normal(size=(64, 64))}
    >>> analyze_clt((w0, wt)).summary.loc[0, "verdict"]
    'inherited-from-init'
    """
    rng = np.random.default_rng(rng)
    if isinstance(source, (str, os.PathLike)) and not _is_store(source):
        from ..capture.store import RunStore

        store = RunStore.open(source)
        return _analyze_store(store, os.fspath(source), tensors=tensors, min_numel=min_numel,
                              max_lag=max_lag, max_samples=max_samples, families=families,
                              rng=rng)
    if _is_store(source):
        return _analyze_store(source, str(getattr(source, "path", "<RunStore>")),
                              tensors=tensors, min_numel=min_numel, max_lag=max_lag,
                              max_samples=max_samples, families=families, rng=rng)
    if isinstance(source, (tuple, list)) and len(source) == 2:
        init, init_name = _load_pair_side(source[0], "init")
        final, final_name = _load_pair_side(source[1], "final")
        results, skipped = [], []
        for name, a in init.items():
            if not _selected(name, a.shape, tensors, min_numel):
                continue
            if name not in final:
                skipped.append((name, "missing from the final checkpoint"))
                continue
            if final[name].shape != a.shape:
                skipped.append((name, f"shape {a.shape} at init but {final[name].shape} "
                                "at the end"))
                continue
            results.append(analyze_clt_arrays(a, final[name], tensor=name,
                                              max_samples=max_samples, families=families,
                                              rng=rng))
        if tensors is not None:
            missing = [t for t in tensors if t not in init]
            if missing:
                raise InputDataError(f"`tensors` names {missing!r}, which the initial "
                                     f"checkpoint does not contain.")
        if not results:
            raise InputDataError(
                "no tensor to analyse: the two checkpoints share no weight tensor with at "
                f"least {min_numel} entries and two dimensions; pass `tensors` to choose."
            )
        return _collect(results, f"{init_name} -> {final_name}", skipped)
    raise InputDataError(
        "`source` must be a RunStore, a run directory, or an (init, final) pair of checkpoint "
        f"paths or mappings; got {type(source).__name__}."
    )


def _analyze_store(store: Any, label: str, *, tensors, min_numel, max_lag, max_samples,
                   families, rng) -> CLTAnalysis:
    steps = list(store.snapshot_steps())
    if len(steps) < 2:
        raise InputDataError(
            f"the run {label!r} has {len(steps)} weight snapshot(s); the CLT analysis needs the "
            "initial and the final one (record with a WeightRecorder for the whole run)."
        )
    s0, st = steps[0], steps[-1]
    if hasattr(store, "tensor_names"):
        names = list(store.tensor_names())
    else:
        names = list(store.snapshot(s0).keys())
    results, skipped = [], []
    for name in names:
        w0 = to_numpy(store.tensor(name, s0), name=name)
        if not _selected(name, w0.shape, tensors, min_numel):
            continue
        try:
            wt = to_numpy(store.tensor(name, st), name=name)
        except (KeyError, WeightstatsError) as exc:
            skipped.append((name, f"no final snapshot: {exc}"))
            continue
        try:
            tr = store.trajectories(name)
            if isinstance(tr, tuple):
                tsteps, coords, upd = tr
            else:  # capture.store.Trajectories
                tsteps, coords, upd = tr.steps, tr.coords, tr.updates
            upd = to_numpy(upd, name="updates")
        except (KeyError, WeightstatsError):
            tsteps = coords = upd = None
        if upd is not None and np.asarray(upd).shape[0] < 4:
            tsteps = coords = upd = None
        results.append(analyze_clt_arrays(w0, wt, steps=tsteps, updates=upd, coords=coords,
                                          tensor=name, max_lag=max_lag,
                                          max_samples=max_samples, families=families, rng=rng))
    if not results:
        raise InputDataError(f"the run {label!r} has no weight tensor to analyse; pass "
                             "`tensors` to choose.")
    return _collect(results, label, skipped)
