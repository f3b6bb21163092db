"""``weightstats vae compare``: train the reference VAEs and report on their latents."""

from __future__ import annotations

import os
import sys

import click

from ..errors import InputDataError
from ._common import one_line_errors

__all__ = ["command"]


def _check_output(path: str | None, option: str, force: bool, out_dir: str) -> None:
    """Refuse, before any training, an output file that could not be written at the end."""
    if path is None:
        return
    if os.path.isdir(path):
        raise InputDataError(f"{option} {path!r} is a directory; give a file name.")
    if os.path.exists(path) and not force:
        raise InputDataError(f"{path!r} exists; pass --force to replace it.")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent) and parent != os.path.abspath(out_dir):
        raise InputDataError(f"{option}: directory {parent!r} does not exist; create it first.")


@click.group(name="vae")
def command() -> None:
    """Reference VAEs with Gaussian, hyperspherical, mixture, M2 and Student-t latents."""


@command.command(name="compare")
@click.option("--config", "config_path", type=click.Path(), default=None,
              help="Grid configuration JSON (default: the built-in grid, data/vae/grid.json).")
@click.option("--quick", is_flag=True, help="The one-minute smoke grid (data/vae/quick.json).")
@click.option("-o", "--out", "out_dir", type=click.Path(), default="vae-compare",
              show_default=True, help="Output directory: runs/, table.csv, compare.json.")
@click.option("--report", "report_path", type=click.Path(), default=None,
              help="HTML report to write (default OUT/vae.html).")
@click.option("--json-report", "json_path", type=click.Path(), default=None,
              help="Also write the report model as JSON.")
@click.option("--force", is_flag=True,
              help="Replace an earlier comparison in OUT and an existing report.")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="Torch threads (1 is fastest on a busy machine; 2 on an idle 2-core one).")
@click.option("-q", "--quiet", is_flag=True, help="No per-model progress lines.")
@one_line_errors
def compare(config_path, quick, out_dir, report_path, json_path, force, threads, quiet) -> None:
    """Train every (data set, latent, dimension) of the grid with a LatentRecorder attached,
    then write the table and an HTML report with what the numbers say about the published
    claims.

    \b
    weightstats vae compare --quick -o /tmp/vae        about a minute
    weightstats vae compare -o vae-compare --report reports/vae.html
    """
    from ..vae.compare import load_grid, run_grid, write_compare_report

    if config_path is not None and quick:
        raise InputDataError("give either --config or --quick, not both.")
    report_path = report_path or os.path.join(out_dir, "vae.html")
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise InputDataError(f"--out {out_dir!r} is a file; give a directory.")
    _check_output(report_path, "--report", force, out_dir)
    _check_output(json_path, "--json-report", force, out_dir)
    config = load_grid(config_path, quick=quick)
    echo = None if quiet else (lambda line: click.echo(line, err=True))
    result = run_grid(config, out_dir=out_dir, force=force, progress=echo, num_threads=threads)
    argv = " ".join(["weightstats", "vae", "compare", *sys.argv[3:]]) if len(sys.argv) > 2 \
        and sys.argv[1:3] == ["vae", "compare"] else "weightstats vae compare"
    written = write_compare_report(result, report_path, force=force, command=argv,
                                   json_path=json_path)
    click.echo(_format_table(result.table))
    click.echo(f"\ntable: {os.path.join(result.out_dir, 'table.csv')}\nreport: {written}")


_SHOWN = [
    ("dataset", "data", "s"), ("family", "latent", "s"), ("latent_dim", "d", "d"),
    ("elbo", "ELBO", ".2f"), ("iwae_nll", "IWAE NLL", ".2f"), ("kl", "KL", ".2f"),
    ("active_units", "AU", "d"), ("mmd_pvalue", "MMD p", ".3g"),
    ("kl_aggregate_mc", "KL(q||p)", ".3f"), ("clustering_accuracy", "clust", ".1%"),
    ("test_error", "err", ".1%"),
]


def _format_table(table) -> str:
    import math

    def cell(value, spec):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "-"
        return format(int(value), "d") if spec == "d" else format(value, spec)

    rows = [[h for _, h, _ in _SHOWN]]
    rows += [[cell(r[c], f) for c, _, f in _SHOWN] for _, r in table.iterrows()]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_SHOWN))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)
