"""The checkpoint sections on a synthetic checkpoint whose truth is known."""

from __future__ import annotations

import base64
import json
import math

import numpy as np
import pandas as pd
import pytest
from report._synthetic import EVIL, SECTION_KEYS, big_frame
from scipy import stats as sps

from weightstats.errors import CheckpointError, InputDataError
from weightstats.report.model import FigureGrid, KeyNumbers, Prose, Table
from weightstats.report.render import render_html, render_json
from weightstats.report.sections.checkpoint import checkpoint_sections, select_tensors


def _section(sections, key):
    return next(s for s in sections if s.key == key)


def test_sections_in_order(sections):
    assert [s.key for s in sections] == SECTION_KEYS


def test_synthetic_truth_is_what_the_frame_says(frame):
    # the synthetic generator's known shapes come out of the scipy-computed frame
    verdicts = dict(zip(frame["tensor"], frame["verdict"]))
    assert verdicts["fc1.weight"] == "gaussian"
    assert verdicts["fc2.weight"] == "heavy-tailed"
    assert verdicts[EVIL] == "scale-mixture"
    assert verdicts["fc3.weight"] == "light-tailed"
    assert verdicts["fc3.bias"] == "degenerate"


def test_selection_largest_per_role_then_non_gaussian(frame):
    pos = select_tensors(frame, max_tensors=10)
    names = list(frame["tensor"].iloc[pos])
    # largest linear weight and largest bias, then every non-Gaussian analysed tensor
    assert names == ["fc1.weight", "fc1.bias", "fc2.weight", EVIL, "fc3.weight"]
    capped = list(frame["tensor"].iloc[select_tensors(frame, max_tensors=3)])
    assert capped == ["fc1.weight", "fc1.bias", EVIL]  # role leaders first, then the largest
    with pytest.raises(InputDataError, match="max_tensors"):
        select_tensors(frame, max_tensors=-1)


def test_headline_counts_match_the_frame(sections, frame):
    answer = _section(sections, "answer")
    head = answer.blocks[0]
    assert isinstance(head, KeyNumbers)
    analysed = frame[frame["status"] == "analyzed"]
    numbers = {n.label: n for n in head.numbers}
    assert numbers["tensors analysed"].value == len(analysed) == 5
    assert numbers["tensors analysed"].detail_value == len(frame)
    total = analysed["numel"].sum()
    assert numbers["parameters analysed"].value == total
    gauss = analysed.loc[analysed["verdict"] == "gaussian", "numel"].sum()
    mix = analysed.loc[analysed["verdict"] == "scale-mixture", "numel"].sum()
    assert numbers["of parameters in Gaussian tensors"].value == pytest.approx(gauss / total)
    assert numbers["of parameters in Gaussian tensors"].detail_value == 2
    assert numbers["Gaussian per unit"].value == pytest.approx((gauss + mix) / total)
    assert numbers["tensors not Gaussian"].value == 3
    assert numbers["tensors not Gaussian"].detail_value == 1
    assert head.answer.startswith("Mostly:")  # 7,728 of 11,872 parameters are Gaussian
    counts, shares = answer.blocks[1].frame, answer.blocks[2].frame
    assert list(counts["role"]) == ["all", "linear_weight", "bias"]
    assert list(counts.columns) == [
        "role",
        "tensors",
        "gaussian",
        "scale-mixture",
        "heavy-tailed",
        "light-tailed",
    ]
    row = counts.set_index("role").loc["all"]
    assert row["tensors"] == len(analysed) == row.iloc[1:].sum()
    assert counts.set_index("role").loc["bias", "gaussian"] == 1
    s = shares.set_index("role")
    assert s.loc["all", "parameters"] == total
    assert s.loc["all", "gaussian"] == pytest.approx(gauss / total)
    np.testing.assert_allclose(s.drop(columns="parameters").sum(axis=1), 1.0)


def test_table_is_the_frame(sections, frame):
    table = _section(sections, "tensors").blocks[0]
    assert isinstance(table, Table)
    pd.testing.assert_frame_equal(table.frame, frame)
    assert [c.name for c in table.shown_columns()][:3] == ["tensor", "role", "shape"]


def test_evidence_fits_match_scipy(sections, tensors):
    evidence = _section(sections, "evidence")
    grids = [b for b in evidence.blocks if isinstance(b, FigureGrid)]
    assert [g.title for g in grids] == ["fc1.weight", "fc1.bias", "fc2.weight", EVIL]
    assert [g.badge for g in grids] == ["gaussian", "gaussian", "heavy-tailed", "scale-mixture"]
    hist = grids[0].figures[0]
    x = tensors["fc1.weight"].reshape(-1)  # 7,680 values: no subsampling
    assert hist.values["n_subsample"] == x.size
    loc, scale = sps.norm.fit(x)  # scipy's closed-form normal MLE
    assert hist.values["normal"]["params"]["loc"] == pytest.approx(loc, rel=1e-12)
    assert hist.values["normal"]["params"]["scale"] == pytest.approx(scale, rel=1e-12)
    assert hist.values["normal"]["loglik"] == pytest.approx(sps.norm.logpdf(x, loc, scale).sum())
    heavy = grids[2].figures[0]
    assert heavy.values["best_family"]["family"] == "laplace"
    # 2-D tensors get the pooled/row-standardised figure, the 1-D bias does not
    assert [len(g.figures) for g in grids] == [4, 3, 4, 4]


