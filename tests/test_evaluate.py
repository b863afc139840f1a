"""The evaluation protocols on small hand-built datasets, against brute-force versions."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import scipy.sparse as sp

from jamrec.evaluation.metrics import sample_negatives
from jamrec.evaluation.protocols import (
    KS,
    SPLIT_CODES,
    evaluate,
    sample_users,
    split_view,
    val_probe,
)
from jamrec.models.base import Recommender, TrainData, tie_rank
from jamrec.models.baselines import Popularity, Random
from jamrec.models.dataset import AUDIO_FEATURES, Dataset

COLD = 99  # a track with held-out interactions only


def make_dataset(n_users=300, n_tracks=100, seed=0) -> Dataset:
    """Zipf-popular tracks, leave-one-out val and test, plus hand-made users 0-2."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, n_tracks + 1) ** 0.8
    p[COLD] = 0.0
    p /= p.sum()
    cells = {"train": [], "val": [], "test": []}
    cells["train"] += [(0, 1), (0, 2), (0, 3), (1, 5), (1, 6), (2, 1)]
    cells["val"] += [(0, COLD), (1, 7), (2, 8), (2, 9)]  # user 0: only a cold val track
    cells["test"] += [(0, 4), (1, COLD), (2, 10), (2, 11)]  # user 1: only a cold test track
    for u in range(3, n_users):
        items = rng.choice(n_tracks, rng.integers(1, 12), replace=False, p=p)
        held = 2 if len(items) >= 3 else 0  # short histories stay wholly in train
        cells["val"] += [(u, t) for t in items[:held][:1]]
        cells["test"] += [(u, t) for t in items[1:held]]
        cells["train"] += [(u, t) for t in items[held:]]

    def matrix(pairs):
        rows, cols = np.array(pairs, dtype=np.int64).reshape(-1, 2).T
        m = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n_users, n_tracks))
        m.sort_indices()
        return m

    return Dataset(
        build_id="test",
        users=np.array([f"u{i}" for i in range(n_users)], dtype=object),
        tracks=np.array([f"t{i}" for i in range(n_tracks)], dtype=object),
        negatives=sp.csr_matrix((n_users, n_tracks), dtype=np.float32),
        features=np.zeros((n_tracks, len(AUDIO_FEATURES)), np.float32),
        **{name: matrix(pairs) for name, pairs in cells.items()},
    )


@pytest.fixture(scope="module")
def data() -> Dataset:
    return make_dataset()


def fitted(model: Recommender, data: Dataset) -> Recommender:
    return model.fit(TrainData.from_dataset(data))


class Indicator(Recommender):
    """Scores from weighted split indicators (a cheat that exposes leaks), plus a spy."""

    name = "indicator_test"

    def __init__(self, data: Dataset, weights: dict[str, float], pairwise=False):
        super().__init__()
        self.matrix = sum(w * data.split(s) for s, w in weights.items()).toarray()
        self.calls: list[tuple[np.ndarray, np.ndarray]] = []
        self.pairwise = pairwise

    def _fit(self, data: TrainData) -> None:
        pass

    def score(self, users, items=None):
        self.calls.append((np.asarray(users), np.asarray(items)))
        return self.matrix[np.asarray(users)][:, items].astype(np.float32)


class Constant(Recommender):
    """The same score for every (user, track)."""

    name = "constant_test"

    def __init__(self, value: float):
        super().__init__()
        self.value = value

    def _fit(self, data: TrainData) -> None:
        pass

    def score(self, users, items=None):
        return np.full((len(users), len(items)), self.value, np.float32)


def sets(matrix: sp.csr_matrix, u: int) -> set[int]:
    return set(matrix[u].indices.tolist())


def test_candidates_relevant_excluded_and_cold_items(data):
    candidates = set(np.flatnonzero(data.train.getnnz(axis=0)).tolist())
    assert COLD not in candidates
    for split in ("val", "test"):
        view = split_view(data, split)
        assert set(view.candidates.tolist()) == candidates
        # Columns are in the fixed tie order.
        assert np.all(np.diff(tie_rank(data.n_tracks)[view.candidates]) > 0)
        other = "test" if split == "val" else "val"
        users = []
        for u in range(data.n_users):
            relevant = {int(view.candidates[c]) for c in sets(view.relevant, u)}
            excluded = {int(view.candidates[c]) for c in sets(view.excluded, u)}
            assert relevant == sets(data.split(split), u) & candidates
            assert excluded == (sets(data.train, u) | sets(data.split(other), u)) & candidates
            users += [u] * bool(relevant)
        np.testing.assert_array_equal(view.users, users)
        assert view.n_cold_items == 1  # user 0's val track, user 1's test track
    assert 0 not in split_view(data, "val").users and 1 not in split_view(data, "test").users


