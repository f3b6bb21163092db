"""Shared fixtures for the test-suite (helpers live in tests/helpers.py)."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded generator: every test that draws data is reproducible."""
    return np.random.default_rng(20261125)
