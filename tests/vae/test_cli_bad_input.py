"""`weightstats vae compare` and `weightstats latent`: every bad input is one stderr line and exit 2.

Each case runs before any training, so the file stays fast; one subprocess case checks that the
installed entry point (not only click's test runner) prints no traceback.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from weightstats.cli import main


def _one_line_error(result, *needles):
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("weightstats: error: "), lines[0]
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def paths(tmp_path):
    (tmp_path / "not_a_run").mkdir()
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "mine.txt").write_text("user data")
    (tmp_path / "report.html").write_text("old report")
    (tmp_path / "ragged.json").write_text("{not json")
    (tmp_path / "epochs.json").write_text(json.dumps({"training": {"epochs": "ten"}}))
    (tmp_path / "experiments.json").write_text(json.dumps({"experiments": 5}))
    (tmp_path / "dims.json").write_text(json.dumps(
        {"experiments": [{"dataset": "digits", "families": ["gaussian"], "latent_dims": ["a"]}]}))
    (tmp_path / "training.json").write_text(json.dumps({"training": 3}))
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "family.json").write_text(json.dumps(
        {"experiments": [{"dataset": "digits", "families": ["cauchy"], "latent_dims": [2]}]}))
    return tmp_path


VAE_CASES = [
    (["--config", "{p}/missing.json"], ["does not exist"]),
    (["--config", "{p}/a_file"], ["cannot read grid configuration"]),
    (["--config", "{p}/ragged.json"], ["cannot read grid configuration"]),
    (["--config", "{p}/epochs.json"], ["wrong type", "ten"]),
    (["--config", "{p}/experiments.json"], ["wrong type"]),
    (["--config", "{p}/dims.json"], ["wrong type"]),
    (["--config", "{p}/training.json"], ["wrong type"]),
    (["--config", "{p}/list.json"], ["must be a JSON object"]),
    (["--config", "{p}/family.json"], ["unknown latent families", "cauchy"]),
    (["--quick", "--config", "{p}/list.json"], ["either --config or --quick"]),
    (["--quick", "-o", "{p}/a_file"], ["is a file"]),
    (["--quick", "-o", "{p}/full"], ["not empty", "--force"]),
    (["--quick", "-o", "{p}/full", "--force"], ["no compare.json", "refusing"]),
    (["--quick", "-o", "{p}/out", "--report", "{p}/report.html"], ["exists", "--force"]),
    (["--quick", "-o", "{p}/out", "--report", "{p}/not_a_run"], ["is a directory"]),
    (["--quick", "-o", "{p}/out", "--report", "{p}/nowhere/r.html"], ["does not exist"]),
    (["--quick", "-o", "{p}/out", "--json-report", "{p}/report.html"], ["exists", "--force"]),
    (["--threads", "0"], ["--threads", "--help"]),
    (["--threads", "many"], ["--threads"]),
    (["--bogus"], ["--bogus"]),
]


@pytest.mark.parametrize("args, needles", VAE_CASES, ids=[" ".join(a) for a, _ in VAE_CASES])
def test_vae_compare_bad_input(paths, args, needles):
    args = [a.format(p=paths) for a in args]
    _one_line_error(CliRunner().invoke(main, ["vae", "compare", *args]), *needles)
    # nothing of the user's was touched or created
    assert (paths / "full" / "mine.txt").read_text() == "user data"
    assert (paths / "report.html").read_text() == "old report"
    assert not (paths / "out").exists()


def test_vae_unknown_subcommand():
    _one_line_error(CliRunner().invoke(main, ["vae", "comparee"]), "comparee")


LATENT_CASES = [
    (["{p}/missing"], ["does not exist"]),
    (["{p}/not_a_run"], ["not a weightstats run"]),
    (["{p}/a_file"], ["is a file"]),
    (["{p}/empty_run"], ["no recorded latents", "LatentRecorder"]),
    (["{p}/empty_run", "--csv", "{p}/report.html"], ["exists", "--csv"]),
    (["{p}/empty_run", "--csv", "{p}/nowhere/t.csv"], ["does not exist"]),
    (["{p}/empty_run", "--permutations", "-1"], ["--permutations"]),
    (["{p}/empty_run", "--epoch", "last"], ["--epoch"]),
    (["{p}/empty_run", "--seed", "-3"], ["--seed"]),
    (["{p}/empty_run", "--family", "cauchy"], []),
    ([], ["RUN_DIR"]),
]


@pytest.mark.parametrize("args, needles", LATENT_CASES, ids=[" ".join(a) for a, _ in LATENT_CASES])
def test_latent_bad_input(paths, args, needles):
    from weightstats.capture.store import RunStore

    with RunStore.create(paths / "empty_run", metadata={"vae": {"family": "gaussian"}}):
        pass
    args = [a.format(p=paths) for a in args]
    _one_line_error(CliRunner().invoke(main, ["latent", *args]), *needles)
    assert (paths / "report.html").read_text() == "old report"


def test_entry_point_prints_one_line_not_a_traceback(paths):
    proc = subprocess.run(
        [sys.executable, "-m", "weightstats", "vae", "compare", "--quick", "-o", str(paths / "a_file")],
        check=False, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"weightstats: error: --out {str(paths / 'a_file')!r} is a file; give a directory."
    ]
