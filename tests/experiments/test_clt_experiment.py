"""The CLT experiment grid: config checks, tiny seeded runs, no overwriting."""

from __future__ import annotations

import json

import pandas as pd
import pytest

import weightstats.experiments.clt as clt_mod
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
    assert {s.model for s in default} == {"mlp", "cnn", "vae"}
    # plain SGD, SGD with momentum and Adam, each with a lazy and a rich learning rate
    assert {s.optimizer_label for s in default} == {"sgd", "sgd-m0.9", "adam"}
    vae = [s for s in default if s.model == "vae"]
    assert {s.init for s in vae} == {"kaiming-uniform", "normal", "heavy-tailed"}
    assert {s.optimizer for s in vae} == {"sgd", "adam"} and all(s.latent_dim > 0 for s in vae)
    assert load_config("default")["jobs"] == 2
    assert 0 < len(quick) < len(default)
    assert "vae" in {s.model for s in quick}
    assert len({s.run_id for s in default}) == len(default)


def test_missing_config_dir_names_the_config_option(tmp_path, monkeypatch):
    # a non-editable install has no data/experiments/ next to the package
    monkeypatch.setattr(clt_mod, "CONFIG_DIR", tmp_path / "nowhere")
    for name in ("default", "quick"):
        with pytest.raises(InputDataError, match=r"not installed.*--config PATH"):
            load_config(name)
    cfg = tmp_path / "mine.json"
    cfg.write_text(json.dumps(TINY))
    assert load_config(cfg)["name"] == "tiny"  # an explicit file still works


@pytest.mark.parametrize("bad, match", [
    ({"inits": ["xavier"]}, "config `inits` has 'xavier'"),
    ({"optimizers": [{"name": "rmsprop", "lrs": [0.1]}]}, "optimizer 'rmsprop'"),
    ({"optimizers": [{"name": "sgd", "lrs": [-1]}]}, "positive learning rates"),
    ({"epochs": 0}, "`epochs` must be a positive integer"),
    ({"models": [{"kind": "rnn"}]}, "model kind 'rnn'"),
    ({"models": [{"kind": "mlp", "widths": [[16, 0]]}]}, "lists of positive integers"),
    ({"models": [{"kind": "vae", "latent_dim": 0}]}, "`latent_dim` must be a positive"),
    ({"models": [{"kind": "vae", "optimizers": [{"name": "sgd", "lrs": []}]}]},
     "positive learning rates"),
    ({"jobs": 0}, "`jobs` must be a positive integer"),
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
                                                      {"name": "adam", "lrs": [0.01]}]},
                             tmp_path / "exp")
    sections = experiment_sections(res)
    findings = " ".join(sections[0].blocks[1].paragraphs)
    # the sentences carry the table's medians, not fixed text
    r = res.results
    for opt in ("sgd", "adam"):
        k = r.loc[(r["init"] == "kaiming-uniform") & (r["optimizer"] == opt),
                  "excess_kurtosis_final"]
        assert f"{opt} {k.median():.2f}" in findings
    answer = sections[0].blocks[0].answer
    n_inh = int((r["verdict"] == "inherited-from-init").sum())
    if n_inh < len(r):
        assert answer.startswith(f"Answer: {n_inh} (")
        moved = len(r) - n_inh
        assert f"Of the {moved} tensors whose update dominates" in answer
    else:
        assert answer.startswith(f"Answer: all {len(r)} tensors keep their initialisation")
    assert f"{len(r)} weight tensors in 2 runs" in findings
    path = write_clt_report(res, tmp_path / "clt.html")
    html = path.read_text() if hasattr(path, "read_text") else (tmp_path / "clt.html").read_text()
    assert "the CLT experiment" in html and "net.0.weight" in html
    with pytest.raises(InputDataError):
        write_clt_report(res, tmp_path / "clt.html")


VAE = {**TINY, "models": [{"kind": "vae", "widths": [[16]], "latent_dim": 4,
                           "optimizers": [{"name": "adam", "lrs": [0.01]}]}]}


def test_vae_run_records_encoder_and_decoder(tmp_path):
    res = run_clt_experiment(VAE, tmp_path / "vae")
    r = res.results
    # the Gaussian VAE 64 -> 16 -> 2x4 | 4 -> 16 -> 64: two encoder, two decoder weights
    assert list(r["tensor"]) == ["encoder.0.weight", "encoder.2.weight", "decoder.0.weight",
                                 "decoder.2.weight"]
    assert r["model"].eq("vae").all() and r["latent_dim"].eq(4).all()
    assert r["test_accuracy"].isna().all()
    # a trained 4-d latent VAE on digits: well below the untrained ~44 nats per image
    assert (r["test_neg_elbo"] > 0).all() and (r["test_neg_elbo"] < 40).all()
    assert (r["n_steps"] == r["n_optimizer_steps"]).all()
    assert (r["trajectory_sum_error"] < 1e-4).all()  # every Adam step recorded


def test_diverging_run_is_a_clear_error(tmp_path):
    from weightstats.errors import FitError

    cfg = {**VAE, "models": [{"kind": "vae", "widths": [[16]], "latent_dim": 2,
                              "optimizers": [{"name": "sgd", "lrs": [1e6]}]}]}
    with pytest.raises(FitError, match="lower this optimizer's learning rate"):
        run_clt_experiment(cfg, tmp_path / "div")


@pytest.mark.slow
def test_two_jobs_give_the_same_table(tmp_path):
    cfg = {**TINY, "inits": ["kaiming-uniform", "normal"]}
    one = run_clt_experiment(cfg, tmp_path / "one", jobs=1)
    two = run_clt_experiment(cfg, tmp_path / "two", jobs=2)
    timing = ["train_seconds", "analysis_seconds"]
    pd.testing.assert_frame_equal(one.results.drop(columns=timing),
                                  two.results.drop(columns=timing))
    pd.testing.assert_frame_equal(one.curves, two.curves)
    assert json.loads((tmp_path / "two" / "experiment.json").read_text())["jobs"] == 2
