"""write_checkpoint_report: the CLI's entry point (title, metadata, determinism, size)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from report._synthetic import SECTION_KEYS, big_frame

from weightstats.errors import InputDataError
from weightstats.report.checkpoint_report import _meta, checkpoint_report, write_checkpoint_report


def test_meta_groups_versions_and_keeps_provenance(frame):
    engine_attrs = {
        "numpy_version": "2.4",
        "torch_version": "2.13",
        "seed": 7,
        "sha256": "ab" * 32,
        "checkpoints": [{"checkpoint": "x"}],
        "min_numel": 64,
    }
    f = frame.copy()
    f.attrs = engine_attrs
    meta = _meta(f)
    assert meta == {
        "checkpoint": "synthetic.safetensors",
        "sha256": "ab" * 32,
        "seed": 7,
        "min_numel": 64,
        "versions": {"numpy": "2.4", "torch": "2.13"},
    }


def test_write_checkpoint_report(tmp_path, frame, tensors):
    out = write_checkpoint_report(
        frame.iloc[[1, 5]], tensors.__getitem__, tmp_path / "r.html", json_path=tmp_path / "r.json"
    )
    assert out == tmp_path / "r.html"
    html = out.read_text()
    assert "<title>Are the weights of synthetic.safetensors Gaussian?</title>" in html
    data = json.loads((tmp_path / "r.json").read_text())
    assert [s["key"] for s in data["sections"]] == SECTION_KEYS
    with pytest.raises(InputDataError, match="already exists"):
        write_checkpoint_report(frame, tensors.__getitem__, out)
    with pytest.raises(InputDataError, match="must be the DataFrame"):
        write_checkpoint_report(None, tensors.__getitem__, tmp_path / "x.html")


def test_same_frame_same_report(frame, tensors):
    from weightstats.report.render import render_html

    sub = frame.iloc[[1, 4]]  # fc1.bias and fc3.weight: small, quick
    a = render_html(checkpoint_report(sub, tensors.__getitem__, title="t"))
    b = render_html(checkpoint_report(sub, tensors.__getitem__, title="t"))
    assert a == b  # seeded subsampling and EM, deterministic SVG ids, no timestamps


@pytest.mark.slow
def test_200_tensor_report_under_10_mb(tmp_path):
    frame, values = big_frame(200, np.random.default_rng(5))
    out = write_checkpoint_report(frame, values, tmp_path / "big.html")
    size = out.stat().st_size
    assert size < 10 * 2**20, size
    html = out.read_text()
    # the default cap: 10 tensors, the largest bias (3 views: no rows) and 9 matrices (4 views),
    # plus the 4 whole-model figures
    assert html.count("<img ") == 3 + 9 * 4 + 4
