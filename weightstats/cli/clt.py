"""``weightstats clt RUN_DIR`` and ``weightstats clt --init INIT_CKPT FINAL_CKPT``."""

from __future__ import annotations

import math
import os

import click

from ..errors import InputDataError
from ._common import EXIT_OK, one_line_errors

__all__ = ["command", "format_summary"]

_COLUMNS = [
    # (column, header, format)
    ("tensor", "tensor", "s"),
    ("relative_change", "|dW|/|W0|", ".3g"),
    ("init_variance_share", "W0 share", ".0%"),
    ("label_update", "dW shape", "s"),
    ("acf_lag1", "acf1", ".2f"),
    ("n_eff_ratio", "n_eff/T", ".2f"),
    ("decay_slope", "slope", ".2f"),
    ("decay_final_kurtosis", "kurt(S_T)", ".3g"),
    ("verdict", "verdict", "s"),
]


def _fmt(value, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if spec == "s":
        return str(value)
    return format(value, spec)


def format_summary(summary) -> str:
    """The CLI table: one line per tensor, then each tensor's reason."""
    rows = [[h for _, h, _ in _COLUMNS]]
    for _, r in summary.iterrows():
        rows.append([_fmt(r.get(c), f) for c, _, f in _COLUMNS])
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.append("")
    for _, r in summary.iterrows():
        lines.append(f"{r['tensor']}: {r['verdict']}: {r['reason']}")
    return "\n".join(lines)


@click.command(name="clt")
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--init", "init_ckpt", type=click.Path(),
              help="Initial checkpoint; PATHS is then the final checkpoint (no trajectories).")
@click.option("--tensor", "tensors", multiple=True, help="Analyse only this tensor (repeatable).")
@click.option("--max-lag", type=click.IntRange(min=1), default=None,
              help="Largest autocorrelation lag (default min(50, T/4)).")
@click.option("--csv", "csv_path", type=click.Path(), default=None,
              help="Also write the per-tensor table as CSV (refuses to overwrite).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for subsampling.")
@one_line_errors
def command(paths, init_ckpt, tensors, max_lag, csv_path, seed) -> None:
    """Is each weight tensor Gaussian by the CLT, by inheritance from its init, or neither?

    \b
    weightstats clt RUN_DIR                      a run recorded with WeightRecorder
    weightstats clt --init INIT_CKPT FINAL_CKPT  two checkpoints (trajectory tests unavailable)
    """
    from ..analysis.clt import analyze_clt

    if init_ckpt is not None:
        if len(paths) != 1:
            raise InputDataError("with --init give exactly one more path, the final checkpoint: "
                                 "weightstats clt --init INIT_CKPT FINAL_CKPT")
        for p in (init_ckpt, paths[0]):
            if not os.path.isfile(p):
                raise InputDataError(f"checkpoint {p!r} does not exist or is not a file.")
        source = (init_ckpt, paths[0])
    else:
        if len(paths) != 1:
            raise InputDataError("give one run directory (weightstats clt RUN_DIR), or two "
                                 "checkpoints with --init INIT_CKPT FINAL_CKPT.")
        if not os.path.isdir(paths[0]):
            raise InputDataError(f"run directory {paths[0]!r} does not exist; for checkpoints "
                                 "use --init INIT_CKPT FINAL_CKPT.")
        source = paths[0]
    if csv_path is not None and os.path.exists(csv_path):
        raise InputDataError(f"--csv {csv_path!r} already exists; choose another path.")
    res = analyze_clt(source, tensors=list(tensors) or None, max_lag=max_lag, rng=seed)
    click.echo(f"CLT analysis of {res.source}")
    if not res.trajectories_available:
        click.echo("trajectory-based tests (autocorrelation, n_eff, kurtosis decay): "
                   "unavailable, no recorded trajectories")
    click.echo(format_summary(res.summary))
    if csv_path is not None:
        res.summary.drop(columns=["decay_note"], errors="ignore").to_csv(csv_path, index=False)
        click.echo(f"wrote {csv_path}")
    raise SystemExit(EXIT_OK)
