"""``weightstats clt RUN_DIR`` and ``weightstats clt --init INIT_CKPT FINAL_CKPT``."""

from __future__ import annotations

import math
import os

import click

from ..errors import InputDataError
from ._common import EXIT_OK, one_line_errors

__all__ = ["check_output_path", "command", "format_summary"]

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
              help="Also write the per-tensor table as CSV.")
@click.option("-o", "--output", "output", type=click.Path(), default=None,
              help="Also write a self-contained HTML report (REPORT.html).")
@click.option("--json-report", "json_report", type=click.Path(), default=None,
              help="Also write the report model as JSON (needs -o).")
@click.option("--force", is_flag=True,
              help="Replace existing --csv, -o and --json-report files (never otherwise).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for subsampling.")
@one_line_errors
def command(paths, init_ckpt, tensors, max_lag, csv_path, output, json_report, force,
            seed) -> None:
    """Is each weight tensor Gaussian by the CLT, by inheritance from its init, or neither?

    \b
    weightstats clt RUN_DIR                      a run recorded with WeightRecorder
    weightstats clt --init INIT_CKPT FINAL_CKPT  two checkpoints (trajectory tests unavailable)
    weightstats clt RUN_DIR -o report.html       the table, plus an HTML report
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
    if json_report is not None and output is None:
        raise InputDataError("--json-report needs -o/--output REPORT.html as well.")
    outputs = [(o, p) for o, p in (("--csv", csv_path), ("-o/--output", output),
                                   ("--json-report", json_report)) if p is not None]
    for option, path in outputs:  # before the analysis, so a clash costs nothing
        check_output_path(path, option, force=force)
    real = [os.path.realpath(p) for _, p in outputs]
    if len(set(real)) != len(real):
        raise InputDataError("--csv, -o/--output and --json-report must name different files.")
    res = analyze_clt(source, tensors=list(tensors) or None, max_lag=max_lag, rng=seed)
    click.echo(f"CLT analysis of {res.source}")
    if not res.trajectories_available:
        click.echo("trajectory-based tests (autocorrelation, n_eff, kurtosis decay): "
                   "unavailable, no recorded trajectories")
    click.echo(format_summary(res.summary))
    if csv_path is not None:
        res.summary.drop(columns=["decay_note"], errors="ignore").to_csv(csv_path, index=False)
        click.echo(f"wrote {csv_path}")
    if output is not None:
        from ..report.sections.clt import write_analysis_report

        write_analysis_report(res, output, force=force, json_path=json_report)
        click.echo("wrote " + " and ".join(p for p in (output, json_report) if p is not None))
    raise SystemExit(EXIT_OK)


def check_output_path(path: str, option: str, *, force: bool) -> None:
    """Refuse an output path that exists (unless `force`), is a directory, or has no directory."""
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise InputDataError(f"{option} {path!r}: directory {parent!r} does not exist; create "
                             "it first.")
    if os.path.isdir(path):
        raise InputDataError(f"{option} {path!r} is a directory; give a file name.")
    if os.path.exists(path) and not force:
        raise InputDataError(f"{option} {path!r} already exists; pass --force to replace it or "
                             "choose another path.")

