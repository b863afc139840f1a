"""The compiled top-k (:mod:`jamrec.models.topk`) equals a full sort in jamrec's rank
order: higher score first, equal scores by tie rank, NaN after every number."""

from __future__ import annotations

import numpy as np
import pytest

from jamrec.models.base import top_k
from jamrec.models.topk import top_k_columns


def _sorted(scores: np.ndarray, k: int, tie: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The reference: every row fully sorted (lexsort: NaN last, score desc, tie asc)."""
    cols = []
    for row in scores:
        nan = np.isnan(row)
        cols.append(np.lexsort((tie, -np.where(nan, 0, row), nan))[:k])
    cols_ = np.array(cols, np.int64).reshape(len(scores), -1)
    return cols_, np.take_along_axis(scores, cols_, axis=1)


@pytest.mark.parametrize("k", [1, 5, 50, 300])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_top_k_equals_a_full_sort_with_ties_infinities_and_nan(k, seed):
    rng = np.random.default_rng(seed)
    n_rows, n = 40, 1000  # many of the kernel's 64-column chunks, most skipped
    # few distinct values, so ties are everywhere, and some -inf, +inf and NaN
    scores = rng.integers(-5, 5, (n_rows, n)).astype(np.float32)
    special = rng.random((n_rows, n))
    scores[special < 0.05] = -np.inf
    scores[(special >= 0.05) & (special < 0.08)] = np.nan
    scores[(special >= 0.08) & (special < 0.09)] = np.inf
    scores[3] = np.nan  # a row of NaN only
    scores[4] = 1.0  # a row of ties only
    scores[5, :320] = np.nan  # the heap starts full of NaN, which every number beats
    tie = rng.permutation(n)
    cols, values = top_k_columns(scores, k, tie)
    expected_cols, expected_values = _sorted(scores, k, tie)
    np.testing.assert_array_equal(cols, expected_cols)
    np.testing.assert_array_equal(values, expected_values)


def test_top_k_on_continuous_scores_and_the_ids_it_returns():
    rng = np.random.default_rng(7)
    scores = rng.standard_normal((25, 5_000)).astype(np.float32)
    scores[:, :100] = -np.inf  # excluded items come back as -1 once the finite ones run out
    items = rng.permutation(10_000)[:5_000]
    tie = rng.permutation(5_000)
    ids, values = top_k(scores, items, 4_950, tie)
    expected_cols, expected_values = _sorted(scores, 4_950, tie)
    expected_ids = items[expected_cols]
    expected_ids[np.isneginf(expected_values)] = -1
    np.testing.assert_array_equal(ids, expected_ids)
    np.testing.assert_array_equal(values, expected_values)
    assert (ids[:, 4_900:] == -1).all() and (ids[:, :4_900] >= 0).all()


def test_k_beyond_the_columns_and_empty_blocks():
    scores = np.array([[0.5, 2.0, 1.0]], np.float32)
    cols, values = top_k_columns(scores, 10, np.arange(3))
    np.testing.assert_array_equal(cols, [[1, 2, 0]])
    np.testing.assert_array_equal(values, [[2.0, 1.0, 0.5]])
    assert top_k_columns(np.zeros((0, 3), np.float32), 2, np.arange(3))[0].shape == (0, 2)
    assert top_k(np.zeros((2, 0), np.float32), np.arange(0), 3, np.arange(0))[0].shape == (2, 0)


@pytest.mark.parametrize("name", ["popularity", "als"])
def test_every_users_recommendations_equal_a_full_sort_of_their_unseen_candidates(
    tiny_warehouse, monkeypatch, name
):
    """``top_n_for_all`` (a reused block, positives written as -inf, the compiled top-k)
    against sorting every user's whole score row; small batches, so several are used."""
    from jamrec.models import create
    from jamrec.models.base import TrainData, tie_rank
    from jamrec.models.dataset import open_dataset
    from jamrec.operations import recommendations

    data = open_dataset(tiny_warehouse)
    model = create(name, seed=0).fit(TrainData.from_dataset(data))
    monkeypatch.setattr(recommendations, "BATCH", 7)
    ids, values = recommendations.top_n_for_all(model, data, 20)

    candidates = np.flatnonzero(data.candidates)
    # Scored by the same products, batch by batch: BLAS's rounding may depend on a
    # product's rows (OpenBLAS's Haswell kernels), and the top-k, not BLAS, is under test.
    users, scorer = np.arange(data.n_users), model.block_scorer(candidates)
    scores = np.vstack(
        [
            scorer(
                users[lo : lo + 7], np.empty((len(users[lo : lo + 7]), len(candidates)), np.float32)
            )
            for lo in range(0, data.n_users, 7)
        ]
    )
    scores[data.positives()[:, candidates].toarray() > 0] = -np.inf
    cols, expected_values = _sorted(scores, 20, tie_rank(data.n_tracks)[candidates])
    expected_ids = candidates[cols]
    expected_ids[np.isneginf(expected_values)] = -1
    np.testing.assert_array_equal(ids, expected_ids)
    # top_n_for_all orders the candidates' columns by tie rank: in its own column order a
    # Haswell kernel may round a score differently in the last bit
    np.testing.assert_allclose(values, expected_values, rtol=1e-6, atol=0)
    assert (ids >= 0).any(axis=1).all()  # every user gets a list


@pytest.mark.parametrize("name", ["popularity", "als", "mbcf"])
def test_the_lists_the_evaluation_keeps_equal_the_served_computation(tiny_warehouse, name):
    """``evaluate(top_n=...)`` reads every user's list off the full ranking's blocks
    (positives of every split masked after the ranks are counted; users without a test
    positive scored for their lists alone): the same lists as ``top_n_for_all``, and
    the same metrics as an evaluation that keeps none."""
    from jamrec.evaluation.protocols import evaluate, split_view
    from jamrec.models import create
    from jamrec.models.base import TrainData
    from jamrec.models.dataset import open_dataset
    from jamrec.operations import recommendations

    data = open_dataset(tiny_warehouse)
    options = {"epochs": 2} if name == "mbcf" else {}
    model = create(name, seed=0, **options).fit(TrainData.from_dataset(data))
    kept = evaluate(model, data, top_n=20, n_boot=10)
    plain = evaluate(model, data, n_boot=10)
    assert kept.rows == plain.rows
    assert plain.top_lists is None and kept.top_lists is not None
    # some users have no test positive among the candidates: they are listed too
    assert len(split_view(data, "test").users) < data.n_users
    ids, values = recommendations.top_n_for_all(model, data, 20)
    np.testing.assert_array_equal(kept.top_lists.ids, ids)
    np.testing.assert_allclose(kept.top_lists.scores, values, rtol=1e-6, atol=1e-6)


def test_re_ranking_a_pool_in_one_pass_equals_ranking_each_users_pool_alone():
    """The served lists of a re-ranker (every pair of a batch scored at once, one lexsort)
    against the per-user reference: the compiled top-k of each user's own pool, with ties,
    NaN, -inf and padded pools."""
    from jamrec.operations.recommendations import _rerank

    rng = np.random.default_rng(3)
    n_users, n_tracks, depth, n = 30, 400, 50, 20
    matrix = rng.integers(-3, 3, (n_users, n_tracks)).astype(np.float32)
    special = rng.random((n_users, n_tracks))
    matrix[special < 0.1] = -np.inf
    matrix[(special >= 0.1) & (special < 0.15)] = np.nan

    class Scores:
        def score_pairs(self, users, items):
            return matrix[users, items]

    pool = np.stack([rng.permutation(n_tracks)[:depth] for _ in range(n_users)])
    pool[5, 10:] = -1  # a short pool: fewer than n tracks
    pool[6, :] = -1  # nothing to re-rank
    pool[7, 30:] = -1
    tie = rng.permutation(n_tracks)
    users = np.arange(n_users)
    ids, values = _rerank(Scores(), users, pool, n, tie)
    for user in users:
        items = pool[user][pool[user] >= 0]
        expected_ids = np.full(n, -1)
        expected_values = np.full(n, -np.inf, np.float32)
        if len(items):
            b, v = top_k(matrix[user, items][None, :], items, min(n, len(items)), tie[items])
            expected_ids[: b.shape[1]], expected_values[: b.shape[1]] = b[0], v[0]
        np.testing.assert_array_equal(ids[user, : len(expected_ids)], expected_ids)
        np.testing.assert_array_equal(values[user, : len(expected_ids)], expected_values)
