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