def test_cold_tracks_are_never_scored_and_are_counted(data):
    spy = Indicator(data, {"val": 1.0})
    result = evaluate(spy, data, n_boot=20)
    assert result.n_cold_items == {"val": 1, "test": 1}
    assert all(COLD not in items for _, items in spy.calls)


def test_other_splits_are_excluded(data):
    # Train and test positives scored far above val ones: without exclusions they would
    # push the val tracks down; with them every val track is at the top.
    cheat = Indicator(data, {"val": 1.0, "train": 10.0, "test": 10.0})
    result = evaluate(cheat, data, splits=("val",), protocols=("full",), n_boot=20)
    assert result.value("full", "val", "mrr") == 1.0
    assert result.value("full", "val", "ndcg", 5) == 1.0
    cheat = Indicator(data, {"test": 1.0, "train": 10.0, "val": 10.0})
    result = evaluate(cheat, data, splits=("test",), protocols=("full",), n_boot=20)
    assert result.value("full", "test", "mrr") == 1.0


def brute_full(model, data, split, users=None):
    """Per-user metrics by sorting each user's whole list, in Python."""
    tie = tie_rank(data.n_tracks)
    candidates = np.flatnonzero(data.train.getnnz(axis=0))
    other = "test" if split == "val" else "val"
    rows = []
    for u in range(data.n_users) if users is None else users:
        relevant = sets(data.split(split), u) & set(candidates.tolist())
        if not relevant:
            continue
        seen = sets(data.train, u) | sets(data.split(other), u)
        listed = np.array([t for t in candidates if t not in seen])
        scores = model.score(np.array([u]), listed)[0]
        ranked = sorted(range(len(listed)), key=lambda i: (-scores[i], tie[listed[i]]))
        ranks = sorted(ranked.index(int(np.flatnonzero(listed == t)[0])) + 1 for t in relevant)
        rows.append(user_row(ranks, len(relevant)))
    return np.array(rows)


def user_row(ranks, n):
    row = [float(ranks[0] <= k) for k in KS]
    for k in KS:
        ideal = sum(1 / math.log2(i + 2) for i in range(min(n, k)))
        row.append(sum(1 / math.log2(r + 1) for r in ranks if r <= k) / ideal)
    return [*row, 1 / ranks[0]]


def result_means(result, protocol, split):
    return np.array(
        [result.value(protocol, split, m, k) for m in ("hr", "ndcg") for k in KS]
        + [result.value(protocol, split, "mrr")]
    )


@pytest.mark.parametrize("model_cls", [Popularity, Random])
def test_full_protocol_equals_brute_force(data, model_cls):
    model = fitted(model_cls(), data)
    result = evaluate(model, data, protocols=("full",), n_boot=50)
    for split in ("val", "test"):
        want = brute_full(model, data, split)
        np.testing.assert_allclose(result_means(result, "full", split), want.mean(axis=0))
        for row in result.rows:
            assert 0 <= row.ci_low <= row.value <= row.ci_high <= 1
            assert row.n_users == len(want)


@pytest.mark.parametrize("name", ["popularity", "random", "als", "mbcf", "two_tower", "item_knn"])
def test_full_ranking_in_small_reused_blocks_equals_one_block(data, name, monkeypatch):
    """The full ranking reuses one score block, batch after batch (the last one shorter):
    the per-user results equal those of a single block, for the models that write into
    it and for those that return their own array (item_knn)."""
    from jamrec.evaluation import protocols
    from jamrec.models import create

    settings = {"mbcf": {"epochs": 2}, "two_tower": {"epochs": 2}}.get(name, {})
    model = fitted(create(name, **settings), data)
    one = evaluate(model, data, protocols=("full",), n_boot=10)
    n_candidates = int((data.train.getnnz(axis=0) > 0).sum())
    monkeypatch.setattr(protocols, "_BLOCK_ELEMS", 7 * n_candidates)  # 7 users a block
    blocks = evaluate(model, data, protocols=("full",), n_boot=10)
    for split in ("val", "test"):
        (a,) = [p for p in one.per_user if p.protocol == "full" and p.split == split]
        (b,) = [p for p in blocks.per_user if p.protocol == "full" and p.split == split]
        assert len(a.users) > 7 and np.array_equal(a.users, b.users)
        assert np.array_equal(a.best_rank, b.best_rank)
        np.testing.assert_allclose(b.metrics.values, a.metrics.values, rtol=1e-6)


