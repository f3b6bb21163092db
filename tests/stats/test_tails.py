"""Tests for weightstats.stats.tails: Hill + Clauset KS threshold, Vuong comparisons."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from weightstats.errors import DegenerateDataWarning, InputDataError
from weightstats.stats.tails import TAIL_COLUMNS, hill_estimator, tail_summary


def _symmetric_pareto(gen, n, a):
    """Half N(0, 0.5) body, half Pareto(a, xmin=1) tails on both sides: median ~ 0."""
    body = gen.normal(0.0, 0.5, n // 2)
    tail = (gen.pareto(a, n - n // 2) + 1.0) * gen.choice([-1.0, 1.0], n - n // 2)
    return np.concatenate([body, tail])


def test_tail_summary_recovers_pareto_index():
    gen = np.random.default_rng(1)
    table = tail_summary(_symmetric_pareto(gen, 200_000, 2.5))
    assert list(table.columns) == TAIL_COLUMNS
    assert list(table["side"]) == ["left", "right"]
    for row in table.itertuples():
        assert row.tail_index == pytest.approx(2.5, rel=0.10)
        assert row.tail_index_se == pytest.approx(row.tail_index / math.sqrt(row.n_tail))
        # the power law beats an exponential tail decisively
        assert row.vs_exponential_r > 0 and row.vs_exponential_pvalue < 1e-3


@pytest.mark.parametrize("kind", ["normal", "exponential"])
def test_tail_summary_power_law_not_preferred_for_light_tails(kind):
    gen = np.random.default_rng(2)
    if kind == "normal":
        x = gen.normal(size=100_000)
    else:  # Laplace: exponential tails on both sides
        x = gen.laplace(size=100_000)
    table = tail_summary(x)
    for row in table.itertuples():
        # power law never significantly preferred over the exponential tail
        assert not (row.vs_exponential_r > 0 and row.vs_exponential_pvalue < 0.1), row
        # and a finite but large apparent index (a Gaussian/exponential tail is steeper)
        assert row.tail_index > 4


def test_tail_summary_formulas_on_small_data(rng):
    x = rng.standard_t(3, size=3000)
    row = tail_summary(x).iloc[1]  # right side
    med = np.median(x)
    y = x[x > med] - med
    tail = y[y >= row.xmin]
    assert tail.size == row.n_tail
    # Hill / Clauset eq. 3.1
    a = tail.size / np.sum(np.log(tail / row.xmin))
    assert row.tail_index == pytest.approx(a, rel=1e-10)
    assert hill_estimator(y, row.xmin)[0] == pytest.approx(a, rel=1e-12)
    # KS distance against scipy.stats.kstest of the tail vs the fitted Pareto
    d = stats.kstest(tail, stats.pareto(b=a, scale=row.xmin).cdf).statistic
    assert row.ks_distance == pytest.approx(d, rel=1e-9)
    # the chosen threshold minimises KS among all candidates: re-check two neighbours by hand
    # (any other threshold in the searched range gives a KS distance at least as large)
    ys = np.sort(y)[::-1]
    for k in (row.n_tail // 2, min(row.n_tail * 2, int(0.15 * y.size))):
        xm = ys[k - 1]
        ak = k / np.sum(np.log(ys[:k] / xm))
        dk = stats.kstest(ys[:k], stats.pareto(b=ak, scale=xm).cdf).statistic
        assert dk >= row.ks_distance - 1e-12
    # Vuong against the exponential truncated at xmin: sum of pointwise log-ratios (scipy pdfs)
    lam = 1.0 / np.mean(tail - row.xmin)
    ll_pl = stats.pareto.logpdf(tail, b=a, scale=row.xmin)
    ll_ex = stats.expon.logpdf(tail, loc=row.xmin, scale=1.0 / lam)
    diff = ll_pl - ll_ex
    assert row.vs_exponential_r == pytest.approx(diff.sum(), rel=1e-9)
    z = diff.sum() / (diff.std() * math.sqrt(diff.size))
    assert row.vs_exponential_statistic == pytest.approx(z, rel=1e-9)
    assert row.vs_exponential_pvalue == pytest.approx(2 * stats.norm.sf(abs(z)), rel=1e-9)


def test_tail_summary_lognormal_is_the_truncated_mle(rng):
    # the lognormal alternative maximises the truncated likelihood: no nearby (mu, sigma) is
    # better, computed with scipy.stats.lognorm
    x = rng.lognormal(0.0, 1.0, size=20_000)
    row = tail_summary(x).iloc[1]
    med = np.median(x)
    y = x[x > med] - med
    tail = y[y >= row.xmin]
    a = row.tail_index
    ll_pl = stats.pareto.logpdf(tail, b=a, scale=row.xmin).sum()

    def ll_ln(mu, sigma):
        dist = stats.lognorm(s=sigma, scale=math.exp(mu))
        return np.sum(dist.logpdf(tail) - dist.logsf(row.xmin))

    # recover (mu, sigma) from R: search a grid around the best by scipy's optimiser
    from scipy.optimize import minimize

    res = minimize(
        lambda t: -ll_ln(t[0], math.exp(t[1])),
        [0.0, 0.0],
        method="Nelder-Mead",
        options={"xatol": 1e-9, "fatol": 1e-10, "maxiter": 5000},
    )
    best = -res.fun
    # our R = ll_pl - ll_ln(ours) must be within numerical tolerance of ll_pl - best
    assert row.vs_lognormal_r == pytest.approx(ll_pl - best, abs=1e-3 * abs(best) + 1e-6)


def test_tail_summary_small_and_degenerate():
    table = tail_summary([1.0, 2.0, 3.0, 4.0, 5.0])
    assert table["tail_index"].isna().all()
    assert table["note"].str.contains("too few").all()
    with pytest.warns(DegenerateDataWarning):
        const = tail_summary(np.ones(500))
    assert const["tail_index"].isna().all()


def test_tail_summary_iv():
    with pytest.raises(InputDataError, match="`tail_fraction`"):
        tail_summary(np.arange(100.0), tail_fraction=1.5)
    with pytest.raises(InputDataError, match="`max_candidates`"):
        tail_summary(np.arange(100.0), max_candidates=0)
    with pytest.raises(InputDataError, match="non-finite"):
        tail_summary([1.0, np.inf, 2.0])
    with pytest.raises(InputDataError, match="`xmin`"):
        hill_estimator([1.0, 2.0], -1.0)
