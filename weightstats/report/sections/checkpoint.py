"""The checkpoint sections: "are these weights Gaussian?" answered from the per-tensor frame.

:func:`checkpoint_sections` turns the frame of
:func:`weightstats.analysis.checkpoint.analyze_checkpoint` (one row per tensor) and a loader of
tensor values into six :class:`~weightstats.report.model.SectionModel` objects:

1. ``answer`` -- the headline: tensors and parameters by verdict and role;
2. ``tensors`` -- the per-tensor table (the CLI's numbers, sortable and filterable);
3. ``evidence`` -- for the tensors that matter, a histogram with fitted densities, a normal
   Q-Q plot, the survival of |w| with its Hill tail, and pooled against row-standardised;
4. ``model`` -- the whole model: kurtosis and delta-BIC by depth, verdicts by layer, kurtosis
   against fan-in;
5. ``meaning`` -- what each verdict present means, and why p-values are not the verdict;
6. ``methods`` -- tests, thresholds and references.

The fits drawn in the figures come from the statistics engine (:mod:`weightstats.stats`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from ...analysis.checkpoint import MIXTURE_SAMPLES
from ...errors import InputDataError, WeightstatsError
from .. import figures as F
from ..model import (
    Column,
    FigureGrid,
    KeyNumber,
    KeyNumbers,
    Prose,
    References,
    SectionModel,
    Table,
)
from . import _engine, _texts

__all__ = ["REQUIRED_COLUMNS", "TABLE_COLUMNS", "checkpoint_sections", "select_tensors"]

#: Columns the frame must have (the contract of analyze_checkpoint, docs/DESIGN.md).
REQUIRED_COLUMNS = (
    "tensor",
    "shape",
    "numel",
    "role",
    "fan_in",
    "verdict",
    "status",
    "excess_kurtosis",
    "delta_bic_normal",
)

#: The per-tensor table: shown columns, their format and tooltip (absent columns are left out).
TABLE_COLUMNS = (
    Column("tensor", "tensor", "text", "Name in the checkpoint"),
    Column("role", "role", "text", "Role read from the name and shape"),
    Column("shape", "shape", "shape", "Tensor shape"),
    Column("dtype", "dtype", "text", "Stored dtype"),
    Column("numel", "numel", "int", "Number of values"),
    Column("fan_in", "fan-in", "int", "Inputs per output unit"),
    Column("n_used", "n used", "int", "Values used by the statistics"),
    Column("mean", "mean", "float", "Mean of the values"),
    Column("sd", "sd", "float", "Standard deviation of the values"),
    Column("verdict", "verdict", "verdict", "Final shape verdict"),
    Column("verdict_pooled", "pooled", "verdict", "Verdict on the whole tensor"),
    Column("verdict_rowwise", "row-wise", "verdict", "Verdict after standardising each row"),
    Column("best_family", "best family", "text", "Family with the lowest BIC"),
    Column("delta_bic_normal", "\u0394BIC normal", "float", "BIC(normal) \u2212 BIC(best)"),
    Column("skewness", "skew", "fixed3", "Sample skewness"),
    Column("excess_kurtosis", "ex. kurtosis", "fixed3", "Excess kurtosis (0 for a normal)"),
    Column("wasserstein1", "W\u2081", "fixed3", "Wasserstein-1 to N(0,1), standardised"),
    Column("tail_mass_ratio", "tail mass", "fixed2", "Mass beyond 3 sd / normal's"),
    Column("tail_index", "tail index", "fixed2",
           "Hill survival exponent, heavier side (large: light tails)"),
    Column("mixture_k", "mixture K", "int", "Components of the BIC-selected Gaussian mixture"),
    Column(
        "rowwise_excess_kurtosis",
        "row-wise kurt.",
        "fixed3",
        "Excess kurtosis after standardising each row",
    ),
    Column("row_sw_pass_rate", "rows SW pass", "percent", "Rows not rejected by Shapiro-Wilk"),
    Column("row_sw_rows", "rows tested", "int", "Rows tested by Shapiro-Wilk"),
    Column("ks_kaiming_uniform", "KS Kaiming-U", "fixed3", "KS distance to Kaiming-uniform init"),
    Column(
        "ks_normal_init", "KS normal init", "fixed3", "KS distance to a normal init of the same sd"
    ),
    Column("status", "status", "text", "analyzed / degenerate / skipped"),
    Column("note", "note", "text", "Why a tensor was skipped, or a caveat"),
)

Values = Callable[[str], np.ndarray]

#: The mixture overlay is fitted on this many values at most, as in the analysis itself.
_MIXTURE_POINTS = MIXTURE_SAMPLES


def _check_frame(frame: Any) -> pd.DataFrame:
    if not isinstance(frame, pd.DataFrame):
        raise InputDataError(
            f"`frame` must be the DataFrame of analyze_checkpoint; got {type(frame).__name__}."
        )
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise InputDataError(
            f"`frame` lacks columns {missing}; pass the frame returned by analyze_checkpoint."
        )
    return frame.reset_index(drop=True)


#: Values of ``status`` meaning "analysed" (DESIGN.md: 'analyzed'; the engine: 'analysed').
ANALYZED = ("analyzed", "analysed")


def _analyzed(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["status"].isin(ANALYZED)]


def _verdict_rank(v: str) -> tuple[int, str]:
    order = _texts.VERDICT_ORDER
    return (order.index(v) if v in order else len(order), v)


def select_tensors(frame: pd.DataFrame, *, max_tensors: int = 10) -> list[int]:
    """Row positions of the tensors to draw: the largest of each role, then every tensor whose
    verdict is not ``gaussian`` (largest first), at most `max_tensors`, in layer order."""
    if max_tensors < 0:
        raise InputDataError(f"`max_tensors` must be >= 0; got {max_tensors}.")
    d = _analyzed(frame)
    chosen: list[int] = []
    for _, group in d.groupby("role", sort=False):
        chosen.append(int(group["numel"].astype(float).idxmax()))
    others = d[d["verdict"] != "gaussian"].sort_values("numel", ascending=False, kind="stable")
    for idx in others.index:
        if int(idx) not in chosen:
            chosen.append(int(idx))
    return sorted(chosen[:max_tensors])


def _parameters_by(frame: pd.DataFrame) -> pd.DataFrame:
    """Tidy counts: one row per (role, verdict) plus role 'all'; shares of the role's params."""
    d = frame.assign(numel=frame["numel"].astype(float))
    rows = []
    for role, group in [("all", d)] + list(d.groupby("role", sort=False)):
        total = group["numel"].sum()
        counts = group.groupby("verdict", sort=False)["numel"].agg(["size", "sum"])
        for verdict in sorted(counts.index, key=_verdict_rank):
            n, p = counts.loc[verdict]
            rows.append(
                {
                    "role": role,
                    "verdict": verdict,
                    "tensors": int(n),
                    "parameters": float(p),
                    "share_of_parameters": float(p / total) if total > 0 else math.nan,
                }
            )
    return pd.DataFrame(
        rows, columns=["role", "verdict", "tensors", "parameters", "share_of_parameters"]
    )