def test_full_sample_same_users_for_every_model_and_reuses_full(data):
    view = split_view(data, "test")
    sample = sample_users(view, 50, seed=3)
    assert len(sample) == 50 and set(sample) <= set(view.users.tolist())
    np.testing.assert_array_equal(sample, sample_users(view, 50, seed=3))
    assert not np.array_equal(sample, sample_users(view, 50, seed=4))
    seen = []
    for weights in ({"test": 1.0}, {"train": 1.0}):
        spy = Indicator(data, weights)
        evaluate(spy, data, ("test",), ("full_sample",), seed=3, user_sample=50, n_boot=20)
        seen.append(np.concatenate([u for u, _ in spy.calls]))
    np.testing.assert_array_equal(seen[0], sample)
    np.testing.assert_array_equal(seen[1], sample)
    model = fitted(Popularity(), data)
    alone = evaluate(model, data, ("test",), ("full_sample",), seed=3, user_sample=50, n_boot=20)
    both = evaluate(
        model, data, ("test",), ("full", "full_sample"), seed=3, user_sample=50, n_boot=20
    )
    assert [r for r in both.rows if r.protocol == "full_sample"] == alone.rows
    want = brute_full(model, data, "test", users=sample).mean(axis=0)
    np.testing.assert_allclose(result_means(alone, "full_sample", "test"), want)


def test_pairwise_models_get_the_sample_only(data):
    model = Indicator(data, {"val": 1.0}, pairwise=True)
    result = evaluate(model, data, n_boot=20)
    assert {r.protocol for r in result.rows} == {"full_sample", "sampled_100"}
    with pytest.raises(ValueError, match="pairwise"):
        evaluate(model, data, protocols=("full",))


def brute_sampled(model, data, split, seed):
    """Each relevant track sorted with its user's sampled candidates, in Python."""
    view, tie = split_view(data, split), tie_rank(data.n_tracks)
    means = []
    for u in view.users.tolist():
        seen = view.relevant[[u]] + view.excluded[[u]]
        negatives = sample_negatives(seen, np.array([u]), 100, [seed, SPLIT_CODES[split]])[0]
        negatives = view.candidates[negatives[negatives >= 0]].tolist()
        assert not set(negatives) & (sets(data.positives(), u))
        rows = []
        for t in view.candidates[view.relevant[u].indices].tolist():
            listed = np.array([*negatives, t])
            scores = model.score(np.array([u]), listed)[0]
            ranked = sorted(range(len(listed)), key=lambda i: (-scores[i], tie[listed[i]]))
            rows.append(user_row([ranked.index(len(listed) - 1) + 1], 1))
        means.append(np.mean(rows, axis=0))
    return np.mean(means, axis=0)


def test_sampled_protocol_equals_brute_force_and_pairwise_path():
    data = make_dataset(n_users=200, n_tracks=160, seed=1)
    model = fitted(Popularity(), data)
    result = evaluate(model, data, protocols=("sampled_100",), seed=5, n_boot=20)
    for split in ("val", "test"):
        want = brute_sampled(model, data, split, seed=5)
        np.testing.assert_allclose(result_means(result, "sampled_100", split), want)
    pairwise = fitted(Popularity(), data)
    pairwise.pairwise = True
    again = evaluate(pairwise, data, protocols=("sampled_100",), seed=5, n_boot=20)
    assert again.rows == result.rows


def test_sampled_random_scorer_hr10_is_about_10_in_101():
    data = make_dataset(n_users=2500, n_tracks=400, seed=2)
    result = evaluate(fitted(Random(), data), data, ("test",), ("sampled_100",), n_boot=100)
    hr = result.value("sampled_100", "test", "hr", 10)
    assert abs(hr - 10 / 101) < 0.02, hr
    mrr = result.value("sampled_100", "test", "mrr")
    assert abs(mrr - sum(1 / r for r in range(1, 102)) / 101) < 0.01, mrr


