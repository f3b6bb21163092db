"""fit() and fit_families(): result objects, ranking, subsampling, input validation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from weightstats.errors import DegenerateDataWarning, InputDataError
from weightstats.stats.fit import ALL_FAMILIES, FIT_COLUMNS, FitResult, fit, fit_families


@pytest.fixture
def heavy(rng):
    return 0.05 * rng.standard_t(4, 4000)


def test_fit_result_fields(heavy):
    r = fit(heavy, "t")
    assert isinstance(r, FitResult) and r.family == "t" and r.n == heavy.size
    assert list(r.params) == ["df", "loc", "scale"] and r.n_params == 3
    assert r.aic == pytest.approx(-2 * r.loglik + 6)
    assert r.bic == pytest.approx(-2 * r.loglik + 3 * np.log(heavy.size))
    # .dist() is scipy's frozen t; its logpdf sums to the reported log-likelihood.
    assert r.dist().dist.name == "t"
    assert r.loglik == pytest.approx(stats.t.logpdf(heavy, *r.params.values()).sum(), rel=1e-10)
    assert r.loglik == pytest.approx(r.logpdf(heavy).sum(), rel=1e-10)
    d = r.to_dict()
    assert d["family"] == "t" and d["n_params"] == 3 and d["params"] == r.params
    text = repr(r)
    assert text.startswith("FitResult(family='t', params=(df=") and len(text) < 200
    with pytest.raises(AttributeError):
        r.loglik = 0.0


def test_fit_gmm_result(rng):
    x = np.concatenate([rng.normal(-1, 0.2, 1500), rng.normal(1, 0.2, 1500)])
    r = fit(x, "gmm", rng=0)
    assert r.n_params == 5 and set(r.params) == {"weight_1", "mean_1", "sd_1",
                                                  "weight_2", "mean_2", "sd_2"}
    d = r.dist()
    for method in ("pdf", "logpdf", "cdf", "sf", "rvs", "mean", "var"):
        assert callable(getattr(d, method))
    assert r.loglik == pytest.approx(r.logpdf(x).sum(), rel=1e-10)
    assert d.mean() == pytest.approx(x.mean(), abs=1e-6)
    assert "k=2 chosen by BIC" in r.message
    assert fit(x, "gmm", rng=5).loglik == pytest.approx(r.loglik, rel=1e-9)


def test_fit_families_frame(heavy):
    frame = fit_families(heavy, rng=0)
    assert list(frame.columns) == FIT_COLUMNS
    assert sorted(frame["family"]) == sorted(ALL_FAMILIES)
    assert frame["bic"].is_monotonic_increasing
    assert frame["delta_bic"].iloc[0] == 0.0 and (frame["delta_bic"] >= 0).all()
    assert frame["akaike_weight"].sum() == pytest.approx(1.0)
    assert (frame["n"] == heavy.size).all() and (frame["n_used"] == heavy.size).all()
    assert frame["family"].iloc[0] in {"t", "gmm"}  # data are t(4)
    assert isinstance(frame["params"].iloc[0], dict)
    assert type(frame) is pd.DataFrame
    # Every row agrees with fit() on the same data.
    lap = frame.set_index("family").loc["laplace"]
    assert lap["loglik"] == pytest.approx(fit(heavy, "laplace").loglik)


def test_fit_families_max_samples(heavy):
    a = fit_families(heavy, ["normal", "t"], max_samples=1000, rng=3)
    b = fit_families(heavy, ["normal", "t"], max_samples=1000, rng=3)
    pd.testing.assert_frame_equal(a, b)
    assert (a["n"] == heavy.size).all() and (a["n_used"] == 1000).all()
    c = fit_families(heavy, ["normal"], max_samples=10**6, rng=3)
    assert c["n_used"].iloc[0] == heavy.size


def test_fit_iv():
    with pytest.raises(InputDataError, match="`family` must be one of"):
        fit([1.0, 2, 3, 4, 5, 6, 7, 8], "gaussian")
    with pytest.raises(InputDataError, match="constant"):
        fit(np.full(20, 0.5), "normal")
    with pytest.raises(InputDataError, match="non-finite"):
        fit([1.0, 2, 3, 4, 5, 6, 7, np.nan, 9], "normal")
    with pytest.raises(InputDataError, match="at least 8"):
        fit([1.0, 2.0, 3.0], "t")
    with pytest.raises(InputDataError, match="empty"):
        fit([], "normal")
    with pytest.raises(InputDataError, match="nan_policy"):
        fit([1.0, 2, 3, 4, 5, 6, 7, 8], "normal", nan_policy="drop")


def test_fit_families_iv(heavy):
    with pytest.raises(InputDataError, match="`family` must be one of"):
        fit_families(heavy, ["normal", "cauchy"])
    with pytest.raises(InputDataError, match="empty"):
        fit_families(heavy, [])
    with pytest.raises(InputDataError, match="twice"):
        fit_families(heavy, ["t", "t"])
    with pytest.raises(InputDataError, match="max_samples"):
        fit_families(heavy, max_samples=0)


def test_fit_nan_omit_float16_int_torch(rng):
    x = rng.normal(0, 1, 500)
    assert fit(np.append(x, [np.nan, np.inf]), "normal", nan_policy="omit").n == 500
    r16 = fit(x.astype(np.float16), "t")
    assert r16.n == 500 and np.isfinite(r16.loglik)
    with pytest.warns(DegenerateDataWarning, match="exact zeros"):  # rounding makes zeros
        ri = fit(np.round(10 * x).astype(np.int64), "laplace")
    assert ri.params["scale"] > 0
    rt = fit(torch.tensor(x, dtype=torch.bfloat16), "gennorm")
    assert rt.n == 500 and np.isfinite(rt.loglik)


def test_fit_warns_on_point_mass_of_zeros(rng):
    x = np.concatenate([np.zeros(300), rng.normal(0, 1, 700)])  # 30% pruned
    with pytest.warns(DegenerateDataWarning, match="300 exact zeros"):
        fit(x, "laplace")
    with pytest.warns(DegenerateDataWarning, match="x\\[x != 0\\]"):
        fit_families(x, ["normal"])


def test_fit_families_gennorm_nests_laplace_and_normal_on_skewed_data(rng):
    # gennorm contains laplace (beta = 1) and normal (beta = 2), so its maximum cannot be
    # lower; on strongly skewed data its loc lies near the mode, far from the median.
    x = rng.lognormal(0.0, 2.0, 4000)
    frame = fit_families(x, ["normal", "laplace", "gennorm"]).set_index("family")
    assert frame.loc["gennorm", "loglik"] >= frame.loc["laplace", "loglik"] - 1e-6
    assert frame.loc["gennorm", "loglik"] >= frame.loc["normal", "loglik"] - 1e-6
    # Reference: scipy.stats.gennorm.fit's maximum (Nelder-Mead), to 1e-6 per value.
    ref = stats.gennorm.logpdf(x, *stats.gennorm.fit(x)).sum()
    assert frame.loc["gennorm", "loglik"] >= ref - 1e-6 * x.size


def test_fit_families_keeps_going_when_one_family_fails(monkeypatch, rng):
    # A fitter that hits a math domain error (a scale driven to 0 by a point mass, say) becomes
    # a row that says so; the other families are still compared, and fit() raises FitError.
    import dataclasses

    from weightstats.errors import FitError
    from weightstats.stats import families

    def broken(x):
        raise ValueError("math domain error")

    monkeypatch.setitem(families.FAMILIES, "t",
                        dataclasses.replace(families.FAMILIES["t"], fitter=broken))
    x = rng.normal(size=2000)
    frame = fit_families(x, ["normal", "t", "laplace"])
    failed = frame.set_index("family").loc["t"]
    assert not failed["converged"] and failed["loglik"] == -np.inf
    assert failed["akaike_weight"] == 0.0 and "math domain error" in failed["message"]
    assert list(frame["family"])[-1] == "t" and frame["akaike_weight"].sum() == pytest.approx(1.0)
    with pytest.raises(FitError, match="the t fit broke down"):
        fit(x, "t")
