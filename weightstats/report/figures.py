"""One function per figure; each returns a :class:`~weightstats.report.model.Figure`.

Figures are drawn with the object-oriented matplotlib API (no pyplot, so no global state and no
display is needed) and seaborn on explicit axes, then encoded as SVG with text kept as
``<text>`` elements (``svg.fonttype='none'``: smaller files, and the SVG writer escapes names).
Nothing here fits or tests anything: the fitted distributions and tail estimates come in as
arguments, computed by the stats engine in the section that calls these functions.

Tensor names come from untrusted files: :func:`plain` neutralises mathtext (``$``) and caps the
length before a name is drawn.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure as MplFigure
from matplotlib.ticker import MaxNLocator
from scipy import stats as sps

from .model import Figure

__all__ = [
    "ROLE_MARKERS",
    "VERDICT_COLORS",
    "depth_figure",
    "encode",
    "histogram_figure",
    "kurtosis_fan_in_figure",
    "plain",
    "qq_figure",
    "rowwise_figure",
    "survival_figure",
    "verdict_strip_figure",
]

#: Same colours as the badges in report.css.
VERDICT_COLORS = {
    "gaussian": "#2e7d4f",
    "heavy-tailed": "#b3261e",
    "scale-mixture": "#c25e00",
    "light-tailed": "#6a4fb3",
    "skewed": "#8a6d00",
    "mixture": "#00838f",
    "degenerate": "#6b7280",
}
_OTHER = "#6b7280"
#: Marker per tensor role (roles of weightstats.io.tensors.ROLES); other roles get "P".
ROLE_MARKERS = {
    "linear_weight": "o",
    "conv_weight": "s",
    "embedding": "D",
    "attention_query": "<",
    "attention_key": ">",
    "attention_value": "h",
    "attention_qkv": "H",
    "attention_output": "p",
    "bias": "^",
    "norm_scale": "v",
    "norm_shift": "d",
}

_RC = {
    "font.size": 9,
    "axes.titlesize": 9.5,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 7.5,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e6e8ec",
    "grid.linewidth": 0.6,
    "axes.edgecolor": "#4a5160",
    "axes.linewidth": 0.7,
    "font.family": ["DejaVu Sans"],
    "svg.fonttype": "none",
    "svg.hashsalt": "weightstats",  # deterministic element ids
    "path.simplify": True,
}
_SIZE = (4.6, 3.2)


def plain(text: Any, limit: int = 60) -> str:
    """Make untrusted text safe to draw: no mathtext, no control characters, bounded length."""
    s = "".join(ch if ch.isprintable() else "\ufffd" for ch in str(text))
    if len(s) > limit:
        s = s[: limit - 1] + "\u2026"
    # matplotlib parses text with an unescaped pair of '$' as mathtext; '\$' draws a '$'.
    return s.replace("$", r"\$")


def _new(
    size: tuple[float, float] = _SIZE, *, right: float = 0.97, left: float = 0.15
) -> tuple[MplFigure, Any]:
    # Fixed margins instead of constrained layout, and plain-text log labels instead of
    # mathtext (see _power_label): measured side by side on the shared 2-core machine, a
    # histogram + tail SVG took 0.65 s with both and 0.21 s without (3.1x), same picture.
    fig = MplFigure(figsize=size, dpi=100)
    fig.subplots_adjust(left=left, right=right, bottom=0.15, top=0.9)
    return fig, fig.add_subplot()


_SUPERSCRIPT = str.maketrans(
    "-0123456789", "\u207b\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079"
)


def _power_label(value: float, _pos: Any = None) -> str:
    """'10\u207b\u00b3' for 1e-3: a plain-text label (mathtext parsing was ~4 s of a
    10-tensor report)."""
    if value <= 0 or not np.isfinite(value):
        return ""
    exponent = np.log10(value)
    if abs(exponent - round(exponent)) > 1e-9:
        return ""
    return "10" + str(int(round(exponent))).translate(_SUPERSCRIPT)


def _quiet_minor(ax: Any) -> None:
    """Plain-text powers of ten on log axes, and no labels on their minor ticks."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    for axis in (ax.xaxis, ax.yaxis):
        if axis.get_scale() == "log":
            axis.set_major_formatter(FuncFormatter(_power_label))
        if axis.get_scale() in ("log", "symlog"):
            axis.set_minor_formatter(NullFormatter())


def encode(
    fig: MplFigure,
    *,
    key: str,
    title: str,
    caption: str = "",
    alt: str = "",
    values: Mapping[str, Any] | None = None,
) -> Figure:
    """Encode a matplotlib figure as SVG into a report :class:`Figure` (and free it)."""
    buf = io.BytesIO()
    with matplotlib.rc_context(_RC):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": "weightstats"})
    fig.clear()
    return Figure(
        key=key,
        title=title,
        data=buf.getvalue(),
        mime="image/svg+xml",
        caption=caption,
        alt=alt or title,
        values=dict(values or {}),
    )