def test_by_default_only_the_test_split_is_fully_ranked_for_every_user(data):
    model = fitted(Popularity(), data)
    default = evaluate(model, data, n_boot=10)
    assert {(r.protocol, r.split) for r in default.rows} == {
        ("full", "test"),
        *((p, s) for p in ("full_sample", "sampled_100") for s in ("val", "test")),
    }
    # val's full_sample computed alone equals the one read off a full ranking of val
    both = evaluate(model, data, n_boot=10, full_splits=("val", "test"))
    assert [r for r in both.rows if r.protocol != "full" or r.split == "test"] == default.rows
    # asked for by name, a protocol runs on every split
    named = evaluate(model, data, ("val",), ("full",), n_boot=10)
    assert {(r.protocol, r.split) for r in named.rows} == {("full", "val")}


def test_expected_orderings_and_determinism(data):
    every = {"n_boot": 100, "full_splits": ("val", "test")}
    random = evaluate(fitted(Random(), data), data, **every)
    popular = evaluate(fitted(Popularity(), data), data, **every)
    oracle = evaluate(Indicator(data, {"val": 1.0, "test": 1.0}), data, **every)
    for protocol in ("full", "full_sample", "sampled_100"):
        for split in ("val", "test"):
            r, p, o = (x.value(protocol, split, "hr", 10) for x in (random, popular, oracle))
            assert r < p < o == 1.0, (protocol, split, r, p, o)
    again = evaluate(fitted(Popularity(), data), data, **every)
    assert again.rows == popular.rows
    assert set(popular.timings) == {
        f"{p}/{s}" for p in ("full", "full_sample", "sampled_100") for s in ("val", "test")
    }
    assert {"score_s", "rank_s", "bootstrap_s", "total_s"} <= set(popular.timings["full/test"])
    # What the warehouse's metrics suite checks, the oracle's all-equal values included.
    for row in random.rows + popular.rows + oracle.rows:
        assert 0 <= row.ci_low <= row.value <= row.ci_high <= 1 and row.n_users >= 1
        assert (row.k is None) == (row.metric == "mrr") and row.k in (None, *KS)


def test_val_probe_is_full_ndcg10_on_val(data):
    model = fitted(Popularity(), data)
    probe = val_probe(data, n_users=10_000)
    full = evaluate(model, data, ("val",), ("full",), n_boot=10)
    values = probe(model)
    (per_user,) = full.per_user
    assert values.dtype == np.float64 and values.shape == per_user.users.shape
    ndcg10 = per_user.metrics.values[:, per_user.metrics.columns.index(("ndcg", 10))]
    np.testing.assert_allclose(values, ndcg10)  # user by user: the probe pairs across calls
    assert values.mean() == pytest.approx(full.value("full", "val", "ndcg", 10))
    small = val_probe(data, n_users=20, seed=1)
    assert len(small(model)) == 20 and np.array_equal(small(model), small(model))


def test_minus_inf_and_nan_scores_gain_nothing(data):
    def means(value):
        result = evaluate(Constant(value), data, protocols=("full", "sampled_100"), n_boot=10)
        return np.array([r.value for r in result.rows])

    # -inf is an ordinary lowest score: all -inf ranks exactly like all 0 (tie order).
    np.testing.assert_array_equal(means(-np.inf), means(0.0))
    # NaN ranks the relevant tracks after every other candidate.
    result = evaluate(Constant(np.nan), data, ("test",), ("full",), n_boot=10)
    assert result.value("full", "test", "hr", 20) == 0.0


def test_a_split_without_evaluated_users(data):
    empty = dataclasses.replace(data, val=sp.csr_matrix(data.val.shape, dtype=np.float32))
    model = fitted(Popularity(), empty)
    result = evaluate(model, empty, n_boot=10)
    assert {r.split for r in result.rows} == {"test"}  # a mean over nobody is no result
    assert val_probe(empty)(model).shape == (0,)


def test_the_training_curve_probes_few_users_early_stopping_its_own(data, monkeypatch):
    """Early stopping off, the probe only draws the curve: CURVE_PROBE_USERS val users
    (1,000), not early stopping's 10,000 (a full ranking of each, every epoch)."""
    from jamrec.evaluation import protocols
    from jamrec.models import create
    from jamrec.operations.runs import training_probe

    monkeypatch.setattr(protocols, "CURVE_PROBE_USERS", 7)
    model = fitted(Popularity(), data)
    assert len(training_probe(create("mbcf", early_stopping=False), data)(model)) == 7
    stopping = create("mbcf", probe_users=11)  # on by default
    assert len(training_probe(stopping, data)(model)) == 11
    assert training_probe(create("mbcf", early_stopping=False), data, curve=False) is None
