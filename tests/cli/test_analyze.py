"""`weightstats analyze`: table, outputs, and one stderr line + exit 2 for every bad input."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "io"))
import checkpoint_factory as cf  # noqa: E402

from weightstats.cli import main  # noqa: E402

torch = pytest.importorskip("torch")
from safetensors.torch import save_file  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def run(*args: str):
    return CliRunner().invoke(main, ["analyze", *map(str, args)])


def assert_one_line_error(result, *fragments: str, code: int = 2) -> None:
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("weightstats: error: ")
    for fragment in fragments:
        assert fragment in lines[0]
    assert "Traceback" not in result.output


@pytest.fixture
def ckpt(tmp_path):
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in cf.state_dict().items()}, str(path))
    return path


def test_table_summary_and_answer(ckpt):
    result = run(ckpt, "--max-samples", "2000", "--min-numel", "16")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "tensor" in out and "verdict" in out
    lines = out.splitlines()
    order = [n for n in ("embed.weight", "layers.0.fc.weight", "layers.1.fc.weight", "head.weight")]
    positions = [next(i for i, line in enumerate(lines) if line.startswith(n)) for n in order]
    assert positions == sorted(positions)
    assert "num_batches_tracked" in out and "skipped" in out
    assert "Verdicts by role:" in out
    assert "weight matrices" in out  # the answer paragraph
    assert "\x1b[" not in out  # no colour when stdout is not a terminal
    assert result.stderr == ""  # no progress bar when stderr is not a terminal


def test_outputs_with_provenance_and_no_overwrite(ckpt, tmp_path):
    csv, js, pq = tmp_path / "a.csv", tmp_path / "a.json", tmp_path / "a.parquet"
    result = run(
        ckpt,
        "--csv",
        csv,
        "--json",
        js,
        "--parquet",
        pq,
        "--seed",
        "3",
        "-q",
        "--max-samples",
        "1000",
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    frame = pd.read_csv(csv, comment="#")
    header = [line for line in csv.read_text().splitlines() if line.startswith("#")]
    assert any(line.startswith("# sha256: ") for line in header)
    assert any(line.startswith("# torch_version: ") for line in header)
    data = json.loads(js.read_text())
    assert data["meta"]["seed"] == 3 and len(data["rows"]) == len(frame)
    back = pd.read_parquet(pq)
    assert back.attrs["seed"] == 3 and back.attrs["sha256"] == data["meta"]["sha256"]
    assert list(back["tensor"]) == list(frame["tensor"])
    np.testing.assert_allclose(back["excess_kurtosis"], frame["excess_kurtosis"], rtol=1e-12)
    # existing files are never overwritten without --force
    before = csv.read_bytes()
    result = run(ckpt, "--csv", csv, "-q")
    assert_one_line_error(result, "exists", "--force")
    assert csv.read_bytes() == before
    assert run(ckpt, "--csv", csv, "-q", "--force", "--max-samples", "1000").exit_code == 0


def test_malicious_pickle_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"w": torch.randn(20, 20), "x": cf.Evil(str(marker))}, path)
    result = run(path)
    assert_one_line_error(result, "--unsafe-allow-pickle", "refused")
    assert not marker.exists()
    legacy = tmp_path / "legacy.pt"
    torch.save({"x": cf.Evil(str(marker))}, legacy, _use_new_zipfile_serialization=False)
    assert_one_line_error(run(legacy), "--unsafe-allow-pickle")
    assert not marker.exists()


def _lying_safetensors(tmp_path):
    header = {"a": {"dtype": "F32", "shape": [100000, 100000], "data_offsets": [0, 16]}}
    return cf.write_safetensors_raw(tmp_path / "lie.safetensors", header, b"\0" * 16)


def _oversized_safetensors(tmp_path):
    header = {"a": {"dtype": "F32", "shape": [1000, 1000], "data_offsets": [0, 4_000_000]}}
    return cf.write_safetensors_raw(tmp_path / "big.safetensors", header, b"\0" * 16)


def _truncated_safetensors(tmp_path):
    path = tmp_path / "t.safetensors"
    save_file({"a": torch.randn(100, 100)}, str(path))
    path.write_bytes(path.read_bytes()[:-100])
    return path


def _truncated_zip(tmp_path):
    path = tmp_path / "t.pt"
    torch.save({"a": torch.randn(100, 100)}, path)
    path.write_bytes(path.read_bytes()[:1000])
    return path


def _empty_dict(tmp_path):
    path = tmp_path / "empty.pt"
    torch.save({}, path)
    return path


def _non_tensor(tmp_path):
    path = tmp_path / "meta.pt"
    torch.save({"epoch": 3, "name": "run"}, path)
    return path


def _empty_dir(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "config.json").write_text("{}")
    return tmp_path / "d"


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda p: p / "missing.pt", "no such file"),
        (_empty_dir, "holds no checkpoint"),
        (_truncated_zip, "truncated"),
        (_truncated_safetensors, "truncated"),
        (_lying_safetensors, "header lies"),
        (_oversized_safetensors, "ends at byte"),
        (_empty_dict, "empty dict"),
        (_non_tensor, "no tensors"),
    ],
)
def test_bad_input_one_line_exit_2(tmp_path, make, fragment):
    assert_one_line_error(run(make(tmp_path)), fragment)


def test_bad_options(ckpt, tmp_path):
    assert_one_line_error(run(ckpt, "--max-samples", "3"), "--max-samples")
    assert run(ckpt, "--jobs", "0").exit_code == 2
    assert_one_line_error(run(ckpt, "--csv", tmp_path / "nodir" / "x.csv"), "does not exist")
    assert_one_line_error(run(ckpt, "--json-report", tmp_path / "r.json"), "--output")


def test_degenerate_tensors_are_rows_not_crashes(tmp_path):
    path = tmp_path / "odd.safetensors"
    save_file(
        {
            "nan.weight": torch.full((20, 20), float("nan")),
            "const.weight": torch.zeros(20, 20),
            "ok.weight": torch.randn(20, 20),
        },
        str(path),
    )
    result = run(path)
    assert result.exit_code == 0, result.output
    assert result.stdout.count("degenerate") >= 2


def test_help_documents_exit_codes():
    result = CliRunner().invoke(main, ["analyze", "--help"])
    assert result.exit_code == 0
    for text in ("0  done", "1  finished", "2  bad input", "--unsafe-allow-pickle", "--jobs"):
        assert text in result.output


@pytest.mark.slow
def test_bundled_checkpoint_subprocess():
    """The README's main-job command prints the table (real process, real exit code)."""
    path = REPO / "data" / "digits_mlp.safetensors"
    if not path.exists():
        pytest.skip("data/digits_mlp.safetensors not built yet")
    proc = subprocess.run(
        [sys.executable, "-m", "weightstats", "analyze", str(path), "--max-samples", "5000"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "verdict" in proc.stdout and "weight" in proc.stdout
    assert proc.stderr == ""


@pytest.mark.slow
def test_unsafe_subprocess_one_line(tmp_path):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as fh:
        pickle.dump({"x": cf.Evil(str(tmp_path / "pwned"))}, fh)
    proc = subprocess.run(
        [sys.executable, "-m", "weightstats", "analyze", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "--unsafe-allow-pickle" in proc.stderr
    assert not (tmp_path / "pwned").exists()


def test_html_report_option(ckpt, tmp_path):
    from helpers import importorskip

    importorskip("weightstats.report.checkpoint_report")
    html, js = tmp_path / "r.html", tmp_path / "r.json"
    result = run(ckpt, "-o", html, "--json-report", js, "-q", "--max-samples", "1000")
    assert result.exit_code == 0, result.output
    assert "<html" in html.read_text().lower() and json.loads(js.read_text())
    before = html.read_bytes()
    assert_one_line_error(run(ckpt, "-o", html, "-q"), "exists", "--force")
    assert html.read_bytes() == before


def test_failed_tensor_gives_exit_1(ckpt, monkeypatch):
    import weightstats.analysis.checkpoint as engine
    from weightstats.errors import FitError

    real = engine.analyze_tensor

    def flaky(values, shape, role, **kw):
        if tuple(shape) == (32, 32):
            raise FitError("the optimiser diverged")
        return real(values, shape, role, **kw)

    monkeypatch.setattr(engine, "analyze_tensor", flaky)
    result = run(ckpt, "--max-samples", "1000")
    assert result.exit_code == 1, result.output
    assert "failed" in result.stdout and "the optimiser diverged" in result.stdout
    assert "could not be analysed" in result.stderr


def test_all_values_with_max_samples_0(ckpt, tmp_path):
    out = tmp_path / "a.json"
    assert run(ckpt, "--max-samples", "0", "--json", out, "-q").exit_code == 0
    rows = json.loads(out.read_text())["rows"]
    analysed = [r for r in rows if r["status"] == "analysed"]
    assert all(r["n_used"] == r["numel"] for r in analysed)


def test_readme_main_job_command():
    path = REPO / "data" / "digits_mlp.safetensors"
    if not path.exists():
        pytest.skip("data/digits_mlp.safetensors not built yet")
    result = run(path, "--max-samples", "5000")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].startswith("tensor")
    assert "linear_weight" in result.stdout and "Verdicts by role:" in result.stdout


def test_unsafe_allow_pickle_is_the_explicit_opt_in(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "trusted.pt"
    torch.save({"w": torch.randn(20, 20), "obj": cf.Evil(str(marker))}, path)
    result = run(path, "--unsafe-allow-pickle", "--max-samples", "1000")
    assert result.exit_code == 0, result.output
    assert marker.exists()  # the pickle's code ran, as the flag says it may
    assert "not a tensor" in result.stdout
