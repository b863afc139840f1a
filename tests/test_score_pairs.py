"""Scoring aligned (user, track) pairs agrees with scoring whole rows, for every model kind."""

from __future__ import annotations

import numpy as np
import pytest

from jamrec.models import create
from jamrec.models.base import TrainData
from jamrec.models.dataset import open_dataset


@pytest.mark.parametrize(
    ("name", "config"),
    [
        ("popularity", {}),
        ("random", {}),
        ("als", {"iterations": 2}),
        ("hybrid", {"epochs": 1, "threads": 1}),
        ("oracle", {}),  # its own compiled pairs (the planted score), not the default
        ("mbcf", {"epochs": 1, "threads": 1}),
        ("two_tower", {"epochs": 1, "threads": 1}),
    ],
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


@pytest.mark.parametrize("dot", [True, False])
def test_the_hybrids_compiled_pairs_equal_its_torch_blocks(tiny_warehouse, monkeypatch, dot):
    """Re-ranking scores pairs in one compiled pass on the CPU (relu_mlp_pairs and the
    dot path): the values torch's blocks of gathered parts give, repeated users and
    tracks included, in any order of the pairs."""
    from jamrec.models.torch import recommenders

    data = open_dataset(tiny_warehouse)
    model = create("hybrid", epochs=1, threads=1, dot=dot).fit(TrainData.from_dataset(data))
    rng = np.random.default_rng(1)
    users = rng.integers(0, data.n_users, 3000)
    items = rng.integers(0, data.n_tracks, 3000)
    compiled = model.score_pairs(users, items)
    order = rng.permutation(len(users))
    np.testing.assert_array_equal(model.score_pairs(users[order], items[order]), compiled[order])
    monkeypatch.setattr(recommenders, "compiled_scoring", lambda *parts: False)
    blocks = model.score_pairs(users, items)
    np.testing.assert_allclose(compiled, blocks, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["als", "mbcf", "oracle", "popularity", "random"])
def test_sampled_lists_scored_as_pairs_equal_blocks(tiny_warehouse, monkeypatch, name):
    """Models with ``pair_scoring`` score the sampled protocol's lists as pairs: the same
    per-user metrics as the block of each batch's users against the union of their lists
    (to float rounding: every rank equal here)."""
    from jamrec.evaluation.protocols import evaluate

    data = open_dataset(tiny_warehouse)
    options = {"epochs": 2} if name == "mbcf" else {}
    model = create(name, seed=0, **options).fit(TrainData.from_dataset(data))
    assert model.pair_scoring
    pairs = evaluate(model, data, protocols=["sampled_100"], n_boot=10)
    monkeypatch.setattr(type(model), "pair_scoring", False)
    blocks = evaluate(model, data, protocols=["sampled_100"], n_boot=10)
    assert pairs.rows == blocks.rows
    for a, b in zip(pairs.per_user, blocks.per_user, strict=True):
        np.testing.assert_array_equal(a.users, b.users)
        np.testing.assert_array_equal(a.metrics.values, b.metrics.values)


def test_popularitys_full_ranking_off_one_row_equals_scoring_blocks(tiny_warehouse, monkeypatch):
    """Popularity scores everyone alike: its full ranking orders one row
    (``shared_scores``); the same metrics, per-user results and kept lists as scoring a
    block per batch."""
    from jamrec.evaluation.protocols import evaluate
    from jamrec.models.baselines import Popularity

    data = open_dataset(tiny_warehouse)
    model = create("popularity").fit(TrainData.from_dataset(data))
    shared = evaluate(model, data, n_boot=10, top_n=20, beyond_k=10)
    monkeypatch.setattr(Popularity, "shared_scores", False)
    blocks = evaluate(model, data, n_boot=10, top_n=20, beyond_k=10)
    assert shared.rows == blocks.rows
    for a, b in zip(shared.per_user, blocks.per_user, strict=True):
        np.testing.assert_array_equal(a.metrics.values, b.metrics.values)
    np.testing.assert_array_equal(shared.top_lists.ids, blocks.top_lists.ids)
    np.testing.assert_array_equal(shared.beyond_lists[1], blocks.beyond_lists[1])