def _crosstabs(by: pd.DataFrame) -> tuple[Table, Table]:
    """Two compact role x verdict tables from the tidy counts: tensors, and share of parameters."""
    verdicts = sorted(pd.unique(by["verdict"]), key=_verdict_rank)
    roles = list(pd.unique(by["role"]))
    totals = by.groupby("role", sort=False)[["tensors", "parameters"]].sum()
    out = []
    for value, fmt, key, title in (
        ("tensors", "int", "by-verdict-tensors", "Tensors by role and verdict"),
        (
            "share_of_parameters",
            "percent",
            "by-verdict-params",
            "Share of each role's parameters by verdict",
        ),
    ):
        wide = by.pivot(index="role", columns="verdict", values=value).reindex(
            index=roles, columns=verdicts
        )
        if value == "tensors":
            wide = wide.fillna(0).astype(int)
            lead = totals[["tensors"]].reindex(roles)
            lead_cols = (Column("tensors", "tensors", "int", "Tensors of the role"),)
        else:
            wide = wide.fillna(0.0)
            lead = totals[["parameters"]].reindex(roles)
            lead_cols = (Column("parameters", "parameters", "params", "Parameters of the role"),)
        table = pd.concat([lead, wide], axis=1).rename_axis(None, axis=1).reset_index()
        cols = (Column("role", "role", "text"), *lead_cols, *(Column(v, v, fmt) for v in verdicts))
        out.append(Table(key, title, table, cols, interactive=False))
    return out[0], out[1]


