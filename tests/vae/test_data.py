"""Synthetic sphere data: latents on the sphere, observations in (0, 1), seeded."""

from __future__ import annotations

import pytest
import torch

from weightstats.errors import InputDataError
from weightstats.vae.data import make_sphere_data


def test_make_sphere_data_geometry_and_seed():
    a = make_sphere_data(n_train=50, n_test=20, sphere_dim=3, seed=1)
    b = make_sphere_data(n_train=50, n_test=20, sphere_dim=3, seed=1)
    c = make_sphere_data(n_train=50, n_test=20, sphere_dim=3, seed=2)
    assert a.x_train.shape == (50, 64) and a.z_test.shape == (20, 3)
    torch.testing.assert_close(a.z_train.norm(dim=1), torch.ones(50))
    assert 0 < float(a.x_train.min()) and float(a.x_train.max()) < 1
    assert torch.equal(a.x_train, b.x_train) and not torch.equal(a.x_train, c.x_train)
    assert "S^2" in repr(a)


def test_make_sphere_data_is_a_smooth_function_of_the_latent():
    d = make_sphere_data(n_train=400, n_test=1, sphere_dim=2, seed=0)
    # nearby latents give nearby observations; far-apart ones do not
    dz = torch.cdist(d.z_train, d.z_train)
    dx = torch.cdist(d.x_train, d.x_train)
    near, far = dz < 0.05, dz > 1.5
    assert dx[near].mean() < 0.2 * dx[far].mean()


def test_make_sphere_data_iv():
    with pytest.raises(InputDataError, match="`sphere_dim`"):
        make_sphere_data(sphere_dim=1)
    with pytest.raises(InputDataError, match="`n_train`"):
        make_sphere_data(n_train=0)
