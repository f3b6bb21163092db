"""as_sample: the one input validator every public function uses."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from weightstats._validation import as_sample
from weightstats.errors import (
    DegenerateDataWarning,
    InputDataError,
    SmallSampleWarning,
    WeightstatsError,
)


@pytest.mark.parametrize(
    "dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int8,
              torch.int32, torch.int64, torch.uint8]
)
def test_as_sample_accepts_every_torch_dtype(dtype):
    t = torch.arange(12).reshape(3, 4).to(dtype)
    out = as_sample(t)
    assert out.dtype == np.float64 and out.shape == (12,)
    np.testing.assert_array_equal(out, np.arange(12.0))


def test_as_sample_float8_tensor():
    t = torch.tensor([0.5, -1.0, 2.0]).to(torch.float8_e4m3fn)
    np.testing.assert_array_equal(as_sample(t), [0.5, -1.0, 2.0])


def test_as_sample_accepts_lists_and_int_arrays():
    np.testing.assert_array_equal(as_sample([[1, 2], [3, 4]]), [1.0, 2.0, 3.0, 4.0])
    assert as_sample(np.array([1, 2, 3], dtype=np.int16)).dtype == np.float64


def test_as_sample_nan_inf_raise_names_counts():
    x = np.array([1.0, np.nan, np.inf, -np.inf, 2.0, np.nan])
    with pytest.raises(InputDataError, match=r"`w` has 4 non-finite value\(s\) \(2 NaN, 2 Inf\)"):
        as_sample(x, name="w")


def test_as_sample_nan_omit_drops():
    out = as_sample([1.0, np.nan, 3.0, np.inf], nan_policy="omit")
    np.testing.assert_array_equal(out, [1.0, 3.0])


def test_as_sample_bad_nan_policy():
    with pytest.raises(InputDataError, match="nan_policy"):
        as_sample([1.0, 2.0], nan_policy="propagate")


def test_as_sample_empty_and_too_small():
    with pytest.raises(InputDataError, match="`x` is empty"):
        as_sample([])
    with pytest.raises(InputDataError, match="`x` has 1 finite value.*at least 2"):
        as_sample([1.0])
    with pytest.raises(InputDataError, match="at least 10"):
        as_sample(np.arange(5.0), min_size=10)
    with pytest.raises(InputDataError, match="is empty"):
        as_sample([np.nan, np.nan], nan_policy="omit")


def test_as_sample_constant_raises_or_warns():
    with pytest.raises(InputDataError, match="constant"):
        as_sample(np.ones(10))
    with pytest.warns(DegenerateDataWarning, match="constant"):
        as_sample(np.ones(10), allow_constant=True)


def test_as_sample_small_sample_warning():
    with pytest.warns(SmallSampleWarning, match="at least 100"):
        as_sample(np.arange(10.0), warn_below=100)


def test_as_sample_rejects_complex_and_strings():
    with pytest.raises(InputDataError, match="complex"):
        as_sample(np.array([1 + 1j, 2]))
    with pytest.raises(InputDataError, match="complex"):
        as_sample(torch.tensor([1 + 1j, 2j]))
    with pytest.raises(InputDataError, match="numbers"):
        as_sample(np.array(["a", "b"]))


def test_errors_subclass_builtins():
    assert issubclass(InputDataError, ValueError)
    assert issubclass(InputDataError, WeightstatsError)