def _answer(frame: pd.DataFrame) -> KeyNumbers:
    d = _analyzed(frame)
    n_params = float(d["numel"].astype(float).sum())
    numbers = [
        KeyNumber(
            "tensors analysed", len(d), "int", "tensors in the checkpoint", detail_value=len(frame)
        ),
        KeyNumber("parameters analysed", n_params, "params"),
    ]
    if d.empty:
        return KeyNumbers(
            "No tensor could be analysed; the notes in the table say why.", tuple(numbers)
        )
    by_verdict = d.groupby("verdict")["numel"].agg(lambda s: s.astype(float).sum())
    counts = d["verdict"].value_counts()
    n_gauss = int(counts.get("gaussian", 0))
    n_unit = n_gauss + int(counts.get("scale-mixture", 0))
    numbers += [
        KeyNumber(
            "of parameters in Gaussian tensors",
            by_verdict.get("gaussian", 0.0) / n_params,
            "percent",
            "tensor" if n_gauss == 1 else "tensors",
            detail_value=n_gauss,
        ),
        KeyNumber(
            "Gaussian per unit",
            (by_verdict.get("gaussian", 0.0) + by_verdict.get("scale-mixture", 0.0)) / n_params,
            "percent",
            "gaussian or scale-mixture tensors",
            detail_value=n_unit,
        ),
        KeyNumber(
            "tensors not Gaussian",
            len(d) - n_gauss,
            "int",
            "of them scale-mixture",
            detail_value=int(counts.get("scale-mixture", 0)),
        ),
    ]
    share = by_verdict.get("gaussian", 0.0) / n_params
    unit_share = share + by_verdict.get("scale-mixture", 0.0) / n_params
    order = sorted(by_verdict.index, key=_verdict_rank)
    others = [v for v in order if v != "gaussian"]
    rest = [v for v in others if v != "scale-mixture"]
    top = max(by_verdict.index, key=lambda v: by_verdict[v])
    if not others:
        answer = "Yes: every analysed tensor is Gaussian in shape."
    elif share >= 0.5:
        answer = (
            "Mostly: most parameters sit in tensors that are Gaussian in shape; the "
            f"exceptions are {', '.join(others)}."
        )
    elif unit_share >= 0.5:
        answer = (
            "Per unit, mostly yes: most parameters sit in tensors whose output units are "
            "each Gaussian; pooled, the scale-mixture tensors look heavy-tailed only "
            "because units have different scales."
            + (f" Other exceptions: {', '.join(rest)}." if rest else "")
        )
    else:
        answer = (
            "No: most parameters sit in tensors that are not Gaussian; by parameter "
            f"count the most common verdict is {top}."
        )
    return KeyNumbers(answer, tuple(numbers))


def _dims(shape: Any) -> tuple[int, ...] | None:
    """A shape given as a tuple/list or as text ('[256, 64]', '(256, 64)', '256x64')."""
    if isinstance(shape, str):
        parts = [p for p in re.split(r"[\s,x\u00d7()\[\]]+", shape) if p]
    else:
        try:
            parts = list(shape)
        except TypeError:
            return None
    try:
        return tuple(int(p) for p in parts)
    except (TypeError, ValueError):
        return None


def _out_axis(row: pd.Series, dims: tuple[int, ...]) -> int:
    """Axis of the output units: the frame's ``out_axis`` if it has one, else 0 (PyTorch), or
    -1 when only the last axis matches ``numel / fan_in`` (Keras kernels are (..., in, out))."""
    given = row.get("out_axis")
    if given is not None and not (isinstance(given, float) and math.isnan(given)):
        return int(given)
    fan = pd.to_numeric(pd.Series([row.get("fan_in")]), errors="coerce").iloc[0]
    if np.isfinite(fan) and fan > 0:
        n_out = math.prod(dims) / fan
        if dims[0] != n_out and dims[-1] == n_out:
            return -1
    return 0


def _rows(values: np.ndarray, row: pd.Series) -> np.ndarray | None:
    """The tensor as (output units, values per unit) when it has units worth standardising.

    Units lie along :func:`_out_axis`, as in the analysis's row-wise view."""
    dims = _dims(row["shape"])
    if dims is None or len(dims) < 2 or math.prod(dims) != values.size:
        return None
    axis = _out_axis(row, dims)
    n_out = dims[axis]
    if n_out < 2 or values.size // n_out < 8:
        return None
    return np.moveaxis(values.reshape(dims), axis, 0).reshape(n_out, -1)


