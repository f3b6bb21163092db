"""``weightstats clt`` and ``weightstats experiment clt`` through click's CliRunner."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from weightstats.cli import main

TINY = """{"name": "tiny", "seed": 0, "epochs": 1, "batch_size": 64,
 "record": {"coords": 128}, "analysis": {"max_samples": 300, "families": ["normal", "laplace"]},
 "models": [{"kind": "mlp", "widths": [[16, 8]]}], "inits": ["normal"],
 "optimizers": [{"name": "adam", "lrs": [0.001]}]}"""


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    cfg = root / "tiny.json"
    cfg.write_text(TINY)
    out = root / "exp"
    result = CliRunner().invoke(main, ["experiment", "clt", "--config", str(cfg), "-o", str(out)])
    assert result.exit_code == 0, result.output
    return cfg, out


def test_experiment_then_clt_on_its_run(experiment, tmp_path):
    _, out = experiment
    run = next((out / "runs").iterdir())
    csv = tmp_path / "clt.csv"
    result = CliRunner().invoke(main, ["clt", str(run), "--csv", str(csv)])
    assert result.exit_code == 0, result.output
    assert "net.0.weight" in result.output and "verdict" in result.output
    assert csv.is_file()
    result = CliRunner().invoke(main, ["clt", str(run), "--csv", str(csv)])
    assert result.exit_code == 2 and "already exists" in result.output


def test_experiment_refuses_to_overwrite(experiment):
    cfg, out = experiment
    result = CliRunner().invoke(main, ["experiment", "clt", "--config", str(cfg), "-o", str(out)])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "--force" in result.output


def test_clt_on_checkpoint_pair_marks_trajectories_unavailable(tmp_path, rng):
    w0 = rng.uniform(-0.1, 0.1, size=(32, 64)).astype(np.float32)
    wt = w0 + rng.normal(size=(32, 64)).astype(np.float32)
    np.savez(tmp_path / "init.npz", **{"fc.weight": w0})
    np.savez(tmp_path / "final.npz", **{"fc.weight": wt})
    result = CliRunner().invoke(main, ["clt", "--init", str(tmp_path / "init.npz"),
                                       str(tmp_path / "final.npz")])
    assert result.exit_code == 0, result.output
    assert "unavailable" in result.output
    assert "fc.weight" in result.output and "trajectories" in result.output


@pytest.mark.parametrize("args, match", [
    (["clt"], "give one run directory"),
    (["clt", "/no/such/run"], "does not exist"),
    (["clt", "--init", "/no/such.pt", "/no/final.pt"], "does not exist"),
    (["clt", "--init", "a.pt"], "exactly one more path"),
])
def test_clt_errors_are_one_line(args, match):
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert match in result.output
    assert result.output.count("\n") == 1


def test_clt_html_report_never_overwrites_without_force(experiment, tmp_path):
    import json

    _, out = experiment
    run = next((out / "runs").iterdir())
    html, js, csv = tmp_path / "r.html", tmp_path / "r.json", tmp_path / "t.csv"
    one = ["--tensor", "net.2.weight"]  # one tensor keeps the test fast
    result = CliRunner().invoke(main, ["clt", str(run), *one, "-o", str(html), "--json-report",
                                       str(js), "--csv", str(csv)])
    assert result.exit_code == 0, result.output
    page = html.read_text()
    assert "Is it the central limit theorem?" in page and "net.2.weight" in page
    model = json.dumps(json.loads(js.read_text()))
    assert "clt-tensors" in model and "net.2.weight" in model and "net.0.weight" not in model
    # a second run refuses before analysing, and leaves every file as it was
    before = {p: p.read_bytes() for p in (html, js, csv)}
    for args in (["-o", str(html)], ["--csv", str(csv)], ["-o", str(tmp_path / "new.html"),
                                                          "--json-report", str(js)]):
        result = CliRunner().invoke(main, ["clt", str(run), *args])
        assert result.exit_code == 2, result.output
        assert result.output.count("\n") == 1 and "--force" in result.output
    assert {p: p.read_bytes() for p in before} == before
    assert not (tmp_path / "new.html").exists()
    result = CliRunner().invoke(main, ["clt", str(run), *one, "-o", str(html), "--json-report",
                                       str(js), "--force"])
    assert result.exit_code == 0, result.output
    assert html.read_text() == page  # seeded: the same report


@pytest.mark.parametrize("extra, match", [
    (["--json-report", "x.json"], "needs -o/--output"),
    (["-o", "same.html", "--csv", "same.html"], "different files"),
    (["-o", "/no/such/dir/r.html"], "does not exist"),
])
def test_clt_report_option_errors(experiment, tmp_path, extra, match, monkeypatch):
    _, out = experiment
    monkeypatch.chdir(tmp_path)
    run = next((out / "runs").iterdir())
    result = CliRunner().invoke(main, ["clt", str(run), *extra])
    assert result.exit_code == 2
    assert match in result.output and result.output.count("\n") == 1
    assert not list(tmp_path.iterdir())  # nothing written
