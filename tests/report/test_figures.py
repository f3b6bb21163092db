"""Figures: each function draws, encodes to SVG, and keeps untrusted names as escaped text."""

from __future__ import annotations

import numpy as np
import pytest
from report._synthetic import EVIL
from scipy import stats as sps

from weightstats.report import figures as F
from weightstats.report.sections import _engine


def _svg(fig) -> str:
    out = F.encode(fig, key="k", title="t")
    assert out.mime == "image/svg+xml"
    text = out.data.decode("utf-8")
    assert text.lstrip().startswith("<?xml") and "<svg" in text
    return text


def test_plain_neutralises_mathtext_and_bounds_length():
    assert F.plain("a$b$c") == r"a\$b\$c"
    assert F.plain("a\\b") == "a\\b"
    assert F.plain("x" * 100, limit=10) == "x" * 9 + "\u2026"
    assert F.plain("a\nb") == "a\ufffdb"


def test_tensor_figures_escape_names(rng):
    name = EVIL + " $x^{2}$ a\\b"  # markup, mathtext and a backslash in one name
    x = rng.normal(0.0, 0.1, size=3000)
    figs = [
        F.histogram_figure(x, name=name, curves=[("normal", sps.norm(0, 0.1).pdf, "k", "--")]),
        F.qq_figure(x, name=name, loc=0.0, scale=0.1),
        F.survival_figure(_engine.tail_sides(x, 0.0, 0.1)[0], name=name),
        F.rowwise_figure(x / 0.1, x / 0.1, name=name),
    ]
    for fig in figs:
        svg = _svg(fig)
        assert "<script" not in svg
        assert "&lt;script&gt;alert(1)&lt;/script&gt; \\$x^{2}\\$" not in svg  # no TeX escapes left
        assert "&lt;script&gt;alert(1)&lt;/script&gt; $x^{2}$ a\\b" in svg


def test_model_figures(frame):
    d = frame[frame["status"] == "analyzed"].assign(
        role=lambda f: f["role"].where(f["tensor"] != "fc1.bias", EVIL)
    )
    for fig in (
        F.depth_figure(d, "excess_kurtosis", ylabel="k"),
        F.verdict_strip_figure(d),
        F.kurtosis_fan_in_figure(d),
    ):
        svg = _svg(fig)
        assert "<script" not in svg


def test_qq_points_follow_the_diagonal_for_normal_data(rng):
    x = rng.normal(2.0, 3.0, size=20000)
    fig = F.qq_figure(x, name="n", loc=2.0, scale=3.0)
    theo, sample = fig.axes[0].lines[0].get_data()
    inner = np.abs(theo) < 2.5
    assert np.max(np.abs(sample[inner] - theo[inner])) < 0.1
    # both tails are sampled densely: the extreme order statistics are drawn
    assert sample.min() == pytest.approx((x.min() - 2.0) / 3.0)
    assert sample.max() == pytest.approx((x.max() - 2.0) / 3.0)


def test_survival_figure_draws_the_engine_tail(rng):
    x = rng.standard_t(3, size=50_000)
    sides, values = _engine.tail_sides(x, 0.0, float(x.std()))
    fig = F.survival_figure(sides, name="t3")
    labels = [line.get_label() for line in fig.axes[0].lines]
    assert any(label.startswith("right power law, index ") for label in labels)
    # Student t with 3 degrees of freedom has survival exponent 3 (tails.py docstring)
    assert 2.3 < values["right"]["tail_index"] < 3.7
    assert 2.3 < values["left"]["tail_index"] < 3.7


def test_histogram_density_matches_numpy(rng):
    x = rng.normal(size=5000)
    fig = F.histogram_figure(x, name="n", curves=[], bins=40)
    stairs = fig.axes[0].patches[0]
    dens, edges = np.histogram(
        x,
        bins=np.linspace(x.min() - 0.02 * np.ptp(x), x.max() + 0.02 * np.ptp(x), 41),
        density=True,
    )
    np.testing.assert_allclose(stairs.get_data().values, dens)
    np.testing.assert_allclose(stairs.get_data().edges, edges)


def test_verdict_colours_match_the_css():
    from importlib.resources import files

    css = files("weightstats").joinpath("report/templates/report.css").read_text()
    for verdict, colour in F.VERDICT_COLORS.items():
        css_var = {
            "heavy-tailed": "heavy",
            "scale-mixture": "scalemix",
            "light-tailed": "light",
        }.get(verdict, verdict)
        assert f"--{css_var}: {colour};" in css