def _evidence(
    row: pd.Series, values: Values, *, index: int, max_points: int, rng: np.random.Generator
) -> FigureGrid:
    name = str(row["tensor"])
    raw = np.asarray(values(name), dtype=np.float64)
    x = raw.reshape(-1)
    x = x[np.isfinite(x)]
    if x.size < 8 or x.min() == x.max():
        raise InputDataError(f"tensor {name!r} has too few distinct finite values to draw.")
    sample = x if x.size <= max_points else rng.choice(x, size=max_points, replace=False)
    normal = _engine.fit_family(sample, "normal", rng)
    mu, sd = float(normal.params["loc"]), float(normal.params["scale"])
    curves = [("normal (MLE)", normal.dist().pdf, "#4a5160", "--")]
    vals: dict[str, Any] = {
        "n": int(x.size),
        "n_subsample": int(sample.size),
        "normal": normal.to_dict(),
    }
    best = str(row.get("best_family", "") or "")
    if best and best not in ("normal", "gmm", "nan"):
        try:
            best_fit = _engine.fit_family(sample, best, rng)
        except WeightstatsError:
            best_fit = None
        if best_fit is not None:
            curves.append((f"best: {best}", best_fit.dist().pdf, "#b3261e", "-"))
            vals["best_family"] = best_fit.to_dict()
    # EM on at most _MIXTURE_POINTS values: ten 65k-value tensors took ~12 s of EM on all
    # values and ~1 s on 20k (measured on the shared 2-core machine), for the same picture.
    mix_sample = (
        sample
        if sample.size <= _MIXTURE_POINTS
        else rng.choice(sample, size=_MIXTURE_POINTS, replace=False)
    )
    mix = _engine.mixture(mix_sample, rng)
    if mix.k > 1:
        label = f"Gaussian mixture, k = {mix.k}" + (" (best)" if best == "gmm" else "")
        curves.append((label, mix.dist().pdf, "#00838f", "-."))
    vals["mixture"] = mix.to_dict()
    key = f"t{index}"
    figs = [
        F.encode(
            F.histogram_figure(sample, name=name, curves=curves),
            key=f"{key}-hist",
            title="Histogram, log density",
            caption="Fitted normal, best family and BIC-selected Gaussian mixture.",
            values=vals,
        ),
        F.encode(
            F.qq_figure(x, name=name, loc=mu, scale=sd),
            key=f"{key}-qq",
            title="Normal Q-Q plot",
            caption="Standardised by the fitted normal; tails bend away if not normal.",
        ),
    ]
    # tails on the same subsample as the analysis's tail_index (n_used), so the Hill lines
    # and the table agree; the Q-Q plot above shows every value
    sides, tail_values = _engine.tail_sides(sample, mu, sd)
    figs.append(
        F.encode(
            F.survival_figure(sides, name=name),
            key=f"{key}-tail",
            title="Tails, log-log survival",
            caption="A straight tail is a power law (Hill index above the KS-chosen "
            "threshold); the normal's survival (dashed) bends down.",
            values=tail_values,
        )
    )
    rows = _rows(raw.reshape(-1), row) if np.isfinite(raw).all() else None
    if rows is not None:
        sd_rows = rows.std(axis=1, keepdims=True)
        ok = sd_rows[:, 0] > 0
        if ok.sum() >= 2:
            r = rows[ok]
            z_row = ((r - r.mean(axis=1, keepdims=True)) / sd_rows[ok]).reshape(-1)
            z_pool = (r.reshape(-1) - r.mean()) / r.std()
            if z_row.size > max_points:
                pick = rng.choice(z_row.size, size=max_points, replace=False)
                z_row, z_pool = z_row[pick], z_pool[pick]
            figs.append(
                F.encode(
                    F.rowwise_figure(z_pool, z_row, name=name),
                    key=f"{key}-rows",
                    title="Pooled against row-standardised",
                    caption="Row-standardised falls on N(0,1) when rows differ only in scale.",
                    values={"rows": int(r.shape[0])},
                )
            )
    return FigureGrid(
        key=key,
        title=name,
        figures=tuple(figs),
        badge=str(row["verdict"]),
        caption=_grid_caption(row, best),
    )


def _grid_caption(row: pd.Series, best: str) -> str:
    """Role, best family and the analysis's note (plain text; numbers stay in the table)."""
    text = f"Role {row['role']}; best family by BIC {best or 'n/a'}."
    note = row.get("note")
    if isinstance(note, str) and note.strip():
        text += f" Note: {note.strip()}."
    return text


