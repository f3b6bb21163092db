"""Tests for weightstats.stats.verdict: the documented rule and a fast calibration."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest

from weightstats.errors import InputDataError
from weightstats.stats.normality import effect_sizes
from weightstats.stats.verdict import (
    DIP_MAX,
    LABELS,
    ShapeVerdict,
    classify_shape,
    decide_shape,
    empirical_dip,
    may_have_two_modes,
    mixture_separation,
    shape_verdict,
)


def _draw(kind: str, n: int, gen: np.random.Generator) -> np.ndarray:
    if kind == "normal":
        return gen.normal(1.0, 3.0, n)
    if kind == "t5":
        return gen.standard_t(5, n)
    if kind == "laplace":
        return gen.laplace(size=n)
    if kind == "uniform":
        return gen.uniform(-1, 1, n)
    if kind == "mixture":  # 0.5 N(-2, 1) + 0.5 N(2, 1)
        return np.where(gen.random(n) < 0.5, -2.0, 2.0) + gen.normal(size=n)
    if kind == "lognormal":
        return gen.lognormal(0.0, 0.5, n)
    raise AssertionError(kind)


EXPECTED = {
    "normal": "gaussian",
    "t5": "heavy-tailed",
    "laplace": "heavy-tailed",
    "uniform": "light-tailed",
    "mixture": "mixture",
    "lognormal": "skewed",
}


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_classify_shape_calibration_fast(kind):
    # fast version of bench/verdict_calibration.py: 2 seeds at n = 10^5 per family (the
    # mixture on a 3,000-value subsample to keep it fast; the full run uses the default)
    for seed in range(2):
        x = _draw(kind, 100_000, np.random.default_rng(seed))
        verdict = classify_shape(x, rng=seed, mixture_max_n=3_000)
        assert verdict.label == EXPECTED[kind], verdict.reason


@pytest.mark.parametrize("kind", ["normal", "uniform", "mixture", "laplace"])
def test_classify_shape_small_n(kind):
    # at n = 1,000 the confidence intervals keep Gaussian samples gaussian
    x = _draw(kind, 1000, np.random.default_rng(100))
    assert classify_shape(x, rng=0).label == EXPECTED[kind]


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(EXPECTED))
def test_classify_shape_small_n_more_seeds(kind):
    for seed in range(1, 6):
        x = _draw(kind, 1000, np.random.default_rng(100 + seed))
        assert classify_shape(x, rng=seed).label == EXPECTED[kind]


def test_classify_shape_is_seeded_and_explained(rng):
    x = _draw("mixture", 2_000, rng)
    a, b = classify_shape(x, rng=3), classify_shape(x, rng=3)
    assert a == b
    assert isinstance(a, ShapeVerdict) and a.label in LABELS
    assert "Ashman's D" in a.reason and a.mixture_k >= 2
    assert a.mixture_dip <= DIP_MAX and a.mixture_ashman_d >= 2
    assert repr(a).startswith("ShapeVerdict(label='mixture'")
    d = a.to_dict()
    assert d["label"] == "mixture" and "excess_kurtosis" in d and "effects" not in d


def test_classify_shape_degenerate_does_not_raise():
    v = classify_shape(np.full(100, 0.5))
    assert v.label == "degenerate" and "equal" in v.reason
    v = classify_shape([1.0, 2.0, 3.0])
    assert v.label == "degenerate" and "at least 8" in v.reason
    with pytest.raises(InputDataError):
        classify_shape([])  # empty input is an error, not a shape
    with pytest.raises(InputDataError, match="`k_max`"):
        classify_shape(np.arange(20.0), k_max=0)
    with pytest.raises(InputDataError, match="`fit_mixture`"):
        classify_shape(np.arange(20.0), fit_mixture="never")


@dataclass
class _Mix:  # the fields decide_shape reads from a MixtureFit
    k: int
    weights: np.ndarray
    means: np.ndarray
    sds: np.ndarray


def test_decide_shape_rule_is_pure_and_uses_the_evidence(rng):
    x = rng.normal(size=5000)
    eff = effect_sizes(x)
    assert decide_shape(eff).label == "gaussian"
    assert decide_shape(eff, None) == decide_shape(eff)
    separated = _Mix(2, np.array([0.5, 0.5]), np.array([-2.0, 2.0]), np.array([1.0, 1.0]))
    assert decide_shape(eff, separated).label == "mixture"
    # the same mixture evidence is overruled when the data have no valley there
    assert decide_shape(eff, separated, empirical_dip=0.95).label == "gaussian"
    # a scale mixture (what BIC picks for a t) has one mode: not a mixture
    scale = _Mix(2, np.array([0.7, 0.3]), np.array([0.0, 0.0]), np.array([0.8, 2.0]))
    assert decide_shape(eff, scale).label == "gaussian"
    assert math.isnan(decide_shape(eff, scale).mixture_dip)


def test_mixture_separation_against_closed_form():
    # 0.5 N(-2,1) + 0.5 N(2,1): valley at 0 with density phi(2); peaks near +-2 (slightly inside)
    sep = mixture_separation([0.5, 0.5], [-2.0, 2.0], [1.0, 1.0])
    from scipy import optimize, stats

    def dens(t):
        return 0.5 * stats.norm.pdf(t, -2, 1) + 0.5 * stats.norm.pdf(t, 2, 1)

    peak = optimize.minimize_scalar(lambda t: -dens(t), bounds=(1, 3), method="bounded").x
    assert sep.valley == pytest.approx(0.0, abs=0.01)
    assert sep.dip == pytest.approx(dens(0.0) / dens(peak), rel=1e-4)
    assert sep.ashman_d == pytest.approx(4.0)
    assert sep.minor_weight == pytest.approx(0.5, abs=1e-3)
    # two components 1 sd apart are unimodal
    assert math.isnan(mixture_separation([0.5, 0.5], [0.0, 1.0], [1.0, 1.0]).dip)


def test_empirical_dip_flat_vs_bimodal(rng):
    sep = mixture_separation([0.5, 0.5], [-0.5, 0.5], [0.289, 0.289])  # a 2-part uniform fit
    assert sep.dip < 0.5  # the fitted density alone would suggest two modes...
    flat = np.sort(rng.uniform(-1, 1, 50_000))
    assert empirical_dip(flat, sep) == pytest.approx(1.0, abs=0.1)  # ...the data do not
    bim = np.sort(_draw("mixture", 50_000, rng))
    sep2 = mixture_separation([0.5, 0.5], [-2.0, 2.0], [1.0, 1.0])
    assert empirical_dip(bim, sep2) == pytest.approx(sep2.dip, abs=0.05)


def _z(x):
    return np.sort((x - x.mean()) / x.std(ddof=1))


@pytest.mark.parametrize("kind", ["normal", "t5", "laplace", "uniform", "lognormal"])
def test_may_have_two_modes_unimodal_large_samples(kind):
    # smooth unimodal (or flat) data at 10^5 values: no valley at any scale, no mixture fit
    x = _draw(kind, 100_000, np.random.default_rng(1))
    assert not may_have_two_modes(_z(x))
    v = classify_shape(x, rng=0)
    assert v.label == EXPECTED[kind] and v.mixture_k is None
    assert "no mixture was fitted" in v.reason
    assert shape_verdict(x, rng=0) == v.label


def test_may_have_two_modes_bimodal_and_small(rng):
    assert may_have_two_modes(_z(_draw("mixture", 100_000, rng)))
    # a minor mode of 10 % far out, invisible to the moments' signs
    x = np.where(
        rng.random(100_000) < 0.9, rng.normal(size=100_000), 5 + 0.5 * rng.normal(size=100_000)
    )
    assert may_have_two_modes(_z(x))
    assert classify_shape(x, rng=0, mixture_max_n=3_000).label == "mixture"
    # below 200 values the counts are noise: always fit
    assert may_have_two_modes(_z(rng.normal(size=150)))


@pytest.mark.slow
def test_classify_shape_gate_does_not_change_labels():
    # 'auto' skips the fit only where the rule could not say 'mixture': same labels as 'always'
    for kind in ("normal", "uniform", "mixture"):
        x = _draw(kind, 30_000, np.random.default_rng(9))
        auto = classify_shape(x, rng=1, mixture_max_n=2_000)
        always = classify_shape(x, rng=1, mixture_max_n=2_000, fit_mixture="always")
        assert auto.label == always.label == EXPECTED[kind]
