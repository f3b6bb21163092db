"""Every public function of weightstats.stats on hostile input: a weightstats error that names
the argument, or a finite result, and never a numpy/scipy traceback or a RuntimeWarning."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from weightstats.errors import FitError, InputDataError, WeightstatsWarning
from weightstats.stats.compare import heldout_loglik
from weightstats.stats.fit import fit, fit_families
from weightstats.stats.mixture import fit_gaussian_mixture, select_gaussian_mixture
from weightstats.stats.normality import effect_sizes, normality, normality_with_effects
from weightstats.stats.tails import tail_summary
from weightstats.stats.verdict import classify_shape

torch = pytest.importorskip("torch")

_G = np.random.default_rng(7).normal(size=400)

FUNCS = {
    "fit_normal": lambda x, **k: fit(x, "normal", **k),
    "fit_t": lambda x, **k: fit(x, "t", **k),
    "fit_gennorm": lambda x, **k: fit(x, "gennorm", **k),
    "fit_logistic": lambda x, **k: fit(x, "logistic", **k),
    "fit_gmm": lambda x, **k: fit(x, "gmm", rng=0, **k),
    "fit_families": lambda x, **k: fit_families(x, ["normal", "laplace", "t"], **k),
    "heldout_loglik": lambda x, **k: heldout_loglik(x, ["normal", "t"], rng=0, **k),
    "fit_gaussian_mixture": lambda x, **k: fit_gaussian_mixture(x, 2, rng=0, **k),
    "select_gaussian_mixture": lambda x, **k: select_gaussian_mixture(x, k_max=2, rng=0, **k),
    "normality": lambda x, **k: normality(x, rng=0, **k),
    "effect_sizes": lambda x, **k: effect_sizes(x, **k),
    "normality_with_effects": lambda x, **k: normality_with_effects(x, rng=0, **k),
    "tail_summary": lambda x, **k: tail_summary(x, **k),
    "classify_shape": lambda x, **k: classify_shape(x, rng=0, **k),
}

# describe a sample of one value or a constant one (NaN statistics, a DegenerateDataWarning)
LENIENT = {"normality", "effect_sizes", "normality_with_effects", "tail_summary", "classify_shape"}

# input -> (error type, words of its message); None: a finite result is expected
ALWAYS_REJECTED = {
    "empty": ([], InputDataError, "is empty"),
    "one value": ([0.5], InputDataError, None),
    "constant": (np.ones(100), InputDataError, "constant"),
    "NaN": (np.r_[_G, np.nan], InputDataError, "nan_policy='omit'"),
    "Inf": (np.r_[_G, -np.inf], InputDataError, "nan_policy='omit'"),
    "all NaN, omitted": (np.full(10, np.nan), InputDataError, "empty"),
    "strings": (["a", "b", "c"], InputDataError, "must hold numbers"),
    "1e300": (_G * 1e300, InputDataError, "Divide `x` by a constant"),
    "1e-300": (_G * 1e-300, InputDataError, "Multiply `x` by a constant"),
    "complex": (_G + 1j, InputDataError, "complex"),
}

ACCEPTED = {
    "float16 tensor": lambda: torch.from_numpy(_G).to(torch.float16),
    "bfloat16 tensor": lambda: torch.from_numpy(_G).to(torch.bfloat16),
    "int8 tensor": lambda: torch.randint(-6, 7, (400,), dtype=torch.int8,
                                         generator=torch.Generator().manual_seed(0)),
    "2-D tensor": lambda: torch.from_numpy(_G.reshape(20, 20)),
    "list": lambda: _G[:60].tolist(),
    "NaN omitted": lambda: np.r_[_G, np.nan, np.inf],
    "two values": lambda: np.r_[np.zeros(50), np.ones(50)],
}


def _no_foreign_warnings(record):
    foreign = [w for w in record if not issubclass(w.category, WeightstatsWarning)]
    assert not foreign, [f"{w.category.__name__}: {w.message}" for w in foreign]


def _finite_numbers(result):
    if isinstance(result, pd.DataFrame):
        values = result.select_dtypes("number").to_numpy().ravel()
    elif hasattr(result, "to_dict"):
        d = result.to_dict()
        values = [v for v in (d.values() if isinstance(d, dict) else []) if isinstance(v, float)]
    else:
        values = []
    # NaN is allowed where a statistic is undefined (tail_summary's short sides); never +-inf
    assert not np.isinf(np.asarray(values, float)).any(), result


@pytest.mark.parametrize("func", sorted(FUNCS))
@pytest.mark.parametrize("case", sorted(ALWAYS_REJECTED))
def test_hostile_input_is_a_clear_error(func, case):
    x, error, words = ALWAYS_REJECTED[case]
    kwargs = {"nan_policy": "omit"} if case.endswith("omitted") else {}
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        if func in LENIENT and case in ("one value", "constant"):
            # these describe whatever they get: a defined answer, NaN where undefined
            _finite_numbers(FUNCS[func](x, **kwargs))
            _no_foreign_warnings(record)
            return
        with pytest.raises(error) as info:
            FUNCS[func](x, **kwargs)
    assert "`x`" in str(info.value) or "`nan_policy`" in str(info.value)
    if words:
        assert words in str(info.value)
    _no_foreign_warnings(record)


@pytest.mark.parametrize("func", sorted(FUNCS))
@pytest.mark.parametrize("case", sorted(ACCEPTED))
def test_awkward_but_valid_input_gives_a_result(func, case):
    kwargs = {"nan_policy": "omit"} if case == "NaN omitted" else {}
    x = ACCEPTED[case]()
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        result = FUNCS[func](x, **kwargs)
    _no_foreign_warnings(record)
    _finite_numbers(result)


@pytest.mark.parametrize("func", sorted(FUNCS))
def test_three_values(func):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        try:
            FUNCS[func]([0.1, -0.3, 0.7])
        except InputDataError as exc:
            assert "at least" in str(exc) and "`x` has 3" in str(exc)
    _no_foreign_warnings(record)


def test_near_point_mass_is_a_fit_error_not_a_math_error():
    # 99 equal values and one 1e-12 away: the t likelihood grows without bound as scale -> 0
    x = np.r_[np.ones(99), 1 + 1e-12]
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        with pytest.raises(FitError, match="t fit broke down"):
            fit(x, "t")
        assert fit(x, "normal").params["scale"] == pytest.approx(np.std(x))
    _no_foreign_warnings(record)


def test_ten_million_copies_of_a_tiny_tensor():
    x = torch.tensor([0.1, -0.2, 0.3, 0.05]).repeat(2_500_000)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        e = effect_sizes(x)
        tails = tail_summary(x)
        normal = fit(x, "normal")
    _no_foreign_warnings(record)
    ref = x.double().numpy()
    assert normal.n == 10_000_000
    assert normal.params["scale"] == pytest.approx(ref.std(), rel=1e-12)
    # bias-corrected G1 and G2 of the 10^7 values (reference: scipy.stats, bias=False)
    assert e.skewness == pytest.approx(stats.skew(ref, bias=False), rel=1e-9)
    assert e.excess_kurtosis == pytest.approx(stats.kurtosis(ref, bias=False), rel=1e-9)
    # four repeated values: every tail is tied at its threshold, so no power-law fit
    assert tails["tail_index"].isna().all()
    assert tails["note"].str.contains("tied").all()
