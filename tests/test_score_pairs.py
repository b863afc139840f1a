"""Scoring aligned (user, track) pairs agrees with scoring whole rows, for every model kind."""

from __future__ import annotations

import numpy as np
import pytest

from jamrec.models import create
from jamrec.models.base import TrainData
from jamrec.models.dataset import open_dataset


@pytest.mark.parametrize(
    ("name", "config"),
    [("popularity", {}), ("als", {"iterations": 2}), ("hybrid", {"epochs": 1, "threads": 1})],
)
def test_score_pairs_matches_score(tiny_warehouse, name, config):
    data = open_dataset(tiny_warehouse)
    model = create(name, **config).fit(TrainData.from_dataset(data))
    rng = np.random.default_rng(0)
    users = rng.integers(0, data.n_users, 500)
    items = rng.integers(0, data.n_tracks, 500)
    pairs = model.score_pairs(users, items)
    rows = np.array([model.score(np.array([u]), np.array([i]))[0, 0] for u, i in zip(users, items)])
    assert pairs.dtype == np.float32 and pairs.shape == (500,)
    np.testing.assert_allclose(pairs, rows, rtol=1e-5, atol=1e-6)
