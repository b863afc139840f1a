"""Cold-start protocol and baselines on small hand-built datasets, against brute force."""

from __future__ import annotations

import math

import duckdb
import numpy as np
import pytest
import scipy.sparse as sp

from jamrec.evaluation.coldstart import (
    PROTOCOLS,
    SPLIT,
    evaluate_cold_start,
    interacted,
    withheld_rows,
    withhold,
)
from jamrec.models import create, load
from jamrec.models.base import Recommender, TrainData, tie_rank
from jamrec.models.coldstart_baselines import SpotifyPopularity, load_spotify_popularity
from jamrec.models.dataset import AUDIO_FEATURES, Dataset


def matrix(cells: np.ndarray) -> sp.csr_matrix:
    """Dense 0/1 (n_users, n_tracks) -> sorted float32 csr."""
    m = sp.csr_matrix(cells.astype(np.float32))
    m.sort_indices()
    return m


def dataset(train, val, test, negatives, features) -> Dataset:
    """A Dataset over dense 0/1 arrays, ids ``u<i>`` and ``t<j>``."""
    n_users, n_tracks = train.shape
    return Dataset(
        build_id="b1",
        users=np.array([f"u{i}" for i in range(n_users)], dtype=object),
        tracks=np.array([f"t{j:03d}" for j in range(n_tracks)], dtype=object),
        train=matrix(train),
        val=matrix(val),
        test=matrix(test),
        negatives=matrix(negatives),
        features=np.asarray(features, np.float32),
    )


def random_dataset(n_users=40, n_tracks=60, seed=0) -> Dataset:
    """Random interactions over tracks 0..49 (50..59 never jammed), split train/val/test."""
    rng = np.random.default_rng(seed)
    pos = rng.random((n_users, n_tracks)) < 0.15
    pos[:, 50:] = False
    split = rng.integers(0, 3, (n_users, n_tracks))
    negatives = (rng.random((n_users, n_tracks)) < 0.1) & ~pos
    features = rng.normal(size=(n_tracks, len(AUDIO_FEATURES)))
    return dataset(pos & (split == 0), pos & (split == 1), pos & (split == 2), negatives, features)


def planted(n_users=120, n_tracks=150, seed=0) -> Dataset:
    """Three taste groups; a track's group shows in three audio features; users jam a
    Zipf-popular choice of their group's tracks (8 train, 2 val, 2 test)."""
    rng = np.random.default_rng(seed)
    user_group, track_group = np.arange(n_users) % 3, np.arange(n_tracks) % 3
    cells = {s: np.zeros((n_users, n_tracks), bool) for s in ("train", "val", "test", "neg")}
    for u, g in enumerate(user_group):
        mine = np.flatnonzero(track_group == g)
        p = 1.0 / np.arange(1, len(mine) + 1) ** 0.7
        chosen = rng.choice(mine, 12, replace=False, p=p / p.sum())
        cells["train"][u, chosen[:8]] = True
        cells["val"][u, chosen[8:10]] = True
        cells["test"][u, chosen[10:]] = True
        cells["neg"][u, rng.choice(np.flatnonzero(track_group != g), 5, replace=False)] = True
    features = rng.normal(size=(n_tracks, len(AUDIO_FEATURES)))
    level = track_group - 1.0
    for name in ("danceability", "energy", "acousticness"):
        features[:, AUDIO_FEATURES.index(name)] += 3 * level
    return dataset(cells["train"], cells["val"], cells["test"], cells["neg"], features)


class Table(Recommender):
    """Scores from a fixed (n_users, n_tracks) table (a test model, not registered)."""

    name = "table"

    def __init__(self, table: np.ndarray):
        super().__init__()
        self.table = np.asarray(table, np.float32)

    def _fit(self, data: TrainData) -> None:
        pass

    def score(self, users, items=None):
        items = np.arange(self.table.shape[1]) if items is None else np.asarray(items)
        return self.table[np.atleast_1d(users)][:, items]


def fit(model: Recommender, data: Dataset) -> Recommender:
    return model.fit(TrainData.from_dataset(data))


def values(rows) -> dict:
    return {(r.protocol, r.metric, r.k): r.value for r in rows}


# -- withholding -----------------------------------------------------------------------


