"""The reference classifiers and their training loop."""

from __future__ import annotations

import math

import pytest
import torch

from weightstats.datasets import load_digits
from weightstats.nets import DigitsCNN, DigitsMLP, init_weights, train_classifier


def test_load_digits_split_is_stratified_and_seeded():
    a, b = load_digits(seed=3), load_digits(seed=3)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert a.x_train.shape[1] == 64 and 0.0 <= float(a.x_train.min()) <= float(a.x_train.max()) <= 1.0
    assert a.x_train.shape[0] + a.x_test.shape[0] == 1797
    counts = torch.bincount(a.y_test, minlength=10)
    assert int(counts.min()) >= 40  # every class is represented in the test split
    with pytest.raises(ValueError, match="test_fraction"):
        load_digits(test_fraction=1.5)


@pytest.mark.parametrize("scheme", ["kaiming-uniform", "normal", "heavy-tailed"])
def test_init_weights_same_std_different_shape(scheme):
    model = DigitsMLP(hidden=(512,))
    before = torch.get_rng_state()
    init_weights(model, scheme, generator=torch.Generator().manual_seed(0))
    assert torch.equal(before, torch.get_rng_state())  # global generator untouched
    w = model.net[0].weight.detach()
    expected_std = 1 / math.sqrt(3 * 64)
    assert abs(float(w.std()) / expected_std - 1) < 0.1
    kurt = float(((w - w.mean()) ** 4).mean() / w.var(unbiased=False) ** 2 - 3)
    expected = {"kaiming-uniform": -1.2, "normal": 0.0}.get(scheme)
    if expected is None:
        assert kurt > 2.0  # t(3) has infinite kurtosis; the sample's is large
    else:
        assert abs(kurt - expected) < 0.15


def test_init_weights_rejects_unknown_scheme():
    with pytest.raises(ValueError, match="scheme"):
        init_weights(DigitsMLP(), "xavier", generator=torch.Generator())


def test_train_classifier_learns_and_is_reproducible():
    data = load_digits()

    def run():
        torch.manual_seed(0)
        model = DigitsCNN()
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        return model, train_classifier(model, opt, data, epochs=3, seed=1)

    (m1, h1), (m2, h2) = run(), run()
    assert h1.test_accuracy[-1] > 0.5
    assert all(torch.equal(p, q) for p, q in zip(m1.parameters(), m2.parameters()))
    assert h1.test_accuracy == h2.test_accuracy  # same seeds, same history