def _model_figures(frame: pd.DataFrame) -> list[Any]:
    d = _analyzed(frame)
    if d.empty:
        return []
    out = [
        F.encode(
            F.depth_figure(d, "excess_kurtosis", ylabel="excess kurtosis"),
            key="model-kurtosis",
            title="Excess kurtosis by depth",
            caption="0 for a normal; \u22121.2 for a uniform; positive is heavy-tailed.",
        ),
        F.encode(
            F.depth_figure(d, "delta_bic_normal", ylabel="BIC(normal) \u2212 BIC(best)"),
            key="model-dbic",
            title="\u0394BIC of the normal by depth",
            caption="0: the normal is the best family; large: clearly beaten.",
        ),
        F.encode(
            F.verdict_strip_figure(d),
            key="model-strip",
            title="Verdict by layer",
            caption="One cell per tensor in layer order, one row per role.",
        ),
    ]
    if (pd.to_numeric(d["fan_in"], errors="coerce") > 0).any():
        out.append(
            F.encode(
                F.kurtosis_fan_in_figure(d),
                key="model-fanin",
                title="Kurtosis against fan-in",
                caption="If each weight were a sum of many independent per-input "
                "contributions, kurtosis would shrink as fan-in grows; a "
                "first look only (see the CLT analysis).",
            )
        )
    return out


def checkpoint_sections(
    frame: pd.DataFrame,
    values: Values,
    *,
    max_tensors: int = 10,
    max_points: int = 200_000,
    rng: Any = None,
) -> list[SectionModel]:
    """Build the checkpoint report's sections.

    Parameters
    ----------
    frame : pandas.DataFrame
        From :func:`weightstats.analysis.checkpoint.analyze_checkpoint`.
    values : callable
        ``values(tensor_name) -> numpy array`` of the tensor's values (any shape, float64).
    max_tensors : int
        At most this many tensors get evidence figures.
    max_points : int
        Histograms and fits use a random subsample of at most this many values per tensor.
    rng : None, int or numpy.random.Generator
        Seed of the subsampling and of the mixture fits.

    Returns
    -------
    list of SectionModel
    """
    frame = _check_frame(frame)
    if not callable(values):
        raise InputDataError("`values` must be a function tensor_name -> array of values.")
    if max_points < 1000:
        raise InputDataError(f"`max_points` must be at least 1000; got {max_points}.")
    gen = np.random.default_rng(rng)

    table_cols = tuple(c for c in TABLE_COLUMNS if c.name in frame.columns)
    by = _parameters_by(_analyzed(frame))
    answer = SectionModel(
        key="answer",
        title="Are these weights Gaussian?",
        summary="Counted over the analysed tensors; the evidence follows below.",
        blocks=(
            _answer(frame),
            *_crosstabs(by),
        ),
    )
    tensors = SectionModel(
        key="tensors",
        title="Per-tensor results",
        summary="One row per tensor in layer order: the same numbers as the command line.",
        blocks=(
            Table(
                "tensors",
                "",
                frame,
                table_cols,
                caption="Hover a header for its definition. Missing values are shown as \u2013.",
            ),
        ),
    )
    grids: list[Any] = []
    failed: list[str] = []
    picked = select_tensors(frame, max_tensors=max_tensors)
    for i, pos in enumerate(picked):
        row = frame.iloc[pos]
        try:
            grids.append(_evidence(row, values, index=i, max_points=max_points, rng=gen))
        except WeightstatsError as exc:
            failed.append(f"{row['tensor']}: {exc}")
    n_candidates = len(select_tensors(frame, max_tensors=len(frame)))
    summary = (
        f"Largest tensor of each role and every non-Gaussian tensor "
        f"({len(picked)} of {n_candidates} candidates; cap {max_tensors})."
    )
    blocks: list[Any] = list(grids)
    if failed:
        blocks.append(Prose("Tensors that could not be drawn", tuple(failed)))
    evidence = SectionModel(
        key="evidence",
        title="Evidence for the tensors that matter",
        summary=summary,
        blocks=tuple(blocks),
    )
    model_figs = _model_figures(frame)
    model = SectionModel(
        key="model",
        title="The whole model",
        summary="Each point is one analysed tensor, coloured by verdict, marked by role.",
        blocks=(FigureGrid("model-figures", "Shape across depth", tuple(model_figs)),)
        if model_figs
        else (Prose("Nothing to draw", ("No tensor was analysed.",)),),
    )
    present = sorted(set(_analyzed(frame)["verdict"]), key=_verdict_rank)
    meaning_blocks = [
        Prose(f"What '{v}' means", _texts.MEANING[v], badge=v)
        for v in present
        if v in _texts.MEANING
    ]
    meaning_blocks.append(Prose(_texts.PVALUE_NOTE[0], _texts.PVALUE_NOTE[1]))
    meaning = SectionModel(
        key="meaning",
        title="What this means",
        summary="For each verdict found in this checkpoint.",
        blocks=tuple(meaning_blocks),
    )
    methods = SectionModel(
        key="methods",
        title="Methods",
        blocks=tuple(Prose(t, p) for t, p in _texts.methods()) + (References(_texts.REFERENCES),),
    )
    return [answer, tensors, evidence, model, meaning, methods]
