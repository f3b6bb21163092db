"""The VAE section's M2 sentence: a count and the size of the gaps, never a bare win."""

from __future__ import annotations

import numpy as np
import pandas as pd

from weightstats.report.sections.vae import claims
from weightstats.vae.compare import TABLE_COLUMNS


def _m2_table(pairs):
    rows = [
        {c: np.nan for c in TABLE_COLUMNS}
        | {"dataset": "digits", "family": "m2", "latent_dim": d, "test_error": t,
           "baseline_error": b, "n_labels": 100}
        for d, t, b in pairs
    ]
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def test_m2_sentence_counts_and_sizes_the_gaps():
    text = " ".join(claims(_m2_table([(2, 0.062, 0.082), (5, 0.071, 0.082), (10, 0.087, 0.082)])))
    assert "M2 has the lower test error at 2 of 3 dimensions, by at most 2.0 points" in text
    assert "may not survive another seed" in text
    assert "beats" not in text


def test_m2_sentence_when_it_never_wins():
    text = " ".join(claims(_m2_table([(2, 0.09, 0.082)])))
    assert "M2 does not beat the labels-only classifier here" in text
    assert "lower test error" not in text