def _draw(func: Callable[..., Any]) -> Callable[..., Any]:
    """Run a drawing function under the report's rc settings."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with matplotlib.rc_context(_RC):
            return func(*args, **kwargs)

    wrapper.__doc__ = func.__doc__
    wrapper.__name__ = func.__name__
    return wrapper


@_draw
def histogram_figure(
    x: np.ndarray,
    *,
    name: str,
    curves: Sequence[tuple[str, Callable[[np.ndarray], np.ndarray], str, str]],
    bins: int | None = None,
) -> MplFigure:
    """Histogram of `x` on a log density axis with fitted densities overlaid.

    Parameters
    ----------
    x : ndarray
        The values (already subsampled by the caller if huge).
    name : str
        Tensor name (drawn in the title).
    curves : sequence of (label, pdf, colour, linestyle)
        Densities to overlay, e.g. the fitted normal, the best family and the Gaussian mixture.
    bins : int, optional
        Number of equal-width bins over the whole range; by default the Freedman-Diaconis
        width, clipped to 30..160 bins.
    """
    fig, ax = _new()
    lo, hi = float(np.min(x)), float(np.max(x))
    span = hi - lo
    if bins is None:  # Freedman-Diaconis width, so a heavy tail does not squash the bulk
        iqr = float(np.subtract(*np.quantile(x, [0.75, 0.25])))
        width = 2.0 * iqr / np.cbrt(x.size) if iqr > 0 else span / 60
        bins = int(np.clip(np.ceil(1.04 * span / width), 30, 160))
    edges = np.linspace(lo - 0.02 * span, hi + 0.02 * span, bins + 1)
    dens, _ = np.histogram(x, bins=edges, density=True)
    ax.stairs(
        dens,
        edges,
        fill=True,
        color="#c9d3e3",
        edgecolor="#8796b0",
        linewidth=0.5,
        label=f"data (n = {x.size:,})",
    )
    grid = np.linspace(edges[0], edges[-1], 600)
    positive = dens[dens > 0]
    floor = positive.min() / 3 if positive.size else 1e-6
    for label, pdf, color, style in curves:
        with np.errstate(all="ignore"):
            y = np.asarray(pdf(grid), dtype=float)
        ax.plot(
            grid,
            np.where(y > floor / 10, y, np.nan),
            color=color,
            linestyle=style,
            linewidth=1.3,
            label=label,
        )
    ax.set_yscale("log")
    ax.set_ylim(floor, (positive.max() if positive.size else 1.0) * 2.5)
    ax.set_xlabel("value")
    ax.set_ylabel("density (log scale)")
    ax.set_title(plain(name))
    ax.legend(loc="upper right")
    _quiet_minor(ax)
    return fig


def _plotting_ranks(n: int, points: int = 400) -> np.ndarray:
    """Ranks (0-based) spaced so both tails are dense: log-spaced from each end."""
    half = np.unique(np.round(np.geomspace(1, max(n / 2, 1), points // 2)).astype(int)) - 1
    ranks = np.unique(np.concatenate([half, n - 1 - half]))
    return ranks[(ranks >= 0) & (ranks < n)]


@_draw
def qq_figure(x: np.ndarray, *, name: str, loc: float, scale: float) -> MplFigure:
    """Normal Q-Q plot of the standardised sample, ``(x - loc) / scale``, against N(0, 1).

    Points are taken at ranks log-spaced from both ends, so the tails (where the shape is
    decided) are drawn point by point while the bulk stays light.
    """
    fig, ax = _new()
    xs = np.sort((np.asarray(x, dtype=float) - loc) / scale)
    n = xs.size
    ranks = _plotting_ranks(n)
    theo = sps.norm.ppf((ranks + 0.5) / n)  # Hazen plotting positions
    ax.plot(
        theo,
        xs[ranks],
        "o",
        markersize=2.3,
        color="#2a5db0",
        alpha=0.85,
        label="standardised sample",
    )
    lim = float(max(np.abs(theo).max(), 1.0))
    ax.plot(
        [-lim, lim], [-lim, lim], color="#4a5160", linewidth=0.9, linestyle="--", label="normal"
    )
    ax.set_xlabel("normal quantile")
    ax.set_ylabel("sample quantile (standardised)")
    ax.set_title(plain(name))
    ax.legend(loc="upper left")
    return fig


@_draw
def survival_figure(sides: Sequence[Mapping[str, Any]], *, name: str) -> MplFigure:
    """Log-log survival of the magnitudes beyond the median, per side, with the Hill tails.

    Parameters
    ----------
    sides : sequence of mapping
        One per side (``left``, ``right``) with ``label``, ``y`` (positive magnitudes beyond the
        median), ``tail`` (``(tail_index, xmin, P(Y >= xmin))`` or None) and ``normal_sf``
        (``t -> P(Y > t)`` under the fitted normal). The power law is drawn as
        ``P(Y >= xmin) * (t / xmin) ** -tail_index`` for ``t >= xmin``.
    """
    fig, ax = _new()
    colors = {"right": "#2a5db0", "left": "#8a6d00"}
    n_min, t_max = np.inf, 0.0
    for side in sides:
        y = np.sort(np.asarray(side["y"], dtype=float))[::-1]
        y = y[y > 0]
        if y.size < 2:
            continue
        n = y.size
        color = colors.get(side["label"], "#4a5160")
        # upper half of each side only: the bulk says nothing about the tail
        ranks = np.unique(np.round(np.geomspace(1, max(n // 2, 1), 250)).astype(int)) - 1
        ax.plot(
            y[ranks],
            (ranks + 1) / n,
            "o",
            markersize=2.0,
            color=color,
            alpha=0.85,
            label=f"{side['label']} tail (data)",
        )
        t = np.geomspace(y[ranks[-1]], y[0] * 1.3, 200)
        with np.errstate(all="ignore"):
            ns = np.asarray(side["normal_sf"](t), dtype=float)
        ax.plot(
            t,
            np.where(ns > 0.2 / n, ns, np.nan),
            color=color,
            linestyle="--",
            linewidth=0.9,
            alpha=0.8,
        )
        tail = side.get("tail")
        if tail is not None:
            a, u, mass = tail
            tt = np.geomspace(u, y[0] * 1.3, 60)
            ax.plot(
                tt,
                mass * (tt / u) ** (-a),
                color=color,
                linewidth=1.6,
                label=f"{side['label']} power law, index {a:.2f}",
            )
        n_min, t_max = min(n_min, n), max(t_max, y[0])
    if np.isfinite(n_min):
        ax.set_ylim(0.4 / n_min, 0.8)
    ax.plot([], [], color="#4a5160", linestyle="--", linewidth=0.9, label="fitted normal")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("distance from the median")
    ax.set_ylabel("P(distance > t), per side")
    ax.set_title(plain(name))
    ax.legend(loc="lower left")
    _quiet_minor(ax)
    return fig


@_draw
def rowwise_figure(
    pooled: np.ndarray,
    rowwise: np.ndarray,
    *,
    name: str,
    labels: tuple[str, str] = ("pooled", "row-standardised"),
    bins: int = 70,
) -> MplFigure:
    """Densities (log axis) of the pooled-standardised and the row-standardised values vs N(0,1).

    If the pooled tensor looks heavy-tailed only because rows have different scales (a scale
    mixture), the row-standardised curve falls onto the normal while the pooled one does not.
    """
    fig, ax = _new()
    # every value drawn up to |z| = 12 (beyond that the log axis has nothing left to show)
    lim = float(np.clip(np.max(np.abs(np.concatenate([pooled, rowwise]))) * 1.02, 4.0, 12.0))
    edges = np.linspace(-lim, lim, bins + 1)
    floor = np.inf
    for values, label, color in ((pooled, labels[0], "#b3261e"), (rowwise, labels[1], "#2a5db0")):
        dens, _ = np.histogram(values, bins=edges, density=True)
        if (dens > 0).any():
            floor = min(floor, dens[dens > 0].min())
        ax.stairs(dens, edges, color=color, linewidth=1.2, label=label)
    grid = np.linspace(-lim, lim, 400)
    ax.plot(
        grid, sps.norm.pdf(grid), color="#4a5160", linestyle="--", linewidth=1.0, label="N(0, 1)"
    )
    ax.set_yscale("log")
    ax.set_ylim(floor / 3 if np.isfinite(floor) else 1e-5, 1.0)
    ax.set_xlabel("standardised value")
    ax.set_ylabel("density (log scale)")
    ax.set_title(plain(name))
    ax.legend(loc="upper right")
    _quiet_minor(ax)
    return fig


def _depth_frame(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.reset_index(drop=True).copy()
    out["depth"] = np.arange(len(out))
    return out


@_draw
def depth_figure(
    frame: pd.DataFrame, column: str, *, ylabel: str, reference: float | None = 0.0
) -> MplFigure:
    """A per-tensor quantity against depth (position in layer order), coloured by verdict.

    The title is the report's (HTML) figure title; none is drawn inside."""
    d = _depth_frame(frame)
    fig, ax = _new((6.4, 3.0), right=0.78, left=0.11)
    for role, group in d.groupby("role", sort=False):
        ax.scatter(
            group["depth"],
            group[column],
            c=[VERDICT_COLORS.get(v, _OTHER) for v in group["verdict"]],
            marker=ROLE_MARKERS.get(str(role), "P"),
            s=26,
            edgecolors="white",
            linewidths=0.4,
            label=plain(role, 20),
            zorder=3,
        )
    if reference is not None:
        ax.axhline(reference, color="#4a5160", linewidth=0.8, linestyle="--", zorder=1)
    values = pd.to_numeric(d[column], errors="coerce").to_numpy(dtype=float)
    finite = values[np.isfinite(values)]
    if finite.size and (np.abs(finite).max() > 50 * max(np.median(np.abs(finite)), 1e-12)):
        ax.set_yscale("symlog", linthresh=1.0)
    ax.set_xlabel("depth (tensor index in layer order)")
    ax.set_ylabel(ylabel)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _verdict_legend(ax, d["verdict"], roles=d["role"])
    _quiet_minor(ax)
    return fig


