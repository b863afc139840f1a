"""The two-tower hybrid beyond the contract: cold tracks, the user tower from tracks, the
leave-one-out training pairs, save/load of its buffers.

Uses the contract suite's planted data (60 users, 40 tracks, 3 taste groups that show in
three audio features); six tracks, two per group, are made cold (no train interaction).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from jamrec.models import load
from tests.planted import ALL_USERS, N_GROUPS, N_TRACKS, make, planted

COLD = np.arange(6)  # tracks 0..5: two per group (track group = index % 3)


@pytest.fixture(scope="module")
def cold_data():
    """Planted data with tracks 0..5 removed from train: (train data, held-out positives)."""
    data, held = planted()
    train = data.train.tolil()
    train[:, COLD] = 0
    data.train = sp.csr_matrix(train)
    data.train.eliminate_zeros()
    return data, held


@pytest.fixture(scope="module")
def fitted(cold_data):
    return make("two_tower").fit(cold_data[0])


def test_cold_tracks_get_finite_feature_driven_scores(fitted, cold_data):
    data, _ = cold_data
    assert not data.candidates[COLD].any()
    scores = fitted.score(ALL_USERS)
    assert np.isfinite(scores).all()
    # Their id rows are gated off: changing them changes nothing...
    weights = fitted.module.tracks.weight
    kept = weights.detach().clone()
    with torch.no_grad():
        weights[COLD] += 1.0
    try:
        np.testing.assert_array_equal(fitted.score(ALL_USERS), scores)
    finally:
        with torch.no_grad():
            weights.copy_(kept)
    # ...and training never moved them (zero gradient, so Adam never steps them)
    untrained = make("two_tower")
    untrained.n_users, untrained.n_tracks = data.train.shape
    initial = untrained._build(untrained._features(data)).tracks.weight.detach()
    learnt = fitted.module.tracks.weight.detach()
    assert torch.equal(learnt[COLD], initial[COLD])
    assert not torch.equal(learnt[6:], initial[6:])


def test_cold_tracks_rank_by_taste(fitted):
    """Among the cold tracks, a user's own group outranks the others (chance: 0.5)."""
    scores = fitted.score(ALL_USERS, COLD)
    user_group, cold_group = ALL_USERS % N_GROUPS, COLD % N_GROUPS
    aucs = []
    for user, group in zip(ALL_USERS, user_group):
        pos, neg = scores[user, cold_group == group], scores[user, cold_group != group]
        aucs.append(((pos[:, None] > neg) + 0.5 * (pos[:, None] == neg)).mean())
    assert np.mean(aucs) > 0.7, np.mean(aucs)  # 0.82 here; 0.82-0.90 over data seeds 0-2


def test_user_from_tracks_is_the_trained_track_part(fitted, cold_data):
    data, _ = cold_data
    from_tracks = fitted.user_from_tracks(data.train[ALL_USERS])
    np.testing.assert_allclose(from_tracks, fitted.track_part(ALL_USERS), rtol=1e-5, atol=1e-6)
    # with the user id added back, the vectors score exactly like the model
    user_ids = fitted.module.users.weight.detach().numpy()
    np.testing.assert_allclose(
        fitted.score_vectors(from_tracks + user_ids), fitted.score(ALL_USERS), rtol=1e-4, atol=1e-5
    )
    empty = fitted.user_from_tracks(sp.csr_matrix((1, N_TRACKS)))
    assert np.array_equal(empty, np.zeros_like(empty))


def test_training_leaves_a_positive_out_of_its_own_history(fitted, cold_data):
    data, _ = cold_data
    net = fitted.module
    user = 4
    mine = torch.as_tensor(data.train[user].indices)
    other = torch.as_tensor(np.setdiff1d(np.arange(6, N_TRACKS), mine.numpy())[:3])
    with torch.no_grad():
        v = net.track_vectors(torch.arange(N_TRACKS))
        e_u, d = net.users.weight[user], net.dim
        logits = net(torch.full((len(mine) + 3,), user), torch.cat([mine, other]))
        for logit, track in zip(logits, torch.cat([mine, other])):
            rest = mine[mine != track]
            h = v[rest, :d].mean(0)
            torch.testing.assert_close(logit, (e_u + h) @ v[track, :d] + v[track, d])


def test_save_load_keeps_history_and_mask(fitted, tmp_path):
    loaded = load(fitted.save(tmp_path / "tt"))
    assert np.array_equal(loaded.score(ALL_USERS), fitted.score(ALL_USERS))
    assert np.array_equal(loaded.mean, fitted.mean) and np.array_equal(loaded.std, fitted.std)
    assert not loaded.module.has_id[COLD].any()


def test_published_negatives_are_supported(cold_data):
    """The study's set-up: the published negatives, cold tracks among them or not."""
    data, _ = cold_data
    model = make("two_tower", negatives_per_positive=0, epochs=2).fit(data)
    assert model.stats["samples"] == 2 * (data.train.nnz + data.negatives.nnz)
    assert np.isfinite(model.score(ALL_USERS)).all()


def test_history_snapshot_rewritten_in_place_equals_a_fresh_one(fitted):
    """The snapshot's track table is reused from one refresh to the next: after the weights
    move, the refreshed snapshot equals one built from scratch (zeros, the history tracks'
    vectors, ``embedding_bag``)."""
    net = copy.deepcopy(fitted.module)
    with torch.no_grad():
        net.refresh_history()
        first = net._snapshot[0]
        net.tracks.weight.add_(0.5)
        net.layer2.bias.sub_(0.25)
        net.refresh_history()
        vectors, sums, counts = net._snapshot
        tracks = torch.unique(net.history_indices)
        expected = torch.zeros_like(vectors)
        expected[tracks] = net._track_vectors_in_blocks(tracks)[:, : net.dim]
        bag = torch.nn.functional.embedding_bag(
            net.history_indices, expected, net.history_indptr[:-1], mode="sum"
        )
    assert vectors is first  # rewritten, not allocated anew
    torch.testing.assert_close(vectors, expected, rtol=0, atol=0)
    torch.testing.assert_close(sums, bag, rtol=0, atol=0)
    assert torch.equal(counts, net.history_indptr.diff())
    assert (sums != 0).any()


def test_history_snapshot_scores_like_the_exact_history_without_its_gradient(fitted):
    """``history_refresh > 0``: right after a snapshot, training logits equal the exact ones
    (own track left out too); only the batch's own tracks get a gradient."""
    net = fitted.module
    users = torch.as_tensor(np.repeat(np.arange(0, 60, 7), 4))
    items = torch.as_tensor(np.tile([6, 9, 20, 33], len(users) // 4))
    assert net._in_history(users, items).any() and not net._in_history(users, items).all()
    net.train()
    try:
        exact = net(users, items)
        exact.sum().backward()
        exact_grad = net.tracks.weight.grad.detach().clone()
        net.zero_grad(set_to_none=True)
        net.refresh_history()
        snapshot = net(users, items)
        snapshot.sum().backward()
        snapshot_grad = net.tracks.weight.grad.detach()
    finally:
        net.zero_grad(set_to_none=True)
        net.eval()
    assert net._snapshot is not None  # a probe (eval) between batches keeps it
    net.after_training()
    torch.testing.assert_close(snapshot, exact)
    touched = lambda grad: set(grad.abs().sum(1).nonzero().flatten().tolist())  # noqa: E731
    assert touched(snapshot_grad) == {6, 9, 20, 33}
    assert touched(exact_grad) > touched(snapshot_grad)  # the histories' tracks too
    assert net._snapshot is None  # the trainer drops it at the end: scoring uses the exact mean
