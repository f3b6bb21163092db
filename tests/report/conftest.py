"""Fixtures for the report tests: one synthetic checkpoint and its report, built once."""

from __future__ import annotations

import numpy as np
import pytest
from report._synthetic import draw_tensors, make_frame


@pytest.fixture(scope="module")
def tensors() -> dict:
    return draw_tensors(np.random.default_rng(20261125))


@pytest.fixture(scope="module")
def frame(tensors):
    return make_frame(tensors)


@pytest.fixture(scope="module")
def sections(frame, tensors):
    from weightstats.report.sections.checkpoint import checkpoint_sections

    return checkpoint_sections(frame, tensors.__getitem__, max_tensors=4, rng=0)


@pytest.fixture(scope="module")
def report(sections, frame):
    from weightstats.report.checkpoint_report import _meta
    from weightstats.report.model import build_report

    return build_report("Synthetic <b>report</b>", sections, _meta(frame))
