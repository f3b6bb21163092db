"""The CLT experiment grid: config checks, tiny seeded runs, no overwriting."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from weightstats.errors import InputDataError
from weightstats.experiments.clt import (
    CONFIG_DIR,
    expand_grid,
    load_config,
    run_clt_experiment,
)

TINY = {
    "name": "tiny",
    "seed": 0,
    "epochs": 1,
    "batch_size": 64,
    "record": {"coords": 128},
    "analysis": {"max_samples": 300, "families": ["normal", "laplace"]},
    "models": [{"kind": "mlp", "widths": [[16, 8]]}],
    "inits": ["kaiming-uniform"],
    "optimizers": [{"name": "sgd", "lrs": [0.1]}],
}


def test_bundled_configs_load_and_expand():
    default = expand_grid(load_config("default"))
    quick = expand_grid(load_config("quick"))
    assert (CONFIG_DIR / "clt_default.json").is_file()
    # the default covers all three inits, both optimizers, several widths and learning rates
    assert {s.init for s in default} == {"kaiming-uniform", "normal", "heavy-tailed"}
    assert {s.optimizer for s in default} == {"sgd", "adam"}
    assert len({s.width for s in default if s.model == "mlp"}) >= 3
    assert len({(s.optimizer, s.lr) for s in default}) >= 4
    assert {s.model for s in default} >= {"mlp", "cnn"}
    assert 0 < len(quick) < len(default)
    assert len({s.run_id for s in default}) == len(default)


@pytest.mark.parametrize("bad, match", [
    ({"inits": ["xavier"]}, "config `inits` has 'xavier'"),
    ({"optimizers": [{"name": "rmsprop", "lrs": [0.1]}]}, "optimizer 'rmsprop'"),
    ({"optimizers": [{"name": "sgd", "lrs": [-1]}]}, "positive learning rates"),
    ({"epochs": 0}, "`epochs` must be a positive integer"),
    ({"models": [{"kind": "rnn"}]}, "model kind 'rnn'"),
])
def test_load_config_iv(bad, match):
    with pytest.raises(InputDataError, match=match):
        load_config({**TINY, **bad})


def test_load_config_iv_paths(tmp_path):
    with pytest.raises(InputDataError, match="neither 'default', 'quick'"):
        load_config(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputDataError, match="not valid JSON"):
        load_config(bad)
    with pytest.raises(InputDataError, match="lacks"):
        load_config({"models": []})


def test_tiny_experiment_writes_table_and_refuses_overwrite(tmp_path):
    out = tmp_path / "exp"
    res = run_clt_experiment(TINY, out)
    table = pd.read_csv(out / "results.csv")
    # one row per (run, weight tensor): the MLP 64 -> 16 -> 8 -> 10 has three weights
    assert list(table["tensor"]) == ["net.0.weight", "net.2.weight", "net.4.weight"]
    assert set(table["verdict"]) <= {"inherited-from-init", "clt-accumulation",
                                     "heavy-tailed-updates", "structured", "undetermined"}
    assert table["n_steps"].eq(res.results["n_optimizer_steps"]).all()  # every step recorded
    assert (table["trajectory_sum_error"] < 1e-4).all()  # recorded updates add up to dW
    assert json.loads((out / "experiment.json").read_text())["status"] == "done"
    curves = pd.read_csv(out / "curves.csv")
    assert set(curves["tensor"]) == set(table["tensor"])
    with pytest.raises(InputDataError, match="already exists"):
        run_clt_experiment(TINY, out)
    again = run_clt_experiment(TINY, out, force=True)  # seeded: the same numbers
    pd.testing.assert_series_equal(again.results["relative_change"],
                                   res.results["relative_change"])


def test_force_refuses_foreign_directory(tmp_path):
    (tmp_path / "precious.txt").write_text("user data")
    with pytest.raises(InputDataError, match="refusing to delete"):
        run_clt_experiment(TINY, tmp_path, force=True)
    assert (tmp_path / "precious.txt").read_text() == "user data"


@pytest.mark.slow
def test_quick_grid_end_to_end(tmp_path):
    res = run_clt_experiment("quick", tmp_path / "q")
    assert res.results["run_id"].nunique() == len(expand_grid(load_config("quick")))


@pytest.mark.slow
def test_report_section_from_tiny_experiment(tmp_path):
    from weightstats.report.sections.clt import experiment_sections, write_clt_report

    res = run_clt_experiment({**TINY, "optimizers": [{"name": "sgd", "lrs": [0.1]},
                                                      {"name": "adam", "lrs": [0.001]}]},
                             tmp_path / "exp")
    sections = experiment_sections(res)
    answer = sections[0].blocks[0].answer
    assert f"{len(res.results)} weight tensors in 2 runs" in answer
    findings = " ".join(sections[0].blocks[1].paragraphs)
    # the sentences carry the table's medians, not fixed text
    k = res.results.loc[res.results["init"] == "kaiming-uniform", "excess_kurtosis_final"]
    assert f"{k.median():.2f} after training" in findings
    path = write_clt_report(res, tmp_path / "clt.html")
    html = path.read_text() if hasattr(path, "read_text") else (tmp_path / "clt.html").read_text()
    assert "the CLT experiment" in html and "net.0.weight" in html
    with pytest.raises(InputDataError):
        write_clt_report(res, tmp_path / "clt.html")
