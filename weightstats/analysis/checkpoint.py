"""Are a checkpoint's weights Gaussian? One row of evidence per tensor.

:func:`analyze_tensor` is the unit of work (one tensor's values in, one dict of numbers out);
:func:`analyze_checkpoint` opens checkpoints with
:func:`~weightstats.io.checkpoint.open_checkpoint`,
streams their tensors through it (in this process, in ``jobs`` worker processes, or on a Dask
cluster, see :mod:`weightstats.analysis._runner`) and returns one tidy frame in layer order.
"""

from __future__ import annotations

import fnmatch
import hashlib
import math
import os
import warnings
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from .._validation import to_numpy
from ..errors import InputDataError, WeightstatsError
from ..io.tensors import fan_in as _fan_in
from ..io.tensors import infer_role, layer_order
from ._rowwise import ks_distance, prepare, row_shapiro_pass_rate

__all__ = [
    "analyze_tensor",
    "analyze_checkpoint",
    "tensor_seed",
    "COLUMNS",
    "DEFAULT_MAX_SAMPLES",
    "DEFAULT_MIN_NUMEL",
    "VERDICTS",
]

#: Default subsample for the fits; see bench/analyze_speed.py for its accuracy.
DEFAULT_MAX_SAMPLES = 200_000
#: Tensors with fewer values are skipped (biases of tiny layers, scalars).
DEFAULT_MIN_NUMEL = 64
#: Fewest finite values a tensor needs to be analysed rather than called degenerate.
MIN_VALUES = 16
#: Output units tested by Shapiro-Wilk per tensor, and the test's level.
ROW_TEST_MAX_ROWS = 256
ROW_TEST_ALPHA = 0.05
#: Values and EM settings for the BIC-selected Gaussian mixture (see _shape_evidence).
MIXTURE_SAMPLES = 20_000
MIXTURE_OPTIONS = {"n_init": 2, "max_iter": 200, "tol": 1e-5}
#: Families ranked by BIC (the mixture is fitted once, by select_gaussian_mixture).
FAMILIES = ("normal", "laplace", "logistic", "t", "gennorm", "uniform")

VERDICTS = (
    "gaussian",
    "heavy-tailed",
    "light-tailed",
    "skewed",
    "mixture",
    "scale-mixture",
    "degenerate",
)

COLUMNS = [
    "checkpoint",
    "tensor",
    "shape",
    "dtype",
    "numel",
    "role",
    "fan_in",
    "n_used",
    "best_family",
    "delta_bic_normal",
    "skewness",
    "excess_kurtosis",
    "wasserstein1",
    "tail_mass_ratio",
    "tail_index",
    "mixture_k",
    "verdict_pooled",
    "verdict_rowwise",
    "verdict",
    "rowwise_excess_kurtosis",
    "row_sw_pass_rate",
    "row_sw_rows",
    "row_sw_expected",
    "ks_kaiming_uniform",
    "ks_normal_init",
    "mean",
    "sd",
    "status",
    "note",
]


def tensor_seed(seed: int, name: str) -> np.random.Generator:
    """The generator for tensor `name`: a function of the global seed and the name only.

    So results do not depend on the order tensors are processed in, or on ``jobs``.
    """
    digest = int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "little")
    return np.random.default_rng([int(seed), digest])


def _empty_row() -> dict[str, Any]:
    row: dict[str, Any] = {c: math.nan for c in COLUMNS}
    row.update(
        best_family=None,
        verdict_pooled=None,
        verdict_rowwise=None,
        verdict=None,
        status="analysed",
        note="",
        mixture_k=math.nan,
    )
    return row


def _shape_evidence(x: np.ndarray, rng: np.random.Generator, *,
                    sorted_x: np.ndarray | None = None):
    """Effect sizes, BIC-selected mixture and shape verdict of one sample.

    `sorted_x`, when the caller already has it, is `x` sorted: the effect sizes (which do not
    depend on order) are computed from it, so their own sort runs over sorted data.
    """
    from ..stats.mixture import select_gaussian_mixture
    from ..stats.normality import effect_sizes
    from ..stats.verdict import decide_shape

    effects = effect_sizes(x if sorted_x is None else sorted_x)
    # EM costs ~1-2 s per tensor at the library defaults whatever n is (many iterations on
    # heavy tails); on a 20,000-value subsample with 2 starts, 200 iterations and tol 1e-5 it
    # takes 0.07-0.4 s and picks the same K on the bench's Gaussian, t and mixture tensors.
    xm = x if x.size <= MIXTURE_SAMPLES else x[rng.choice(x.size, MIXTURE_SAMPLES, replace=False)]
    mixture = select_gaussian_mixture(xm, rng=rng, **MIXTURE_OPTIONS)
    return effects, mixture, decide_shape(effects, mixture)


