"""``weightstats latent RUN_DIR``: is the recorded aggregate posterior the prior?"""

from __future__ import annotations

import math
import os

import click

from ..errors import InputDataError
from ._common import one_line_errors

__all__ = ["command"]

_SUMMARY = [
    ("family", "s"), ("epoch", "d"), ("n", "d"), ("latent_dim", "d"), ("active_units", "d"),
    ("mmd2", ".3g"), ("mmd_pvalue", ".3g"), ("kl_knn", ".3f"), ("kl_gaussian_moments", ".3f"),
    ("max_abs_offdiag_corr", ".3f"), ("eig_spread", ".3g"), ("rayleigh_pvalue", ".3g"),
]
_PER_DIM = [
    ("dim", "d"), ("mean", ".3f"), ("sd", ".3f"), ("skewness", ".3f"), ("excess_kurtosis", ".3f"),
    ("ks_pvalue", ".3g"), ("mean_variance", ".3g"), ("active", "s"), ("kl_unit", ".3f"),
]


def _cell(value, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if spec == "d":
        return str(int(value))
    return str(value) if spec == "s" else format(value, spec)


def _table(frame, spec) -> str:
    rows = [[c for c, _ in spec]] + [[_cell(r[c], f) for c, f in spec] for _, r in frame.iterrows()]
    widths = [max(len(row[i]) for row in rows) for i in range(len(spec))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)


@click.command(name="latent")
@click.argument("run_dir", type=click.Path())
@click.option("--epoch", type=int, default=None, help="Recorded epoch (default: the last).")
@click.option("--family", default=None,
              help="Latent family, when the run does not say (gaussian, student_t, mixture, m2, "
                   "vmf, power_spherical).")
@click.option("--permutations", type=click.IntRange(min=0), default=200, show_default=True,
              help="Permutations for the MMD p-value.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of prior draws and permutations.")
@click.option("--csv", "csv_path", type=click.Path(), default=None,
              help="Also write the per-dimension table as CSV (refuses to overwrite).")
@one_line_errors
def command(run_dir, epoch, family, permutations, seed, csv_path) -> None:
    """Compare a recorded VAE latent (LatentRecorder run) with its prior: normality per
    dimension, covariance, MMD, KL(q(z) || p(z)), active units, Rayleigh on the sphere."""
    from ..analysis.latent import analyze_latent

    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        raise InputDataError(f"{run_dir!r} is a file; give a run directory (a LatentRecorder run).")
    if not os.path.isdir(run_dir):
        raise InputDataError(f"run directory {run_dir!r} does not exist.")
    if csv_path is not None:
        if os.path.exists(csv_path):
            raise InputDataError(f"{csv_path!r} exists; choose another --csv path.")
        parent = os.path.dirname(os.path.abspath(csv_path))
        if not os.path.isdir(parent):
            raise InputDataError(f"--csv: directory {parent!r} does not exist; create it first.")
    res = analyze_latent(run_dir, epoch=epoch, family=family, n_permutations=permutations,
                         rng=seed)
    click.echo(_table(res.summary, _SUMMARY))
    click.echo("")
    click.echo(_table(res.per_dim, _PER_DIM))
    if csv_path is not None:
        res.per_dim.to_csv(csv_path, index=False)
