"""Small real data shipped by scikit-learn, ready for the reference models.

Only scikit-learn's bundled ``digits`` images are used: 1,797 greyscale 8x8 images of the digits
0-9, stored inside the scikit-learn package, so nothing is downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["DigitsData", "load_digits"]


@dataclass(frozen=True)
class DigitsData:
    """scikit-learn's digits, split into train and test sets.

    Attributes
    ----------
    x_train, x_test : torch.Tensor
        float32 pixel intensities scaled to [0, 1], shape (n, 64).
    y_train, y_test : torch.Tensor
        int64 class labels 0-9, shape (n,).
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    @staticmethod
    def images(x: torch.Tensor) -> torch.Tensor:
        """Reshape flat rows of 64 pixels to images of shape (n, 1, 8, 8)."""
        return x.reshape(-1, 1, 8, 8)

    def __repr__(self) -> str:
        return (
            f"DigitsData(train={tuple(self.x_train.shape)}, test={tuple(self.x_test.shape)}, "
            f"classes={int(self.y_train.max()) + 1})"
        )


def load_digits(*, test_fraction: float = 0.25, seed: int = 0) -> DigitsData:
    """Load scikit-learn's digits as torch tensors with a seeded, stratified split.

    Parameters
    ----------
    test_fraction : float
        Share of each class held out for testing, in (0, 1).
    seed : int
        Seed of the split; the same seed always gives the same split.

    Returns
    -------
    DigitsData
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"`test_fraction` must be in (0, 1); got {test_fraction!r}.")
    from sklearn.datasets import load_digits as _sk_load_digits

    bunch = _sk_load_digits()
    x = (bunch.data / 16.0).astype(np.float32)
    y = bunch.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    test_mask = np.zeros(len(y), dtype=bool)
    for label in np.unique(y):
        idx = np.flatnonzero(y == label)
        n_test = int(round(test_fraction * len(idx)))
        test_mask[rng.choice(idx, size=n_test, replace=False)] = True
    return DigitsData(
        x_train=torch.from_numpy(x[~test_mask]),
        y_train=torch.from_numpy(y[~test_mask]),
        x_test=torch.from_numpy(x[test_mask]),
        y_test=torch.from_numpy(y[test_mask]),
    )
