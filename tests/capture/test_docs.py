"""The ten-line example of docs/capture.md runs and reads its run back."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "capture.md"


def test_ten_line_example_runs(tmp_path, monkeypatch, capsys):
    if not DOC.exists():
        pytest.fail(f"{DOC} is missing")
    text = DOC.read_text()
    section = text.split("## Ten lines", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert len(code.strip().splitlines()) <= 11
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(DOC), "exec"), {"__name__": "docs_example"})
    out = capsys.readouterr().out
    assert "[0, 50, 100, 150, 200]" in out
    assert "Trajectories(tensor='0.weight', shape=(128, 64), steps=1..200 (T=200)" in out
    assert "kurtosis" in out
    assert (tmp_path / "runs" / "mlp" / "manifest.json").exists()