def _tail_index(x: np.ndarray) -> float:
    from ..stats.tails import tail_summary

    table = tail_summary(x)
    column = "tail_index"
    values = pd.to_numeric(table[column], errors="coerce").to_numpy(dtype=float)
    values = values[np.isfinite(values)]
    # the heavier side decides (smaller index = heavier tail)
    return float(values.min()) if values.size else math.nan


def analyze_tensor(
    values: Any,
    shape: Sequence[int],
    role: str,
    *,
    max_samples: int | None = DEFAULT_MAX_SAMPLES,
    rng: Any = None,
    out_axis: int = 0,
    fan_in: float | None = None,
) -> dict[str, Any]:
    """Analyse one tensor: families by BIC, effect sizes, tails, pooled and per-unit verdicts.

    Parameters
    ----------
    values : torch.Tensor, numpy.ndarray or row source
        The tensor's values in any float dtype (never upcast as a whole), or a row source
        (:meth:`~weightstats.io.checkpoint.Checkpoint.row_source`) read block by block.
    shape : sequence of int
        Its shape.
    role : str
        Its role (:func:`~weightstats.io.tensors.infer_role`).
    max_samples : int or None
        Fit on a uniform random subsample of this many values (None: all values).
    rng : numpy.random.Generator, int or None
        Randomness for the subsample, the mixture starts and the per-unit tests.
    out_axis : int
        Axis of the output units (0 for PyTorch layouts, -1 for Keras).
    fan_in : float, optional
        Inputs per output unit; derived from `shape` and `role` when omitted.

    Returns
    -------
    dict
        The numeric columns of :data:`COLUMNS` (without ``checkpoint``, ``tensor``, ``dtype``).
        ``mean, sd, skewness, excess_kurtosis`` and ``tail_mass_ratio`` are exact over every
        finite value (one streaming pass); the fits, W1, tail index, KS distances and verdicts
        use the subsample of ``n_used`` values.
        ``verdict`` is the pooled verdict, except ``scale-mixture`` when the pooled values are
        heavy-tailed but each unit's standardised values are Gaussian; ``degenerate`` (with a
        ``note``) for all-NaN, constant or tiny tensors.
    """
    shape = tuple(int(s) for s in shape)
    if max_samples is not None and (
        not isinstance(max_samples, (int, np.integer)) or max_samples < MIN_VALUES
    ):
        raise InputDataError(
            f"`max_samples` must be an integer >= {MIN_VALUES} or None; got {max_samples!r}."
        )
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    row = _empty_row()
    numel = math.prod(shape)
    row.update(shape=str(list(shape)), numel=numel, role=role)
    if fan_in is None:
        fan_in = _fan_in(shape, role, out_axis=out_axis)
    row["fan_in"] = fan_in
    prep = prepare(values, shape, out_axis=out_axis, max_samples=max_samples, rng=gen)
    x = prep.pooled
    row["n_used"] = x.size
    notes = []
    if prep.n_nonfinite:
        notes.append(f"{prep.n_nonfinite} of {numel} values are NaN or infinite (left out)")
    if x.size < MIN_VALUES or x.min() == x.max():
        why = (
            "all values are NaN or infinite"
            if x.size == 0
            else f"only {x.size} finite values (at least {MIN_VALUES} needed)"
            if x.size < MIN_VALUES
            else f"constant (every value is {x[0]:.6g})"
        )
        row.update(verdict="degenerate", verdict_pooled="degenerate", note="; ".join([why] + notes))
        if x.size:
            row.update(mean=float(x.mean()), sd=float(x.std(ddof=1)) if x.size > 1 else math.nan)
        return row
    from ..stats.fit import fit_families

    # Sorted once for every order-free statistic below (effect sizes, tails, KS to the init),
    # which would each sort again; the mixture's seeded subsample still draws from `x`.
    xs = np.sort(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence notes end up in `note` via the fits
        effects, mixture, verdict = _shape_evidence(x, gen, sorted_x=xs)
        fits = fit_families(x, FAMILIES, rng=gen)
        bic = dict(zip(fits["family"], fits["bic"]))
        if mixture.k > 1:  # the mixture was fitted on a subsample: its BIC on all of x
            ll = float(np.sum(mixture.logpdf(x)))
            bic["gmm"] = -2.0 * ll + mixture.n_params * math.log(x.size)
        best = min(bic, key=bic.get)
        row.update(
            best_family=best,
            delta_bic_normal=float(bic["normal"] - bic[best]),
            skewness=effects.skewness,
            excess_kurtosis=effects.excess_kurtosis,
            wasserstein1=effects.wasserstein1,
            tail_mass_ratio=effects.tail_mass_ratio,
            mixture_k=int(mixture.k),
            mean=effects.mean,
            sd=effects.sd,
            verdict_pooled=verdict.label,
            tail_index=_tail_index(xs),
        )
        z = prep.rowwise
        if z is not None and z.size >= MIN_VALUES and z.min() < z.max():
            r_effects, _, r_verdict = _shape_evidence(z, gen)
            row.update(
                verdict_rowwise=r_verdict.label, rowwise_excess_kurtosis=r_effects.excess_kurtosis
            )
            if prep.n_constant_units:
                notes.append(
                    f"{prep.n_constant_units} constant units left out of the row-wise view"
                )
        rate, n_rows = row_shapiro_pass_rate(
            prep, max_rows=ROW_TEST_MAX_ROWS, alpha=ROW_TEST_ALPHA, rng=gen
        )
        row.update(
            row_sw_pass_rate=rate,
            row_sw_rows=n_rows,
            row_sw_expected=1 - ROW_TEST_ALPHA if n_rows else math.nan,
        )
    # exact full-tensor figures from the streaming pass replace the subsample's (see Prepared)
    full = {k: v for k, v in prep.moments.items() if math.isfinite(v)}
    row.update(full)
    if verdict.label == "heavy-tailed" and row["verdict_rowwise"] == "gaussian":
        row["verdict"] = "scale-mixture"
        notes.append("heavy tails come from units with different scales; each unit is Gaussian")
    else:
        row["verdict"] = verdict.label
    if math.isfinite(fan_in) and fan_in > 0:
        bound = 1.0 / math.sqrt(fan_in)  # nn.Linear/Conv default: kaiming_uniform_(a=sqrt(5))
        row["ks_kaiming_uniform"] = ks_distance(xs, "uniform", bound)
        row["ks_normal_init"] = ks_distance(xs, "normal", bound / math.sqrt(3.0))
    elif role == "embedding":
        row["ks_normal_init"] = ks_distance(xs, "normal", 1.0)  # nn.Embedding: N(0, 1)
    row["note"] = "; ".join(notes)
    return row


# --------------------------------------------------------------------------- checkpoints


class _DictCheckpoint:
    """An in-memory state dict behind the same interface as a Checkpoint."""

    format = "state-dict"
    path = "<state_dict>"
    order_from_file = False

    def __init__(self, state: Mapping[str, Any]) -> None:
        from ..io.formats._base import FLOAT_DTYPES, torch_dtype_name
        from ..io.tensors import TensorEntry

        if not isinstance(state, Mapping) or not state:
            raise InputDataError("`path_or_state_dict` is an empty mapping; it holds no tensors.")
        self._values: dict[str, Any] = {}
        self.entries, self.skipped = [], []
        for name, value in state.items():
            name = str(name)
            if not hasattr(value, "shape") or not hasattr(value, "dtype"):
                self.skipped.append((name, f"not a tensor ({type(value).__name__})"))
                continue
            dtype = torch_dtype_name(value.dtype)
            shape = tuple(int(s) for s in value.shape)
            if dtype not in FLOAT_DTYPES:
                self.skipped.append(
                    (name, f"{dtype} values are not analysed (only floating point)")
                )
            elif math.prod(shape) == 0:
                self.skipped.append((name, f"empty tensor of shape {list(shape)} (a placeholder)"))
            else:
                self._values[name] = value
                self.entries.append(
                    TensorEntry(name, shape, dtype, math.prod(shape), self.path, name)
                )
        by_name = {e.name: e for e in self.entries}
        self.entries = [by_name[n] for n in layer_order(by_name)]

    def load_tensor(self, name: str):
        value = self._values[name]
        if type(value).__module__.split(".")[0] == "torch":
            return value.detach().cpu()
        return to_numpy(value, name=name)

    def sha256(self) -> str:
        h = hashlib.sha256()
        for e in self.entries:
            h.update(
                e.name.encode()
                + b"\0"
                + np.ascontiguousarray(to_numpy(self._values[e.name])).tobytes()
            )
        return h.hexdigest()

    def close(self) -> None:
        pass


def _skipped_row(name: str, reason: str) -> dict[str, Any]:
    row = _empty_row()
    row.update(tensor=name, status="skipped", note=reason, shape=None, dtype=None, role=None)
    return row


def _select(entries, *, include, exclude, min_numel):
    work, skipped = [], []
    for e in entries:
        if include and not any(fnmatch.fnmatchcase(e.name, g) for g in include):
            skipped.append((e.name, f"not matched by --include {' '.join(include)}", e))
        elif exclude and any(fnmatch.fnmatchcase(e.name, g) for g in exclude):
            hit = next(g for g in exclude if fnmatch.fnmatchcase(e.name, g))
            skipped.append((e.name, f"excluded by --exclude {hit!r}", e))
        elif e.numel < min_numel:
            skipped.append((e.name, f"too small: {e.numel} values (--min-numel {min_numel})", e))
        else:
            work.append(e)
    return work, skipped


def _versions() -> dict[str, str]:
    import scipy

    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("weightstats", "numpy", "scipy", "pandas", "torch"):
        try:
            out[f"{pkg}_version"] = version(pkg)
        except PackageNotFoundError:
            out[f"{pkg}_version"] = "unknown"
    out["scipy_version"] = scipy.__version__
    return out


def _as_list(value: str | os.PathLike | Iterable | Mapping) -> list:
    if isinstance(value, (str, os.PathLike, Mapping)):
        return [value]
    return list(value)


def analyze_checkpoint(
    path_or_state_dict: Any,
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    min_numel: int = DEFAULT_MIN_NUMEL,
    max_samples: int | None = DEFAULT_MAX_SAMPLES,
    seed: int = 0,
    jobs: int = 1,
    scheduler: str | None = None,
    allow_pickle: bool = False,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> pd.DataFrame:
    """Analyse every float tensor of one or several checkpoints.

    Parameters
    ----------
    path_or_state_dict : path, state dict, or a list of them
        Checkpoint files or directories (any format :func:`open_checkpoint` reads), or
        in-memory ``{name: tensor}`` mappings.
    include, exclude : sequence of str
        Shell-style globs on tensor names; a tensor is analysed if it matches some `include`
        (when given) and no `exclude`. Left-out tensors are rows with ``status='skipped'``.
    min_numel : int
        Tensors with fewer values are skipped.
    max_samples : int or None
        Fit each tensor on a seeded random subsample of this many values (``n_used``).
    seed : int
        Global seed; each tensor's generator depends only on it and the tensor's name.
    jobs : int
        Worker processes; results are identical for any value. Workers are forked from this
        process on Linux (in-memory state dicts reach them that way); elsewhere in-memory
        state dicts are analysed in this process.
    scheduler : str, optional
        Address of a Dask distributed scheduler to send the work to (tensor names travel,
        never arrays; each worker opens the checkpoint itself).
    allow_pickle : bool
        Allow checkpoints that need code execution to load (trusted files only).
    progress : callable, optional
        Called with the number of tensors finished since the last call.
    on_total : callable, optional
        Called once with the number of tensors to analyse.

    Returns
    -------
    pandas.DataFrame
        One row per tensor in layer order with the columns of :data:`COLUMNS`; ``attrs``
        holds the package versions, seed, max_samples and each checkpoint's SHA-256.

    Raises
    ------
    CheckpointError, UnsafeCheckpointError, InputDataError
        Unreadable checkpoints and bad options.
    """
    from ..io.checkpoint import open_checkpoint
    from ._runner import run_tasks

    if not isinstance(min_numel, (int, np.integer)) or min_numel < 1:
        raise InputDataError(f"`min_numel` must be a positive integer; got {min_numel!r}.")
    if max_samples is not None and (
        not isinstance(max_samples, (int, np.integer)) or max_samples < MIN_VALUES
    ):
        raise InputDataError(
            f"`max_samples` must be an integer >= {MIN_VALUES}; got {max_samples!r}."
        )
    if not isinstance(jobs, (int, np.integer)) or jobs < 1:
        raise InputDataError(f"`jobs` must be a positive integer; got {jobs!r}.")
    sources = _as_list(path_or_state_dict)
    if not sources:
        raise InputDataError("`path_or_state_dict` is empty; give at least one checkpoint.")
    options = {"max_samples": max_samples, "seed": int(seed)}
    opened = []
    try:
        for src in sources:
            if isinstance(src, Mapping):
                opened.append((None, _DictCheckpoint(src)))
            else:
                path = os.path.abspath(os.fspath(src))
                opened.append((path, open_checkpoint(path, allow_pickle=allow_pickle)))
        tasks, frames_meta = [], []
        for i, (path, ckpt) in enumerate(opened):
            work, left_out = _select(
                ckpt.entries, include=include, exclude=exclude, min_numel=min_numel
            )
            frames_meta.append((path, ckpt, work, left_out))
            tasks.extend((i, path, e) for e in work)
        if on_total is not None:
            on_total(len(tasks))
        results = run_tasks(
            tasks,
            opened,
            options,
            jobs=jobs,
            scheduler=scheduler,
            allow_pickle=allow_pickle,
            progress=progress,
        )
        frames, meta = [], []
        for i, (path, ckpt, work, left_out) in enumerate(frames_meta):
            label = os.fspath(sources[i]) if path is not None else f"<state_dict {i}>"
            rows = {}
            for e in work:
                row = results[(i, e.name)]
                row.update(tensor=e.name, dtype=e.dtype)
                rows[e.name] = row
            for name, reason, e in left_out:
                row = _skipped_row(name, reason)
                row.update(
                    shape=str(list(e.shape)),
                    dtype=e.dtype,
                    numel=e.numel,
                    role=infer_role(name, e.shape),
                )
                rows[name] = row
            for name, reason in ckpt.skipped:
                rows.setdefault(name, _skipped_row(name, reason))
            names = (
                list(rows)
                if ckpt.order_from_file
                else layer_order(
                    [e.name for e in ckpt.entries]
                    + [n for n in rows if n not in {e.name for e in ckpt.entries}]
                )
            )
            frame = pd.DataFrame([rows[n] for n in names], columns=COLUMNS)
            frame["checkpoint"] = label
            frames.append(frame)
            meta.append({"checkpoint": label, "format": ckpt.format, "sha256": ckpt.sha256()})
    finally:
        for _, ckpt in opened:
            ckpt.close()
    out = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    for column in ("numel", "n_used", "row_sw_rows", "mixture_k"):
        out[column] = pd.to_numeric(out[column], errors="coerce")
    out.attrs.update(_versions())
    out.attrs.update(
        seed=int(seed), max_samples=max_samples, min_numel=int(min_numel), checkpoints=meta
    )
    if len(meta) == 1:
        out.attrs["sha256"] = meta[0]["sha256"]
    return out


def _analyze_entry(ckpt: Any, entry: Any, options: Mapping[str, Any]) -> dict[str, Any]:
    """Analyse one entry of an open checkpoint; a failure becomes a ``failed`` row."""
    try:
        row_source = getattr(ckpt, "row_source", None)
        values = row_source(entry.name) if row_source else ckpt.load_tensor(entry.name)
        role = infer_role(entry.name, entry.shape)
        try:
            return analyze_tensor(
                values,
                entry.shape,
                role,
                max_samples=options["max_samples"],
                rng=tensor_seed(options["seed"], entry.name),
                out_axis=entry.out_axis,
            )
        finally:
            del values
            if hasattr(ckpt, "release"):
                ckpt.release()  # unmap this tensor's pages before the next one
    except WeightstatsError as exc:
        row = _empty_row()
        row.update(
            status="failed",
            note=" ".join(str(exc).split()),
            shape=str(list(entry.shape)),
            numel=entry.numel,
            role=infer_role(entry.name, entry.shape),
        )
        return row
