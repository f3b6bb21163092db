"""The comparison grid: configuration, output-directory safety, claims wording, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from weightstats.cli import main
from weightstats.errors import InputDataError
from weightstats.report.sections.vae import LatentView, claims, vae_section
from weightstats.vae.compare import DEFAULT_GRID, QUICK_GRID, TABLE_COLUMNS, load_grid, run_grid

REPO = Path(__file__).resolve().parents[2]

TINY = {
    "name": "tiny",
    "experiments": [{"dataset": "sphere", "families": ["gaussian", "vmf"], "latent_dims": [2]}],
    "training": {"epochs": 2, "batch_size": 50, "lr": 0.001, "hidden": [16]},
    "sphere_data": {"n_train": 100, "n_test": 60, "sphere_dim": 2},
    "evaluation": {"iwae_k": 5, "elbo_samples": 1, "mmd_permutations": 10, "max_samples": 60},
    "record_every": 1,
}


def test_committed_grid_files_equal_the_built_in_grids():
    assert json.loads((REPO / "data/vae/grid.json").read_text()) == DEFAULT_GRID
    assert json.loads((REPO / "data/vae/quick.json").read_text()) == QUICK_GRID
    assert load_grid(REPO / "data/vae/grid.json") == load_grid(None)


@pytest.mark.parametrize(
    "patch, match",
    [
        ({"colour": 1}, "unknown grid configuration keys"),
        ({"record_every": 7}, "multiple of `record_every`"),
        ({"experiments": [{"dataset": "mnist", "families": ["gaussian"], "latent_dims": [2]}]}, "dataset"),
        ({"experiments": [{"dataset": "digits", "families": ["cauchy"], "latent_dims": [2]}]}, "unknown latent families"),
        ({"experiments": [{"dataset": "sphere", "families": ["m2"], "latent_dims": [2]}]}, "no labels"),
        ({"experiments": [{"dataset": "digits", "families": ["vmf"], "latent_dims": [1]}]}, "at least 2"),
    ],
)
def test_load_grid_iv(tmp_path, patch, match):
    path = tmp_path / "grid.json"
    path.write_text(json.dumps(patch))
    with pytest.raises(InputDataError, match=match):
        load_grid(path)


def test_load_grid_missing_file(tmp_path):
    with pytest.raises(InputDataError, match="does not exist"):
        load_grid(tmp_path / "nope.json")


def test_run_grid_never_deletes_foreign_data(tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    with pytest.raises(InputDataError, match="not empty"):
        run_grid(TINY, out_dir=foreign)
    with pytest.raises(InputDataError, match="refusing to delete"):
        run_grid(TINY, out_dir=foreign, force=True)
    assert (foreign / "thesis.tex").read_text() == "precious"


def _table(rows):
    base = {c: np.nan for c in TABLE_COLUMNS}
    return pd.DataFrame([{**base, **r} for r in rows], columns=TABLE_COLUMNS)


def test_claims_follow_the_numbers():
    rows = []
    # vMF better by 3 nats at d=2, equal at d=10 (se 0.2): the published pattern
    for d, g, v in ((2, 30.0, 27.0), (5, 28.0, 27.0), (10, 27.0, 27.1)):
        rows += [dict(dataset="digits", family="gaussian", latent_dim=d, iwae_nll=g, iwae_nll_se=0.2),
                 dict(dataset="digits", family="vmf", latent_dim=d, iwae_nll=v, iwae_nll_se=0.2)]
    rows.append(dict(dataset="digits", family="mixture", latent_dim=2, iwae_nll=29.0,
                     iwae_nll_se=0.2, clustering_accuracy=0.6, clustering_chance=0.11,
                     clusters_used=10))
    rows.append(dict(dataset="digits", family="mixture", latent_dim=10, iwae_nll=29.0,
                     iwae_nll_se=0.2, clustering_accuracy=0.1, clustering_chance=0.1,
                     clusters_used=1))
    rows.append(dict(dataset="digits", family="m2", latent_dim=2, iwae_nll=29.0, iwae_nll_se=0.2,
                     test_error=0.2, baseline_error=0.1, n_labels=100))
    text = " ".join(claims(_table(rows)))
    assert "Claim supported here" in text
    assert "d=2: vMF better by 3.00 nats" in text and "d=10: no clear difference" in text
    assert "well above chance at d = 2." in text
    assert "At d = 10 every test digit falls in one mixture component" in text
    assert "M2 does not beat the labels-only classifier" in text
    # reversed: Gaussian better everywhere
    flipped = [dict(r, iwae_nll=60 - r["iwae_nll"]) if r["family"] in ("gaussian", "vmf") else r
               for r in rows]
    assert "Claim not supported here" in " ".join(claims(_table(flipped)))


def test_claims_use_the_paired_gain_when_present():
    rows = [dict(dataset="sphere", family="gaussian", latent_dim=2, iwae_nll=30.0, iwae_nll_se=1.0,
                 iwae_gain_vs_gaussian=0.0, iwae_gain_se=0.0),
            dict(dataset="sphere", family="vmf", latent_dim=2, iwae_nll=29.6, iwae_nll_se=1.0,
                 iwae_gain_vs_gaussian=0.4, iwae_gain_se=0.05)]
    # unpaired: 0.4 is within 2 * hypot(1, 1); paired: 8 standard errors
    assert "vMF better by 0.40 nats (+/- 0.10)" in " ".join(claims(_table(rows)))


def test_vae_section_escapes_and_builds(rng):
    table = _table([dict(dataset="digits", family="gaussian", latent_dim=2, iwae_nll=30.0,
                         iwae_nll_se=0.1, elbo=-31.0, kl=2.0, active_units=2)])
    view = LatentView("digits-gaussian-d2", "digits <script>", rng.normal(size=(50, 2)),
                      rng.normal(size=(50, 2)), rng.integers(0, 10, 50))
    section = vae_section(table, [view], command="weightstats vae compare", config=DEFAULT_GRID)
    assert section.key == "vae" and len(section.figures()) == 3
    from weightstats.report.model import build_report
    from weightstats.report.render import render_html

    html = render_html(build_report("t", [section]))
    assert "digits <script>" not in html and "digits &lt;script&gt;" in html
    assert "IWAE with k = 5000" in html


def test_cli_compare_and_latent_on_a_tiny_grid(tmp_path):
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(TINY))
    out = tmp_path / "out"
    runner = CliRunner()
    res = runner.invoke(main, ["vae", "compare", "--config", str(config), "-o", str(out), "-q"])
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out / "table.csv")
    assert list(table.columns) == TABLE_COLUMNS and len(table) == 2
    assert np.isfinite(table["iwae_nll"]).all() and (table["active_units"] >= 0).all()
    assert (out / "vae.html").stat().st_size > 1000
    # a second run refuses to overwrite, and --force replaces it
    again = runner.invoke(main, ["vae", "compare", "--config", str(config), "-o", str(out), "-q"])
    assert again.exit_code == 2 and "--force" in again.output
    assert len(again.output.strip().splitlines()) == 1
    # the latent analysis of one recorded run
    lat = runner.invoke(main, ["latent", str(out / "runs" / "sphere-vmf-d2"), "--permutations", "10"])
    assert lat.exit_code == 0, lat.output
    assert "rayleigh_pvalue" in lat.output and "vmf" in lat.output
    bad = runner.invoke(main, ["latent", str(out / "runs" / "sphere-vmf-d2"), "--epoch", "99"])
    assert bad.exit_code == 2 and "recorded epochs" in bad.output


def test_cli_compare_rejects_both_config_and_quick(tmp_path):
    res = CliRunner().invoke(main, ["vae", "compare", "--quick", "--config", "x.json", "-o", str(tmp_path / "o")])
    assert res.exit_code == 2 and "either --config or --quick" in res.output


@pytest.mark.slow
def test_cli_vae_compare_quick_end_to_end(tmp_path):
    out = tmp_path / "quick"
    runner = CliRunner()
    res = runner.invoke(main, ["vae", "compare", "--quick", "-o", str(out), "-q"])
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out / "table.csv")
    assert set(table["family"]) == {"gaussian", "vmf", "power_spherical", "student_t", "mixture", "m2"}
    m2 = table[table["family"] == "m2"].iloc[0]
    assert 0 <= m2["test_error"] <= 1 and m2["n_labels"] == 100
    mix = table[table["family"] == "mixture"].iloc[0]
    assert 0 < mix["clustering_accuracy"] <= 1
    for run in table["run"]:
        lat = runner.invoke(main, ["latent", str(out / run), "--permutations", "10"])
        assert lat.exit_code == 0, (run, lat.output)
