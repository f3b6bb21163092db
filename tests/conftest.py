"""Shared fixtures and helpers for the test-suite."""

from __future__ import annotations

import os

import numpy as np
import pytest

REQUIRE_ALL = os.environ.get("WEIGHTSTATS_REQUIRE_ALL") == "1"


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded generator: every test that draws data is reproducible."""
    return np.random.default_rng(20261125)


def importorskip(module: str):
    """Like ``pytest.importorskip``, but fails instead of skipping when CI demands every dependency."""
    if REQUIRE_ALL:
        import importlib

        return importlib.import_module(module)
    return pytest.importorskip(module)


def skip_unless(condition: bool, reason: str) -> None:
    """Skip when `condition` is false, or fail under WEIGHTSTATS_REQUIRE_ALL=1."""
    if not condition:
        if REQUIRE_ALL:
            pytest.fail(f"required in CI: {reason}")
        pytest.skip(reason)