def test_rowwise_figure_separates_the_scale_mixture(sections):
    grid = [b for b in _section(sections, "evidence").blocks if isinstance(b, FigureGrid)][3]
    svg = grid.figures[3].data.decode()
    assert "row-standardised" in svg and grid.figures[3].values == {"rows": 24}


def test_meaning_covers_present_verdicts_only(sections):
    titles = [b.title for b in _section(sections, "meaning").blocks if isinstance(b, Prose)]
    assert titles == [
        "What 'gaussian' means",
        "What 'scale-mixture' means",
        "What 'heavy-tailed' means",
        "What 'light-tailed' means",
        "Why p-values are not the verdict",
    ]


def test_evil_name_escaped_in_html_svg_and_json(report):
    html = render_html(report)
    assert "<script>alert" not in html
    assert html.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 3  # table, grid title, meta?
    for fig in report.figures():
        assert b"<script" not in fig.data
    svgs = [
        base64.b64decode(chunk)
        for chunk in __import__("re").findall(r"data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)", html)
    ]
    assert len(svgs) == len(report.figures())
    assert any(b"&lt;script&gt;alert(1)&lt;/script&gt;" in s for s in svgs)
    data = json.loads(render_json(report))
    tensors = data["sections"][1]["blocks"][0]["records"]
    assert tensors[3]["tensor"] == EVIL  # JSON keeps the real name (it is data, not markup)


def test_json_numbers_equal_the_frame(report, frame):
    data = json.loads(render_json(report))
    records = data["sections"][1]["blocks"][0]["records"]
    assert [r["excess_kurtosis"] for r in records[:5]] == list(frame["excess_kurtosis"][:5])
    assert records[5]["excess_kurtosis"] is None  # the constant tensor: NaN -> null
    assert records[0]["shape"] == [48, 160]


def test_frame_iv(tensors, frame):
    with pytest.raises(InputDataError, match=r"lacks columns \['verdict'\]"):
        checkpoint_sections(frame.drop(columns="verdict"), tensors.__getitem__)
    with pytest.raises(InputDataError, match="must be the DataFrame"):
        checkpoint_sections({"tensor": []}, tensors.__getitem__)
    with pytest.raises(InputDataError, match="`values` must be a function"):
        checkpoint_sections(frame, tensors)


def test_unreadable_tensor_is_reported_not_fatal(frame, tensors):
    def values(name):
        if name == "fc2.weight":
            raise CheckpointError("`fc2.weight` is truncated")
        return tensors[name]

    sections = checkpoint_sections(frame.iloc[[1, 2]], values, rng=0)  # fc1.bias, fc2.weight
    blocks = _section(sections, "evidence").blocks
    assert [b.title for b in blocks[:-1]] == ["fc1.bias"]
    assert blocks[-1].title == "Tensors that could not be drawn"
    assert blocks[-1].paragraphs == ("fc2.weight: `fc2.weight` is truncated",)


def test_no_analysed_tensor(frame, tensors):
    only = frame[frame["status"] != "analyzed"]
    sections = checkpoint_sections(only, tensors.__getitem__)
    head = _section(sections, "answer").blocks[0]
    assert head.answer.startswith("No tensor could be analysed")
    assert render_html(
        __import__("weightstats.report.model", fromlist=["x"]).build_report("t", sections)
    )


def test_200_tensor_table_renders_small(rng):
    frame, values = big_frame(200, rng)
    sections = checkpoint_sections(frame, values, max_tensors=0, rng=0)
    from weightstats.report.model import build_report

    html = render_html(build_report("big", sections))
    # 200 tensor rows + header, and two 3-row summaries (all, weights, biases) + headers
    assert html.count("<tr>") == 200 + 1 + 2 * (3 + 1)
    assert len(html.encode()) < 2_000_000


def test_engine_spellings_of_status_and_shape(frame, tensors):
    # analyze_checkpoint writes status 'analysed' and shapes as text '[48, 160]'
    engine_like = frame.assign(
        status=frame["status"].replace({"analyzed": "analysed"}),
        shape=[str(list(s)) for s in frame["shape"]],
    ).iloc[[0, 5]]
    sections = checkpoint_sections(engine_like, tensors.__getitem__, rng=0)
    head = _section(sections, "answer").blocks[0]
    assert head.numbers[0].value == 1  # fc1.weight analysed, fc3.bias degenerate
    grid = _section(sections, "evidence").blocks[0]
    assert len(grid.figures) == 4  # the text shape still gives the row-standardised view
    html = render_html(
        __import__("weightstats.report.model", fromlist=["x"]).build_report("t", sections)
    )
    assert "48\u00d7160" in html


def test_rows_follow_the_output_axis():
    from weightstats.report.sections.checkpoint import _rows

    w = np.arange(6 * 10, dtype=float).reshape(6, 10)  # PyTorch: (out, in)
    torch_row = pd.Series({"shape": "[6, 10]", "fan_in": 10.0})
    np.testing.assert_array_equal(_rows(w.reshape(-1), torch_row), w)
    k = w.T.copy()  # Keras: (in, out); fan-in 10 matches only the first axis
    keras_row = pd.Series({"shape": (10, 6), "fan_in": 10.0})
    np.testing.assert_array_equal(_rows(k.reshape(-1), keras_row), w)
    explicit = pd.Series({"shape": (10, 6), "fan_in": math.nan, "out_axis": -1})
    np.testing.assert_array_equal(_rows(k.reshape(-1), explicit), w)
    assert _rows(np.zeros(12), pd.Series({"shape": (12,), "fan_in": math.nan})) is None
    assert _rows(np.zeros(12), pd.Series({"shape": (6, 2), "fan_in": 2.0})) is None  # rows < 8
