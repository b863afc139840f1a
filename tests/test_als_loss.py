"""jamrec's ALS training loss equals implicit's own (`calculate_training_loss=True`)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from implicit.cpu import _als

from jamrec.models.als import training_loss


@pytest.mark.parametrize("seed", [0, 1])
def test_training_loss_equals_implicits(seed):
    rng = np.random.default_rng(seed)
    n_users, n_tracks, dim = 300, 500, 16
    train = sp.random(n_users, n_tracks, density=0.03, random_state=seed, format="csr")
    train.data[:] = 1.0
    confidence = train.astype(np.float32)
    confidence.data = 1.0 + np.float32(40.0) * confidence.data
    users = (rng.standard_normal((n_users, dim)) * 0.3).astype(np.float32)
    tracks = (rng.standard_normal((n_tracks, dim)) * 0.3).astype(np.float32)
    expected = _als.calculate_loss(confidence, users, tracks, 0.01, num_threads=1)
    assert training_loss(confidence, users, tracks, 0.01) == pytest.approx(expected, rel=1e-6)
    # a user without any train positive, and the same value on every call
    confidence.data[confidence.indptr[5] : confidence.indptr[6]] = 0
    confidence.eliminate_zeros()
    expected = _als.calculate_loss(confidence, users, tracks, 0.01, num_threads=1)
    first = training_loss(confidence, users, tracks, 0.01)
    assert first == pytest.approx(expected, rel=1e-6)
    assert training_loss(confidence, users, tracks, 0.01) == first


def test_the_fitted_curve_records_implicits_loss():
    import dataclasses

    from jamrec.models import create
    from tests.planted import planted

    losses: list[float | None] = []
    data, _ = planted()
    data = dataclasses.replace(data, on_step=lambda step, loss, ndcg: losses.append(loss))
    model = create("als", iterations=3, early_stopping=False)
    model.fit(data)
    confidence = model._confidence(data.train)
    expected = _als.calculate_loss(
        confidence, model.model.user_factors, model.model.item_factors, 0.01, num_threads=1
    )
    assert len(losses) == 3 and losses[-1] == pytest.approx(expected, rel=1e-6)
