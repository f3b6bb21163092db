"""``weightstats experiment clt``: the bundled, seeded CLT experiment grid."""

from __future__ import annotations

import os

import click

from ..errors import InputDataError
from ._common import one_line_errors

__all__ = ["command"]


@click.group(name="experiment")
def command() -> None:
    """Run a bundled, seeded experiment grid (configs in data/experiments/)."""


@command.command(name="clt")
@click.option("--quick", is_flag=True, help="The small grid (under a minute): clt_quick.json.")
@click.option("--config", "config", type=click.Path(), default=None,
              help="A JSON config instead of the bundled default (clt_default.json).")
@click.option("-o", "--out", "out_dir", type=click.Path(), default="clt-experiment",
              show_default=True, help="Output directory (runs, results.csv, curves.csv).")
@click.option("--report", "report_path", type=click.Path(), default=None,
              help="HTML report path (default OUT/clt.html).")
@click.option("--json-report", "json_report", type=click.Path(), default=None,
              help="Also write the report model as JSON.")
@click.option("--jobs", type=click.IntRange(min=1), default=None,
              help="Worker processes (default: the config's `jobs`; the bundled default uses 2). "
                   "The table does not depend on it.")
@click.option("--force", is_flag=True,
              help="Replace a previous experiment's output in OUT and an existing report.")
@one_line_errors
def clt(quick, config, out_dir, report_path, json_report, jobs, force) -> None:
    """Train digits models (MLP, CNN, Gaussian VAE) over inits x optimizers x learning rates x
    widths with recorders attached, analyse each run, and write a results table and a report."""
    from ..experiments.clt import run_clt_experiment

    if quick and config:
        raise InputDataError("give either --quick or --config, not both.")
    report_path = report_path or os.path.join(out_dir, "clt.html")
    for option, path in (("--report", report_path), ("--json-report", json_report)):
        if path is not None and os.path.exists(path) and not force:
            raise InputDataError(f"{option} {path!r} already exists; pass --force to replace it.")
    res = run_clt_experiment(config or ("quick" if quick else "default"), out_dir, force=force,
                             jobs=jobs, progress=click.echo)
    click.echo(f"wrote {os.path.join(out_dir, 'results.csv')} ({len(res.results)} rows) and "
               f"{os.path.join(out_dir, 'curves.csv')}")
    try:
        from ..report.sections.clt import write_clt_report
    except ImportError as exc:  # the report machinery is optional for the table
        click.echo(f"report not written: {exc}", err=True)
        return
    write_clt_report(res, report_path, overwrite=force, json_path=json_report)
    click.echo("wrote " + " and ".join(p for p in (report_path, json_report) if p))
