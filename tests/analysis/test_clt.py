"""Tests of the CLT analysis: kernels against scipy/statsmodels, verdicts on synthetic truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from helpers import importorskip
from scipy import stats

from weightstats.analysis._clt_stats import (
    FLOOR_FACTOR,
    fit_kurtosis_decay,
    hill_tail_index,
    integrated_autocorrelation_time,
    kurtosis_curve,
    pooled_acf,
    row_excess_kurtosis,
    trajectory_diagnostics,
)
from weightstats.analysis._clt_verdict import CLT_LABELS, decide_clt
from weightstats.analysis.clt import analyze_clt, analyze_clt_arrays
from weightstats.errors import InputDataError

T, C = 200, 2048


def _ar1(phi: float, innovations: np.ndarray) -> np.ndarray:
    u = np.empty_like(innovations)
    u[0] = innovations[0]
    for s in range(1, innovations.shape[0]):
        u[s] = phi * u[s - 1] + innovations[s]
    return u


def _run(rng, kind: str, *, init_scale: float = 0.01):
    """A synthetic run: W_0 ~ U(-a, a) of C entries and T recorded updates of every entry."""
    w0 = rng.uniform(-init_scale, init_scale, size=C)
    if kind == "gaussian":
        u = rng.normal(size=(T, C))
    elif kind == "sign":
        u = rng.choice([-1.0, 1.0], size=(T, C))
    elif kind == "t2.5":
        u = rng.standard_t(2.5, size=(T, C))
    elif kind == "autocorrelated":
        u = _ar1(0.9, rng.choice([-1.0, 1.0], size=(T, C)))
    elif kind == "tiny":
        w0 = rng.uniform(-1.0, 1.0, size=C)
        u = 1e-4 * rng.normal(size=(T, C))
    elif kind == "scale-mixture":
        u = rng.normal(size=(T, C)) * np.exp(rng.normal(size=C))
    else:  # pragma: no cover
        raise ValueError(kind)
    return w0, w0 + u.sum(axis=0), u


# --------------------------------------------------------------------------- kernels


def test_row_excess_kurtosis_against_scipy(rng):
    x = rng.standard_t(6, size=(5, 300))
    # reference: scipy.stats.kurtosis(fisher=True, bias=True), the same biased moment ratio
    np.testing.assert_allclose(row_excess_kurtosis(x), stats.kurtosis(x, axis=1), rtol=1e-12)


def test_pooled_acf_against_statsmodels_single_series(rng):
    tsa = importorskip("statsmodels.tsa.stattools")
    x = _ar1(0.6, rng.normal(size=(500, 1)))[:, 0]
    # reference: statsmodels acovf(demean=False, adjusted=False), the biased autocovariance,
    # normalised by lag 0 (statsmodels' acf() always demeans, so it is not the same estimator)
    cov = tsa.acovf(x, nlag=10, demean=False, adjusted=False, fft=False)
    ref = cov / cov[0]
    np.testing.assert_allclose(pooled_acf(x, 10), ref, rtol=1e-10)


@pytest.mark.parametrize("phi", [0.0, 0.5, 0.9])
def test_integrated_autocorrelation_time_recovers_ar1(rng, phi):
    u = _ar1(phi, rng.normal(size=(400, 256)))
    d = trajectory_diagnostics(None, u, max_lag=100)
    truth = (1 + phi) / (1 - phi)  # AR(1): tau = 1 + 2 sum phi^k
    assert d.tau == pytest.approx(truth, rel=0.15)
    assert d.acf[0] == pytest.approx(phi, abs=0.03)


def test_integrated_autocorrelation_time_flags_truncation():
    tau, truncated = integrated_autocorrelation_time(np.ones(6))
    assert truncated and tau == pytest.approx(11.0)  # -1 + 2 * (3 pairs of 1 + 1)
    tau, truncated = integrated_autocorrelation_time(np.array([1.0, -0.5, 0.2, -0.8]))
    assert not truncated


def test_hill_tail_index_recovers_pareto(rng):
    x = rng.pareto(3.0, size=200_000) + 1.0  # Pareto with tail index 3
    assert hill_tail_index(x, k=2000) == pytest.approx(3.0, rel=0.08)
    assert hill_tail_index(np.r_[np.ones(100), -np.ones(100)], k=50) == np.inf


def test_kurtosis_curve_prediction_is_kappa1_over_n_for_equal_spread():
    # +-1 updates with exactly equal counts per step: every step has kurtosis -2, variance 1.
    u = np.tile(np.r_[np.ones(512), -np.ones(512)], (30, 1))
    curve = kurtosis_curve(None, u)
    np.testing.assert_allclose(curve["predicted_iid"], -2.0 / curve["n"])
    np.testing.assert_allclose(curve["predicted_independent"], -2.0 / curve["n"])
    assert curve["noise_floor"].iloc[0] == pytest.approx(np.sqrt(24 / 1024))


def test_kurtosis_curve_prediction_allows_drifting_spread(rng):
    # Independent steps whose spread grows: cumulants add, so the prediction is exact in
    # expectation; check the formula against the direct cumulant sum.
    scales = np.linspace(1, 3, 40)[:, None]
    u = rng.laplace(size=(40, 4096)) * scales
    curve = kurtosis_curve(None, u)
    k, v = stats.kurtosis(u, axis=1), u.var(axis=1)
    expected = np.cumsum(k * v**2) / np.cumsum(v) ** 2
    np.testing.assert_allclose(curve["predicted_independent"], expected, rtol=1e-10)


def test_fit_kurtosis_decay_exact_power_law():
    n = np.arange(1, 101)
    curve = pd.DataFrame({"n": n, "kurtosis": 5.0 * n**-1.0, "predicted_iid": 5.0 / n,
                          "predicted_independent": 5.0 / n, "noise_floor": 0.01})
    d = fit_kurtosis_decay(curve)
    assert d.slope == pytest.approx(-1.0, abs=1e-9)
    assert d.fit_last == 100  # 5/n > 3 x 0.01 up to n = 166: the floor is never reached
    assert "never reached the noise floor" in d.note


def test_fit_kurtosis_decay_stops_at_noise_floor():
    n = np.arange(1, 201)
    curve = pd.DataFrame({"n": n, "kurtosis": 2.0 / n, "predicted_iid": 2.0 / n,
                          "predicted_independent": 2.0 / n, "noise_floor": 0.01})
    d = fit_kurtosis_decay(curve)
    assert d.fit_last == 66  # 2/n > 0.03 for n <= 66
    assert d.slope == pytest.approx(-1.0, abs=1e-9)


def test_trajectories_iv():
    with pytest.raises(InputDataError, match="`updates` must have shape"):
        trajectory_diagnostics(None, np.zeros(10))
    with pytest.raises(InputDataError, match="at least 4 are needed"):
        trajectory_diagnostics(None, np.zeros((2, 100)))
    with pytest.raises(InputDataError, match="non-finite"):
        trajectory_diagnostics(None, np.full((10, 100), np.nan))
    with pytest.raises(InputDataError, match="`steps` has 3 values"):
        trajectory_diagnostics([1, 2, 3], np.zeros((10, 100)))
    with pytest.raises(InputDataError, match="strictly increasing"):
        trajectory_diagnostics(np.r_[np.arange(9), 3], np.ones((10, 100)))


# --------------------------------------------------------------------------- synthetic truth


@pytest.mark.parametrize(
    "kind, label",
    [
        ("gaussian", "clt-accumulation"),
        ("sign", "clt-accumulation"),
        ("t2.5", "heavy-tailed-updates"),
        ("autocorrelated", "clt-accumulation"),
        ("tiny", "inherited-from-init"),
        ("scale-mixture", "structured"),
    ],
)
def test_verdict_on_synthetic_runs(rng, kind, label):
    w0, wt, u = _run(rng, kind)
    res = analyze_clt_arrays(w0, wt, updates=u, coords=np.arange(C), tensor=kind, rng=rng)
    assert res.verdict.label == label, res.verdict.reason
    assert res.trajectory_sum_error == pytest.approx(0.0, abs=1e-9)


def test_sign_updates_converge_at_rate_one_over_n(rng):
    w0, wt, u = _run(rng, "sign")
    d = analyze_clt_arrays(w0, wt, updates=u, rng=rng).trajectory.decay
    assert d.kappa1 == pytest.approx(-2.0, abs=0.01)  # +-1 has excess kurtosis -2
    assert -1.25 < d.slope < -0.75
    assert d.n_fit_points >= 4


def test_t25_updates_do_not_decay_like_one_over_n(rng):
    w0, wt, u = _run(rng, "t2.5")
    d = analyze_clt_arrays(w0, wt, updates=u, rng=rng).trajectory
    assert d.tail_index < 4
    # the sample kurtosis after T steps is far above kappa_1 / T's noise-floor range
    assert d.decay.final_kurtosis > FLOOR_FACTOR * d.decay.noise_floor


def test_autocorrelated_updates_have_small_n_eff(rng):
    w0, wt, u = _run(rng, "autocorrelated")
    res = analyze_clt_arrays(w0, wt, updates=u, rng=rng)
    ratio = res.trajectory.n_eff / T
    assert ratio == pytest.approx((1 - 0.9) / (1 + 0.9), rel=0.3)  # AR(1) truth 0.053
    assert "n_eff" in res.verdict.reason


def test_independent_updates_have_n_eff_near_t(rng):
    w0, wt, u = _run(rng, "gaussian")
    tr = analyze_clt_arrays(w0, wt, updates=u, rng=rng).trajectory
    assert tr.n_eff == pytest.approx(T, rel=0.15)
    assert abs(tr.acf[0]) < 0.02
    assert tr.spread_ratio == pytest.approx(1.0, abs=0.05)
    assert abs(tr.scale_persistence) < 0.1


def test_pair_marks_trajectory_parts_unavailable(rng):
    w0, wt, _ = _run(rng, "gaussian")
    res = analyze_clt(({"layer.weight": w0.reshape(32, 64)}, {"layer.weight": wt.reshape(32, 64)}))
    row = res.summary.iloc[0]
    assert row["trajectory_status"].startswith("unavailable")
    assert np.isnan(row["n_eff"]) and np.isnan(row["decay_slope"])
    assert row["verdict"] == "undetermined"
    assert "trajectories" in row["reason"]
    assert res.curves.empty and res.acf.empty


def test_pair_tiny_update_is_inherited(rng):
    w0, wt, _ = _run(rng, "tiny")
    res = analyze_clt(({"w": w0.reshape(32, 64)}, {"w": wt.reshape(32, 64)}))
    assert res.summary.loc[0, "verdict"] == "inherited-from-init"
    assert res.summary.loc[0, "relative_change"] < 0.01
    assert res.summary.loc[0, "init_variance_share"] > 0.99


def test_decomposition_numbers_against_numpy(rng):
    w0 = rng.normal(size=1000)
    wt = w0 + 0.5 * rng.normal(size=1000)
    res = analyze_clt_arrays(w0, wt, rng=rng)
    dec = res.decomposition
    assert dec.relative_change == pytest.approx(np.linalg.norm(wt - w0) / np.linalg.norm(w0))
    assert dec.corr_init_final == pytest.approx(stats.pearsonr(w0, wt).statistic)
    assert dec.init_variance_share == pytest.approx(dec.corr_init_final**2)


def test_analyze_clt_iv(rng):
    with pytest.raises(InputDataError, match="`w0` has 100 entries but `wt` has 99"):
        analyze_clt_arrays(rng.normal(size=100), rng.normal(size=99))
    with pytest.raises(InputDataError, match="`source` must be"):
        analyze_clt(42)
    with pytest.raises(InputDataError, match="no tensor to analyse"):
        analyze_clt(({"b": np.ones(10)}, {"b": np.ones(10)}))
    with pytest.raises(InputDataError, match="`coords` must hold"):
        analyze_clt_arrays(rng.normal(size=64), rng.normal(size=64),
                           updates=rng.normal(size=(10, 16)), coords=np.arange(8))


def test_decide_clt_labels_are_known():
    assert decide_clt({})  .label in CLT_LABELS
    assert decide_clt({"init_variance_share": 0.1, "relative_change": 3.0,
                       "has_trajectories": False, "label_update": "mixture"}).label == "structured"
    v = decide_clt({"init_variance_share": 0.1, "relative_change": 3.0,
                    "has_trajectories": False, "label_update": "heavy-tailed"})
    assert v.label == "heavy-tailed-updates"
    assert decide_clt({"init_variance_share": 0.5, "relative_change": 0.0}).label == "undetermined"


def test_frozen_coordinates_are_counted_and_left_out_of_dws_shape(rng):
    # 15% of the coordinates never receive a gradient (dead input pixels): their dW is exactly 0
    w0, wt, u = _run(rng, "gaussian")
    frozen = rng.random(C) < 0.15
    u[:, frozen] = 0.0
    wt = w0 + u.sum(axis=0)
    res = analyze_clt_arrays(w0, wt, updates=u, coords=np.arange(C), rng=rng,
                             families=("normal", "laplace", "t"))
    row = res.evidence()
    assert row["frozen_share_update"] == pytest.approx(frozen.mean(), abs=1e-12)
    upd = res.components.set_index("component").loc["update"]
    assert upd["n"] == C - frozen.sum()  # described on the coordinates that moved
    # the moved part is a sum of 200 Gaussian steps: Gaussian, not a point mass + Gaussian
    assert upd["label"] == "gaussian", upd["reason"]
    assert abs(upd["excess_kurtosis"]) < 0.5
    # and the trajectories are judged on the moving coordinates: independent Gaussian steps
    assert res.trajectory.n_coords == C - frozen.sum()
    assert res.verdict.label == "clt-accumulation", res.verdict.reason
    assert res.trajectory_sum_error == pytest.approx(0.0, abs=1e-9)  # checked on all coords
    none = analyze_clt_arrays(*_run(rng, "gaussian")[:2], rng=rng, families=("normal",))
    assert none.evidence()["frozen_share_update"] == 0.0