def _verdict_legend(ax: Any, verdicts: pd.Series, roles: pd.Series | None = None) -> None:
    from matplotlib.lines import Line2D

    handles = [
        Line2D(
            [],
            [],
            marker="o",
            linestyle="",
            color=VERDICT_COLORS.get(v, _OTHER),
            markersize=5,
            label=plain(v, 20),
        )
        for v in pd.unique(verdicts)
    ]
    if roles is not None:
        handles += [
            Line2D(
                [],
                [],
                marker=ROLE_MARKERS.get(str(r), "P"),
                linestyle="",
                color="#4a5160",
                markersize=4.5,
                label=plain(r, 20),
            )
            for r in pd.unique(roles)
        ]
    ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.01, 0.5))


@_draw
def verdict_strip_figure(frame: pd.DataFrame) -> MplFigure:
    """Verdict of every tensor as a strip in layer order, one row per role."""
    d = _depth_frame(frame)
    roles = list(pd.unique(d["role"]))
    height = 0.9 + 0.32 * len(roles)
    fig, ax = _new((6.4, max(height, 1.6)), right=0.78, left=0.17)
    fig.subplots_adjust(top=0.95, bottom=0.55 / max(height, 1.6) + 0.1)
    ax.grid(False)
    ypos = {r: i for i, r in enumerate(roles)}
    ax.barh(
        [ypos[r] for r in d["role"]],
        1.0,
        left=d["depth"].to_numpy() - 0.5,
        height=0.8,
        color=[VERDICT_COLORS.get(v, _OTHER) for v in d["verdict"]],
        edgecolor="white",
        linewidth=0.6 if len(d) < 120 else 0.0,
    )
    ax.set_yticks(range(len(roles)), [plain(r, 20) for r in roles])
    ax.set_xlim(-0.5, max(len(d) - 0.5, 0.5))
    ax.set_ylim(len(roles) - 0.5, -0.5)
    ax.set_xlabel("depth (tensor index in layer order)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.spines["left"].set_visible(False)
    _verdict_legend(ax, d["verdict"])
    return fig


@_draw
def kurtosis_fan_in_figure(frame: pd.DataFrame) -> MplFigure:
    """Excess kurtosis against fan-in (log axis), coloured by verdict, marked by role."""
    d = frame[
        np.isfinite(pd.to_numeric(frame["fan_in"], errors="coerce").astype(float))
        & (pd.to_numeric(frame["fan_in"], errors="coerce") > 0)
    ]
    fig, ax = _new((6.4, 3.0), right=0.78, left=0.11)
    for role, group in d.groupby("role", sort=False):
        ax.scatter(
            group["fan_in"].astype(float),
            group["excess_kurtosis"].astype(float),
            c=[VERDICT_COLORS.get(v, _OTHER) for v in group["verdict"]],
            marker=ROLE_MARKERS.get(str(role), "P"),
            s=26,
            edgecolors="white",
            linewidths=0.4,
            zorder=3,
        )
    ax.axhline(0.0, color="#4a5160", linewidth=0.8, linestyle="--", zorder=1)
    ax.set_xscale("log")
    k = pd.to_numeric(d["excess_kurtosis"], errors="coerce").to_numpy(dtype=float)
    k = k[np.isfinite(k)]
    if k.size and np.abs(k).max() > 20:
        ax.set_yscale("symlog", linthresh=1.0)
    ax.set_xlabel("fan-in (log scale)")
    ax.set_ylabel("excess kurtosis")
    fans = np.unique(d["fan_in"].astype(float))
    if 0 < fans.size <= 8:  # few distinct fan-ins: label each one
        ax.set_xticks(fans, [f"{int(f)}" for f in fans])
        ax.set_xlim(fans.min() / 1.6, fans.max() * 1.6)
    if len(d):
        _verdict_legend(ax, d["verdict"], roles=d["role"])
    _quiet_minor(ax)
    return fig
