"""Helpers for tests: import with ``from helpers import importorskip, skip_unless``."""

from __future__ import annotations

import importlib
import os

import pytest

REQUIRE_ALL = os.environ.get("WEIGHTSTATS_REQUIRE_ALL") == "1"


def importorskip(module: str):
    """Like ``pytest.importorskip``, but fails instead of skipping when CI demands every dependency."""
    if REQUIRE_ALL:
        return importlib.import_module(module)
    return pytest.importorskip(module)


def skip_unless(condition: bool, reason: str) -> None:
    """Skip when `condition` is false, or fail under WEIGHTSTATS_REQUIRE_ALL=1 (set by .ci/run)."""
    if not condition:
        if REQUIRE_ALL:
            pytest.fail(f"required in CI: {reason}")
        pytest.skip(reason)