def test_withhold_is_seeded_and_exact():
    data = random_dataset()
    cold = withhold(data, share=0.1, seed=3)
    pool = interacted(data)
    assert len(cold.tracks) == round(0.1 * len(pool)) == 5
    assert np.isin(cold.tracks, pool).all() and (np.diff(cold.tracks) > 0).all()
    assert np.array_equal(withhold(data, 0.1, seed=3).tracks, cold.tracks)
    assert not np.array_equal(withhold(data, 0.1, seed=4).tracks, cold.tracks)
    view, out = cold.train_view, np.isin(np.arange(data.n_tracks), cold.tracks)
    assert view.users is data.users and view.tracks is data.tracks
    for name in ("train", "val", "test", "negatives"):
        before, after = getattr(data, name).toarray(), getattr(view, name).toarray()
        assert not after[:, out].any()  # no interaction and no negative left
        assert np.array_equal(after[:, ~out], before[:, ~out])  # the rest untouched
    positives = data.positives().toarray() > 0
    assert np.array_equal(cold.held.toarray() > 0, positives & out)  # all moved to held
    assert not view.candidates[cold.tracks].any()
    assert np.array_equal(cold.users, np.flatnonzero((positives & out).any(axis=1)))
    rows = withheld_rows(cold)
    assert rows == [("b1", 3, 0.1, f"t{j:03d}") for j in cold.tracks]


@pytest.mark.parametrize("share", [0.0, 0.5])
def test_withhold_share(share):
    data = random_dataset()
    assert len(withhold(data, share).tracks) == round(share * len(interacted(data)))


def test_withhold_rejects_bad_share():
    with pytest.raises(ValueError):
        withhold(random_dataset(), share=1.0)


# -- protocols against brute force -----------------------------------------------------


def brute_force(table: np.ndarray, data: Dataset, cold, protocol: str) -> dict:
    """Means over cold users of HR/NDCG@k and MRR, ranking by sorting lists by hand."""
    tie = tie_rank(data.n_tracks)
    positives = data.positives().toarray() > 0
    held = cold.held.toarray() > 0
    per_user = []
    for u in np.flatnonzero(held.any(axis=1)):
        if protocol == "cold_start":
            listed = list(cold.tracks)
        else:
            listed = [t for t in range(data.n_tracks) if held[u, t] or not positives[u, t]]
        relevant = [t for t in listed if held[u, t]]
        ranks = [
            1 + sum(1 for j in listed if (table[u, j], -tie[j]) > (table[u, t], -tie[t]))
            for t in relevant
        ]
        row = {}
        for k in (5, 10, 20):
            dcg = sum(1 / math.log2(r + 1) for r in ranks if r <= k)
            ideal = sum(1 / math.log2(i + 2) for i in range(min(len(ranks), k)))
            row[("hr", k)], row[("ndcg", k)] = float(min(ranks) <= k), dcg / ideal
        row[("mrr", None)] = 1 / min(ranks)
        per_user.append(row)
    return {(protocol, *key): np.mean([r[key] for r in per_user]) for key in per_user[0]}


def test_protocols_match_brute_force():
    data = random_dataset()
    cold = withhold(data, share=0.2, seed=1)
    table = np.random.default_rng(5).integers(0, 4, (data.n_users, data.n_tracks))  # ties
    model = fit(Table(table), cold.train_view)
    rows = evaluate_cold_start(model, cold, seed=0, n_boot=200)
    assert {r.protocol for r in rows} == set(PROTOCOLS) and {r.split for r in rows} == {SPLIT}
    assert all(r.n_users == len(cold.users) for r in rows)
    assert all(r.ci_low <= r.value <= r.ci_high for r in rows)
    got = values(rows)
    for protocol in PROTOCOLS:
        for key, expected in brute_force(table, data, cold, protocol).items():
            assert got[key] == pytest.approx(expected, abs=1e-12), key
    assert evaluate_cold_start(model, cold, seed=0, n_boot=200) == rows  # seeded


def test_user_sample_is_shared_by_models():
    data = random_dataset()
    cold = withhold(data, share=0.2, seed=1)
    rows = evaluate_cold_start(fit(create("random"), cold.train_view), cold, user_sample=7)
    assert all(r.n_users == 7 for r in rows)


