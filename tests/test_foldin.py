"""Fold-in of new listeners: ALS's exact solve, the two-tower's user side from tracks, the
popularity fallback, and the agreement report, on the contract suite's planted data."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from jamrec.errors import JamrecError
from jamrec.evaluation.foldin import fold_in, fold_in_agreement, fold_in_scores
from jamrec.evaluation.protocols import evaluate
from jamrec.models import load
from jamrec.models.base import top_k
from jamrec.models.dataset import Dataset
from tests.planted import ALL_USERS, N_GROUPS, N_TRACKS, make, planted

NEW = np.arange(0, 12)  # users held out of training in the "new listener" tests


def planted_dataset() -> Dataset:
    """The planted data as a Dataset: each user's held-out tracks split 2 val / rest test."""
    data, held = planted()
    val, test = (sp.lil_matrix(held.shape, dtype=np.float32) for _ in range(2))
    for user in range(held.shape[0]):
        tracks = held[user].indices
        val[user, tracks[:2]] = 1
        test[user, tracks[2:]] = 1
    return Dataset(
        build_id="planted",
        users=np.array([f"u{i:02d}" for i in range(data.n_users)], dtype=object),
        tracks=np.array([f"t{i:02d}" for i in range(data.n_tracks)], dtype=object),
        train=data.train,
        val=sp.csr_matrix(val),
        test=sp.csr_matrix(test),
        negatives=data.negatives,
        features=data.features,
        truth=data.truth,
    )


def without_users(users: np.ndarray):
    """Planted train data with ``users``' rows emptied, and what they had in train."""
    data, held = planted()
    kept = data.train[users]
    train = data.train.tolil()
    train[users] = 0
    data.train = sp.csr_matrix(train)
    data.train.eliminate_zeros()
    return data, kept, held


def group_auc(scores: np.ndarray, users: np.ndarray, exclude: sp.csr_matrix) -> float:
    """Mean AUC of own-group vs other-group tracks, the given tracks left out."""
    aucs = []
    for row, user in enumerate(users):
        own = np.arange(N_TRACKS) % N_GROUPS == user % N_GROUPS
        free = ~np.isin(np.arange(N_TRACKS), exclude[row].indices)
        pos, neg = scores[row, own & free], scores[row, ~own]
        aucs.append(((pos[:, None] > neg) + 0.5 * (pos[:, None] == neg)).mean())
    return float(np.mean(aucs))


@pytest.fixture(scope="module")
def als():
    return make("als").fit(planted()[0])


@pytest.fixture(scope="module")
def two_tower():
    return make("two_tower").fit(planted()[0])


def test_als_fold_in_matches_the_trained_factors(als):
    """Near-identical, not equal: implicit trains with a few conjugate-gradient steps per
    iteration, ``recalculate_user`` solves exactly."""
    data = planted()[0]
    factors = als.model.user_factors
    trained, _ = als.recommend(ALL_USERS, k=5)
    for user in ALL_USERS:
        folded = als.recalculate_user(data.train[user].indices)
        cosine = folded @ factors[user] / np.linalg.norm(folded) / np.linalg.norm(factors[user])
        assert cosine > 0.999, (user, cosine)
        scores = fold_in(als, data.train[user].indices)
        scores[data.train[user].indices] = -np.inf
        top = top_k(scores[None], np.arange(N_TRACKS), 5, als.tie_rank)[0][0]
        assert len(np.intersect1d(top, trained[user])) >= 4, user


def test_two_tower_fold_in_is_the_trained_track_part(two_tower):
    data = planted()[0]
    for user in ALL_USERS[:10]:
        scores = fold_in(two_tower, data.train[user].indices)
        h = two_tower.track_part([user])
        np.testing.assert_allclose(scores, two_tower.score_vectors(h)[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["als", "two_tower"])
def test_new_listeners_get_their_taste_from_a_few_tracks(name):
    data, kept, _ = without_users(NEW)
    model = make(name).fit(data)
    few = sp.csr_matrix(kept.toarray() * (np.cumsum(kept.toarray(), axis=1) <= 3))  # 3 each
    assert (few.getnnz(axis=1) == 3).all()
    scores = fold_in_scores(model, few)
    assert scores.shape == (len(NEW), N_TRACKS) and np.isfinite(scores).all()
    assert group_auc(scores, NEW, few) > 0.8


def test_other_models_fall_back_to_popularity(tmp_path):
    data = planted()[0]
    model = make("mbcf", epochs=1).fit(data)
    counts = data.train.getnnz(axis=0).astype(np.float32)
    np.testing.assert_array_equal(fold_in(model, [1, 2]), counts)
    loaded = load(model.save(tmp_path / "m"))
    with pytest.raises(JamrecError, match="popularity"):
        fold_in(loaded, [1, 2])
    np.testing.assert_array_equal(fold_in(loaded, [1, 2], popularity=counts), counts)


def test_agreement_rows(als):
    data = planted_dataset()
    rows = fold_in_agreement(als, data, n_users=500, seed=0)
    assert set(rows) == {"ndcg", "ndcg_trained", "overlap"}
    for row in rows.values():
        assert (row.protocol, row.split, row.k, row.n_users) == ("fold_in", "test", 10, 60)
        assert row.ci_low <= row.value <= row.ci_high
    # the trained side is the evaluation's own full-ranking number on the same users
    full = evaluate(als, data, splits=("test",), protocols=["full"], n_boot=10)
    assert rows["ndcg_trained"].value == pytest.approx(full.value("full", "test", "ndcg", 10))
    assert rows["overlap"].value > 0.9
    assert abs(rows["ndcg"].value - rows["ndcg_trained"].value) < 0.05
    again = fold_in_agreement(als, data, n_users=20, seed=1)
    assert again["ndcg"].n_users == 20
    assert again == fold_in_agreement(als, data, n_users=20, seed=1)
