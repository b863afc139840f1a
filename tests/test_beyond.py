"""Beyond-accuracy metrics against hand-computed values on tiny cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from jamrec.evaluation.beyond import (
    PER_USER,
    beyond_accuracy,
    coverage,
    intra_list_diversity,
    popularity_percentile,
    row_means,
    self_information,
)
from jamrec.models import create
from jamrec.models.base import TrainData
from jamrec.models.dataset import AUDIO_FEATURES, Dataset


def dataset(train: dict, test: dict, n_users: int, n_tracks: int, features=None) -> Dataset:
    """A Dataset from ``{user: [tracks]}`` dicts (no val, no negatives)."""

    def matrix(cells: dict) -> sp.csr_matrix:
        m = np.zeros((n_users, n_tracks), np.float32)
        for u, tracks in cells.items():
            m[u, tracks] = 1
        return sp.csr_matrix(m)

    empty = sp.csr_matrix((n_users, n_tracks), dtype=np.float32)
    return Dataset(
        build_id="b",
        users=np.array([f"u{i}" for i in range(n_users)], dtype=object),
        tracks=np.array([f"t{j}" for j in range(n_tracks)], dtype=object),
        train=matrix(train),
        val=empty,
        test=matrix(test),
        negatives=empty,
        features=np.zeros((n_tracks, len(AUDIO_FEATURES)), np.float32)
        if features is None
        else features,
    )


def fit(name: str, data: Dataset):
    return create(name).fit(TrainData.from_dataset(data))


def test_pure_metrics_by_hand():
    recs = np.array([[0, 1], [1, 2], [-1, -1]])
    assert coverage(recs, 10) == pytest.approx(0.3)
    means = row_means(recs, np.array([1.0, 2.0, 4.0]))
    assert means[:2].tolist() == [1.5, 3.0] and math.isnan(means[2])
    assert self_information(np.array([2, 1, 1, 0])).tolist() == [1.0, 2.0, 2.0, math.inf]
    pct = popularity_percentile(np.array([3, 1, 1, 0]), np.array([True, True, True, False]))
    np.testing.assert_allclose(pct, [250 / 3, 100 / 3, 100 / 3, 0])
    z = np.array([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0]])
    div = intra_list_diversity(np.array([[0, 1, 2], [0, 1, -1], [0, -1, -1]]), z)
    np.testing.assert_allclose(div[:2], [20 / 3, 5.0])
    assert math.isnan(div[2])


def test_beyond_accuracy_by_hand():
    # counts t0..t3 = 3, 3, 1, 1 (8 train pairs); t4, t5 are not candidates.
    train = {0: [0, 1], 1: [0, 2], 2: [1, 3], 3: [0, 1]}
    test = {0: [2], 1: [1], 2: [0], 3: [4]}  # user 3's test track is no candidate
    features = np.zeros((6, len(AUDIO_FEATURES)), np.float32)
    # standardised over the candidates: t0 (-1,-1), t1 (-1,1), t2 (1,1), t3 (1,-1)
    features[:, 0] = [0, 0, 2, 2, 7, 7]
    features[:, 1] = [0, 2, 2, 0, 7, 7]
    data = dataset(train, test, 4, 6, features)
    rows = {r.metric: r for r in beyond_accuracy(fit("popularity", data), data, k=2, n_boot=100)}
    # lists (train excluded): u0 {t2, t3}, u1 {t1, t3}, u2 {t0, t2}
    assert rows["coverage"].value == rows["coverage"].ci_low == rows["coverage"].ci_high == 1.0
    hi, lo = math.log2(8 / 3), 3.0  # self-information of t0/t1 and of t2/t3
    assert rows["novelty"].value == pytest.approx((lo + 2 * (hi + lo) / 2) / 3)
    assert rows["diversity"].value == pytest.approx((2 + 2 * 2 * math.sqrt(2)) / 3)
    # percentiles among counts [1, 1, 3, 3]: t0/t1 75, t2/t3 25
    assert rows["rec_popularity_pct"].value == pytest.approx((25 + 50 + 50) / 3)
    assert rows["jam_popularity_pct"].value == pytest.approx((25 + 75 + 75) / 3)
    for row in rows.values():
        assert (row.protocol, row.split, row.k, row.n_users) == ("beyond", "test", 2, 3)
        assert row.ci_low <= row.value <= row.ci_high
    assert list(rows) == ["coverage", *PER_USER]


@pytest.fixture(scope="module")
def zipf_data() -> Dataset:
    rng = np.random.default_rng(0)
    n_users, n_tracks = 200, 300
    p = 1.0 / np.arange(1, n_tracks + 1) ** 1.1
    train, test = {}, {}
    for u in range(n_users):
        items = rng.choice(n_tracks, 10, replace=False, p=p / p.sum())
        train[u], test[u] = list(items[1:]), [items[0]]
    features = rng.normal(size=(n_tracks, len(AUDIO_FEATURES))).astype(np.float32)
    return dataset(train, test, n_users, n_tracks, features)


def test_popularity_is_narrow_random_is_broad(zipf_data):
    values = {
        name: {r.metric: r.value for r in beyond_accuracy(fit(name, zipf_data), zipf_data)}
        for name in ("popularity", "random")
    }
    pop, rnd = values["popularity"], values["random"]
    assert pop["coverage"] < 0.15 < 0.8 < rnd["coverage"]
    assert pop["novelty"] + 2 < rnd["novelty"]
    assert pop["rec_popularity_pct"] > 90 and abs(rnd["rec_popularity_pct"] - 50) < 5
    assert pop["jam_popularity_pct"] == rnd["jam_popularity_pct"]  # a property of the users


def test_user_sample_and_seed(zipf_data):
    model = fit("random", zipf_data)
    rows = beyond_accuracy(model, zipf_data, k=5, n_users=20, seed=1)
    assert all(r.n_users == 20 and r.k == 5 for r in rows)
    assert beyond_accuracy(model, zipf_data, k=5, n_users=20, seed=1) == rows


@pytest.mark.parametrize(
    "name, options",
    [("popularity", {}), ("als", {}), ("mbcf", {"epochs": 2}), ("hybrid", {"epochs": 1})],
)
def test_the_lists_kept_by_the_scoring_pass_give_the_same_rows(tiny_warehouse, name, options):
    """Beyond-accuracy's lists read off the evaluation's test pass (``full`` for a
    dot-product model, ``full_sample`` for the pairwise hybrid), train positives only
    masked, give the rows computed from ``recommend`` on their own."""
    from jamrec.evaluation.protocols import evaluate, split_view
    from jamrec.models.dataset import open_dataset

    data = open_dataset(tiny_warehouse)
    model = create(name, seed=0, **options).fit(TrainData.from_dataset(data))
    result = evaluate(model, data, n_boot=10, user_sample=100, beyond_k=10)
    assert result.beyond_lists is not None
    users, recs = result.beyond_lists
    assert len(users) == 100 and recs.shape == (100, 10)
    candidates = split_view(data, "test").candidates
    np.testing.assert_array_equal(
        recs, model.recommend(users, 10, items=candidates, seen=data.train)[0]
    )
    expected = beyond_accuracy(model, data, k=10, n_users=100, n_boot=10)
    kept = beyond_accuracy(model, data, k=10, n_users=100, n_boot=10, lists=result.beyond_lists)
    assert kept == expected