# -- baselines on planted data ---------------------------------------------------------


def chance_ndcg10(cold) -> float:
    """Exact expected cold_start NDCG@10 of a uniformly random ranking of the withheld set."""
    n_list = len(cold.tracks)
    gains = sum(1 / math.log2(p + 1) for p in range(1, min(10, n_list) + 1))
    out = []
    for r in np.diff(cold.held.indptr)[cold.users]:
        ideal = sum(1 / math.log2(i + 2) for i in range(min(r, 10)))
        out.append(r / n_list * gains / ideal)
    return float(np.mean(out))


@pytest.fixture(scope="module")
def planted_cold():
    return withhold(planted(), share=0.2, seed=0)


def test_feature_knn_beats_popularity_and_random(planted_cold):
    cold = planted_cold
    ndcg = {}
    for name in ("feature_knn", "popularity", "random"):
        rows = evaluate_cold_start(fit(create(name), cold.train_view), cold, n_boot=200)
        ndcg[name] = {r.protocol: r for r in rows if (r.metric, r.k) == ("ndcg", 10)}
    for protocol in PROTOCOLS:
        knn = ndcg["feature_knn"][protocol]
        for other in ("popularity", "random"):
            assert knn.ci_low > ndcg[other][protocol].ci_high, (protocol, other)
    assert ndcg["feature_knn"]["cold_start"].value > 2 * chance_ndcg10(cold)


@pytest.mark.parametrize(
    "name, config",
    [
        ("popularity", {}),
        ("als", {"factors": 4, "iterations": 5}),
        ("mbcf", {"batch_size": 64, "lr": 0.01, "epochs": 3, "threads": 1}),
    ],
)
def test_id_models_sit_at_chance(planted_cold, name, config):
    cold = planted_cold
    model = fit(create(name, **config), cold.train_view)
    rows = evaluate_cold_start(model, cold, n_boot=200)
    ndcg = next(r for r in rows if (r.protocol, r.metric, r.k) == ("cold_start", "ndcg", 10))
    chance = chance_ndcg10(cold)
    assert ndcg.ci_low <= chance <= ndcg.ci_high, (ndcg, chance)
    knn = fit(create("feature_knn"), cold.train_view)
    knn_rows = evaluate_cold_start(knn, cold, n_boot=200)
    assert values(knn_rows)[("cold_start", "ndcg", 10)] > ndcg.ci_high
    if name == "popularity":  # every withheld track scores 0: the ranking is the tie order
        scores = model.score(cold.users, cold.tracks)
        assert (scores == 0).all()


def test_feature_knn_standardises_on_train_tracks(planted_cold):
    view = planted_cold.train_view
    model = fit(create("feature_knn"), view)
    keep = [i for i, n in enumerate(AUDIO_FEATURES) if n != "key"]
    expected = view.features[view.candidates][:, keep].mean(axis=0)
    np.testing.assert_allclose(model.mean, expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.linalg.norm(model.tracks, axis=1), 1, rtol=1e-5)


# -- spotify_popularity -----------------------------------------------------------------


def test_spotify_popularity_needs_and_uses_popularity(tmp_path):
    data = random_dataset()
    with pytest.raises(ValueError, match="popularity"):
        fit(create("spotify_popularity"), data)
    popularity = np.arange(data.n_tracks, dtype=np.float32)
    popularity[3] = np.nan
    model = fit(SpotifyPopularity(popularity=popularity), data)
    ids, _ = model.recommend(np.array([0]), k=data.n_tracks, exclude_seen=False)
    assert ids[0, 0] == data.n_tracks - 1 and ids[0, -1] == 3  # missing ranks last
    loaded = load(model.save(tmp_path / "sp"))
    assert np.array_equal(loaded.score(np.arange(3)), model.score(np.arange(3)))


def test_load_spotify_popularity_aligns_ids():
    con = duckdb.connect()
    con.execute("create table tracks (track_id varchar, popularity integer)")
    con.execute("insert into tracks values ('t2', 20), ('t0', null), ('t1', 10)")
    got = load_spotify_popularity(con, np.array(["t0", "t1", "t2", "t9"], dtype=object))
    np.testing.assert_array_equal(got, [np.nan, 10, 20, np.nan])
