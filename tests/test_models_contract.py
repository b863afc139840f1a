"""The recommender contract, checked for every registered model on a tiny planted dataset.

In the style of implicit's checkerboard mixin: one test class, parametrised over every model
name in jamrec.models.MODELS, so a new model is held to the same contract as soon as it is listed.
The planted data: 60 users in 3 taste groups, 40 tracks in the same 3 groups; each user has
8 of their group's tracks in train and the rest held out; audio features show the group in
three of the eleven columns. Models that learn must rank held-out group tracks above the
other groups' tracks.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from jamrec.errors import JamrecError
from jamrec.models import MODELS, load
from jamrec.models.base import TrainData
from jamrec.models.torch import modules
from jamrec.models.torch.modules import HybridModule
from jamrec.models.torch.trainer import LazyAdam, epoch_samples, generator, sample_negatives
from tests.planted import (
    ALL_USERS,
    LEARNERS,
    N_TRACKS,
    N_TRAIN,
    N_USERS,
    make,
    planted,
)


def mean_auc(scores: np.ndarray, data: TrainData, held: sp.csr_matrix) -> float:
    """Mean over users of P(held-out group track outscores another group's track)."""
    group = data.truth.tracks.argmax(axis=1)
    aucs = []
    for user in range(scores.shape[0]):
        pos = scores[user, held[user].indices]
        neg = scores[user, group != group[held[user].indices[0]]]
        aucs.append(((pos[:, None] > neg) + 0.5 * (pos[:, None] == neg)).mean())
    return float(np.mean(aucs))


@pytest.fixture(scope="module")
def dataset():
    return planted()


@pytest.fixture(scope="module", params=sorted(MODELS))
def fitted(request, dataset):
    """(name, model fitted with seed 0) for every registered model."""
    return request.param, make(request.param).fit(dataset[0])


class TestContract:
    def test_score_shape_and_dtype(self, fitted):
        _, model = fitted
        scores = model.score(ALL_USERS[:5])
        assert scores.shape == (5, N_TRACKS) and scores.dtype == np.float32
        assert np.isfinite(scores).all()
        items = np.array([3, 0, 17])
        # a different matrix shape may take another BLAS path: equal up to rounding
        np.testing.assert_allclose(model.score(ALL_USERS[:5], items), scores[:, items], rtol=1e-5)

    def test_block_scorer_equals_score(self, fitted):
        """Blocks written into a reused buffer equal :meth:`score`, whatever the buffer
        held before (the evaluation passes the first rows of one buffer, batch after batch)."""
        _, model = fitted
        items = np.array([5, 1, 17, 30, 2])
        scorer = model.block_scorer(items)
        buffer = np.full((8, len(items)), np.nan, np.float32)
        for users in (ALL_USERS[:8], ALL_USERS[10:13]):
            got = scorer(users, buffer[: len(users)])
            assert got.shape == (len(users), len(items)) and got.dtype == np.float32
            np.testing.assert_allclose(got, model.score(users, items), rtol=1e-5, atol=1e-6)
            if fitted[0] in ("item_knn", "popularity"):  # the same sums: the same bits
                np.testing.assert_array_equal(got, model.score(users, items))

    def test_same_seed_same_scores(self, fitted, dataset):
        name, model = fitted
        again = make(name).fit(dataset[0])
        assert np.array_equal(again.score(ALL_USERS), model.score(ALL_USERS))

    def test_exclude_seen(self, fitted, dataset):
        _, model = fitted
        train = dataset[0].train.toarray().astype(bool)
        ids, _ = model.recommend(ALL_USERS, k=10)
        assert not train[ALL_USERS[:, None], ids].any()
        ids, _ = model.recommend(ALL_USERS, k=10, exclude_seen=False)
        assert train[ALL_USERS[:, None], ids].any()

    def test_k_beyond_catalogue(self, fitted):
        _, model = fitted
        ids, scores = model.recommend(ALL_USERS, k=100)
        assert ids.shape == scores.shape == (N_USERS, N_TRACKS)
        # the 8 seen tracks are padding at the end: id -1, score -inf
        assert (ids[:, -N_TRAIN:] == -1).all() and np.isneginf(scores[:, -N_TRAIN:]).all()
        assert (ids[:, :-N_TRAIN] >= 0).all()
        assert (np.diff(scores[:, :-N_TRAIN], axis=1) <= 0).all()
        ids, _ = model.recommend(ALL_USERS, k=100, exclude_seen=False)
        assert (np.sort(ids, axis=1) == np.arange(N_TRACKS)).all()

    def test_batch_equals_one_at_a_time(self, fitted):
        _, model = fitted
        ids, scores = model.recommend(ALL_USERS, k=10)
        for user in ALL_USERS:
            one_ids, one_scores = model.recommend(np.array([user]), k=10)
            assert np.array_equal(one_ids[0], ids[user])
            np.testing.assert_allclose(one_scores[0], scores[user], rtol=1e-5, atol=1e-5)

    def test_items_restriction(self, fitted):
        _, model = fitted
        items = np.arange(1, N_TRACKS, 3)
        ids, scores = model.recommend(ALL_USERS, k=5, items=items, exclude_seen=False)
        assert ids.shape == (N_USERS, 5) and np.isin(ids, items).all()
        full = model.score(ALL_USERS, items)
        best = -np.sort(-full, axis=1)[:, :5]
        np.testing.assert_allclose(scores, best, rtol=1e-6)

    def test_save_load_round_trip(self, fitted, dataset, tmp_path):
        name, model = fitted
        loaded = load(model.save(tmp_path / name))
        assert loaded.name == name and loaded.config == model.config
        assert np.array_equal(loaded.score(ALL_USERS), model.score(ALL_USERS))
        ids, scores = model.recommend(ALL_USERS, k=10)
        again_ids, again_scores = loaded.recommend(ALL_USERS, k=10, seen=dataset[0].train)
        assert np.array_equal(again_ids, ids) and np.array_equal(again_scores, scores)

    def test_reports_steps_and_probes_mid_training(self, fitted, dataset):
        name, _ = fitted
        rows, probed = [], []
        data = planted()[0]
        # the same per-user values every step: with early stopping on, it sees no gain
        # and stops after its patience, keeping the first step (off by default: every step)
        data.probe = lambda model: (
            probed.append(model.score(ALL_USERS[:2]).shape) or np.array([0.25, 0.75])
        )
        data.on_step = lambda step, loss, ndcg: rows.append((step, loss, ndcg))
        model = make(name).fit(data)
        steps = [step for step, _, _ in rows]
        maximum = getattr(model.config, "iterations", getattr(model.config, "epochs", 1))
        patience = getattr(model.config, "patience", None)
        stops = getattr(model.config, "early_stopping", False)
        expected = min(maximum, 1 + patience) if stops and patience else maximum
        assert len(rows) == expected and probed == [(2, N_TRACKS)] * expected
        assert steps == sorted(steps) and all(ndcg == 0.5 for _, _, ndcg in rows)
        if name in LEARNERS:
            assert steps == list(range(1, expected + 1))
            assert all(np.isfinite(loss) for _, loss, _ in rows)
            kept = 1 if stops else expected  # flat values: the first step is the best
            assert model.stopping is not None and model.stopping.best_step == kept
            assert model.stopping.stopped_step == expected
        else:
            assert model.stopping is None


@pytest.mark.parametrize("name", [*LEARNERS, "item_knn", "user_knn", "oracle"])
def test_learns_the_planted_groups(name, dataset):
    data, held = dataset
    auc = mean_auc(make(name).fit(data).score(ALL_USERS), data, held)
    assert auc > 0.8, f"{name}: mean AUC {auc:.3f}"


def test_random_is_chance(dataset):
    data, held = dataset
    auc = mean_auc(make("random").fit(data).score(ALL_USERS), data, held)
    assert abs(auc - 0.5) < 0.1


def test_fresh_negatives_avoid_positives_and_repeat_per_seed():
    data, _ = planted()
    # track 0 leaves train: it is no longer a candidate and must never be drawn
    train = data.train.tolil()
    train[:, 0] = 0
    data.train = train.tocsr()
    data.train.eliminate_zeros()
    users, items, labels = epoch_samples(data, 3, seed=7, epoch=2)
    n_pos = data.train.nnz
    assert int(labels.sum()) == n_pos and len(labels) == 4 * n_pos  # every draw found a negative
    neg = labels == 0
    positive = data.train.toarray().astype(bool)
    assert not positive[users[neg].numpy(), items[neg].numpy()].any()
    assert data.candidates[items[neg].numpy()].all() and not data.candidates[0]
    again = epoch_samples(data, 3, seed=7, epoch=2)
    assert all(torch.equal(a, b) for a, b in zip((users, items, labels), again))
    other = epoch_samples(data, 3, seed=7, epoch=3)
    assert not torch.equal(items, other[1])


def _isin_negatives(train, candidates, users, gen):
    """The sampler before its compiled membership test: ``torch.isin`` on sorted
    ``user * n_tracks + track`` keys (the reference the draws must equal)."""
    from jamrec.models.torch.trainer import MAX_REDRAWS

    pool = torch.from_numpy(np.flatnonzero(candidates).astype(np.int64))
    coo = train.tocoo()
    rows, cols = (
        torch.from_numpy(coo.row.astype(np.int64)),
        torch.from_numpy(coo.col.astype(np.int64)),
    )
    n_tracks = train.shape[1]
    keys = torch.sort(rows * n_tracks + cols).values
    items = pool[torch.randint(len(pool), (len(users),), generator=gen)]
    hit = torch.isin(users * n_tracks + items, keys)
    for _ in range(MAX_REDRAWS):
        redo = hit.nonzero().squeeze(1)
        if len(redo) == 0:
            break
        items[redo] = pool[torch.randint(len(pool), (len(redo),), generator=gen)]
        hit[redo] = torch.isin(users[redo] * n_tracks + items[redo], keys)
    return users[~hit], items[~hit]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fresh_negatives_equal_the_isin_reference(seed):
    """Dense users (most draws hit a positive and are re-drawn, some never find one),
    unsorted CSR indices, and a track nobody played (not a candidate)."""
    rng = np.random.default_rng(seed)
    n_users, n_tracks = 50, 30
    dense = rng.random((n_users, n_tracks)) < rng.uniform(0.05, 0.97, (n_users, 1))
    dense[:, 3] = False
    dense[0] = True  # a user who played every candidate: all of its draws are dropped
    dense[0, 3] = False
    train = sp.csr_matrix(dense.astype(np.float32))
    for row in range(n_users):  # unsorted indices within each row
        lo, hi = train.indptr[row], train.indptr[row + 1]
        train.indices[lo:hi] = rng.permutation(np.flatnonzero(dense[row]))
    train.has_sorted_indices = False
    candidates = np.asarray(dense.any(axis=0))
    users = torch.from_numpy(np.repeat(np.arange(n_users), 7).astype(np.int64))
    got = sample_negatives(train, candidates, users.clone(), generator(seed, 0, 1))
    want = _isin_negatives(train, candidates, users.clone(), generator(seed, 0, 1))
    assert all(torch.equal(a, b) for a, b in zip(got, want))
    assert len(got[0]) < len(users) and not (got[0] == 0).any()
    assert not dense[got[0].numpy(), got[1].numpy()].any()


def test_mbcf_trains_on_fresh_negatives(dataset):
    data, held = dataset
    model = make("mbcf", negatives_per_positive=2).fit(data)
    assert model.stats["samples"] == 3 * data.train.nnz * model.config.epochs
    assert mean_auc(model.score(ALL_USERS), data, held) > 0.8


def test_hybrid_split_scoring_equals_forward(monkeypatch):
    gen = torch.Generator().manual_seed(3)
    features = torch.randn(40, 11, generator=gen)
    net = HybridModule(60, 40, features, dim=8, hidden=16, generator=gen)
    with torch.no_grad():  # train-time weights are near zero: make the check sensitive
        for p in net.parameters():
            p.normal_(0, 0.5, generator=gen)
    users, items = torch.tensor([0, 5, 59]), torch.arange(40)
    pairs_u, pairs_i = torch.meshgrid(users, items, indexing="ij")
    with torch.no_grad():
        plain = net(pairs_u.reshape(-1), pairs_i.reshape(-1)).reshape(3, 40)
        torch.testing.assert_close(net.score_matrix(users, items), plain)
        monkeypatch.setattr(modules, "CHUNK_BYTES", 16 * 4 * 7)  # blocks of 7 pairs
        torch.testing.assert_close(net.score_matrix(users, items), plain)


def test_hybrid_scaler_is_fitted_on_candidates(dataset):
    data, _ = dataset
    model = make("hybrid", epochs=1).fit(data)
    np.testing.assert_allclose(model.mean, data.features[data.candidates].mean(axis=0), rtol=1e-5)


def test_als_confidence_is_one_plus_alpha(dataset):
    data, _ = dataset
    model = make("als").fit(data)
    liked = np.array([0, 3, 6, 9])
    folded = model.recalculate_user(liked)
    y = model.model.item_factors.astype(np.float64)
    c = np.ones(N_TRACKS)
    c[liked] = 1 + model.config.alpha
    p = np.zeros(N_TRACKS)
    p[liked] = 1
    a = y.T @ (c[:, None] * y) + model.config.regularization * np.eye(y.shape[1])
    np.testing.assert_allclose(folded, np.linalg.solve(a, y.T @ (c * p)), rtol=1e-3, atol=1e-4)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_cuda_without_a_device_is_a_clear_error(dataset):
    with pytest.raises(JamrecError, match="no CUDA device"):
        make("mbcf", device="cuda").fit(dataset[0])


def _embedding_steps(optimizer_class, batches, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights of a sparse (or dense) 6x3 embedding after one Adam step per batch of rows."""
    torch.manual_seed(0)
    embedding = torch.nn.Embedding(6, 3, sparse=optimizer_class is LazyAdam)
    optimizer = optimizer_class(embedding.parameters(), lr=0.1, **kwargs)
    for rows in batches:
        target = torch.arange(len(rows) * 3, dtype=torch.float32).reshape(-1, 3)
        loss = ((embedding(torch.tensor(rows)) - target) ** 2).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    state = optimizer.state[embedding.weight]
    first = state["moments"][:, 0] if "moments" in state else state["exp_avg"]
    return embedding.weight.detach().clone(), first.clone()


def test_lazy_adam_is_adam_on_the_rows_a_batch_touches():
    # Every row in every batch (one of them twice, so its gradients must be summed):
    # lazy Adam is exactly Adam.
    every_row = [[0, 1, 2, 3, 4, 5, 2]] * 3
    lazy, _ = _embedding_steps(LazyAdam, every_row)
    dense, _ = _embedding_steps(torch.optim.Adam, every_row)
    torch.testing.assert_close(lazy, dense)
    # Rows a batch leaves out keep their weights and moments; the others move.
    before, _ = _embedding_steps(LazyAdam, [[0, 1]])
    after, moments = _embedding_steps(LazyAdam, [[0, 1], [2, 3]])
    torch.testing.assert_close(after[[0, 1, 4, 5]], before[[0, 1, 4, 5]])
    assert (after[[2, 3]] != before[[2, 3]]).all()
    assert (moments[[4, 5]] == 0).all()


def test_compiled_sparse_step_equals_the_torch_step():
    """The fused kernel (:mod:`jamrec.models.torch.kernels`) against LazyAdam's torch path
    on fixed data: a 1,000-row table, batches with repeated rows, five steps."""
    from jamrec.models.torch.kernels import sparse_adam_rows

    rng = np.random.default_rng(0)
    weights = rng.normal(size=(1000, 16)).astype(np.float32)
    p_kernel, p_torch = weights.copy(), torch.from_numpy(weights.copy())
    m_kernel, m_torch = np.zeros((1000, 2, 16), np.float32), torch.zeros(1000, 2, 16)
    slots = np.full(1000, -1, np.int32)
    b1, b2, eps, lr = 0.9, 0.999, 1e-8, 1e-2
    for step in range(1, 6):
        index = rng.integers(0, 300, size=512)  # ~250 distinct rows, many repeated
        grads = rng.normal(size=(512, 16)).astype(np.float32)
        bc1, bc2 = 1 - b1**step, 1 - b2**step
        touched = sparse_adam_rows(
            p_kernel, m_kernel, slots, index, grads, lr, b1, b2, eps, bc1, bc2
        )
        sparse = torch.sparse_coo_tensor(
            torch.from_numpy(index)[None],
            torch.from_numpy(grads),
            (1000, 16),
            check_invariants=False,
        )
        LazyAdam._sparse_step(p_torch, sparse, m_torch, lr, b1, b2, eps, bc1, bc2)
        assert touched == len(np.unique(index))
        assert (slots == -1).all()  # the scratch map is left clean
    np.testing.assert_allclose(p_kernel, p_torch.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(m_kernel, m_torch.numpy(), rtol=1e-5, atol=1e-7)
    assert (p_kernel[300:] == weights[300:]).all()  # untouched rows keep their weights


def test_fused_mbcf_step_equals_forward_backward_and_step(monkeypatch):
    """LazyAdam.dot_step (the fused kernel) against autograd and LazyAdam's torch path
    (the kernel's reference) on one fixed network and three fixed batches with repeated
    users and tracks."""
    from jamrec.models.torch.modules import DotModule

    fused, reference = (DotModule(50, 80, 8, torch.Generator().manual_seed(0)) for _ in "ab")
    reference.users.sparse = reference.tracks.sparse = True
    fused_opt = LazyAdam(fused.parameters(), lr=0.05)
    reference_opt = LazyAdam(reference.parameters(), lr=0.05)
    monkeypatch.setattr(LazyAdam, "_compiled", staticmethod(lambda p: False))
    gen = torch.Generator().manual_seed(1)
    for _ in range(3):
        users = torch.randint(50, (64,), generator=gen)
        items = torch.randint(80, (64,), generator=gen)
        labels = (torch.rand(64, generator=gen) < 0.4).float()
        loss = fused_opt.dot_step(fused.users.weight, fused.tracks.weight, users, items, labels)
        expected = torch.nn.BCEWithLogitsLoss()(reference(users, items), labels)
        reference_opt.zero_grad()
        expected.backward()
        reference_opt.step()
        assert loss == pytest.approx(expected.item(), rel=1e-5)
    for name in ("users", "tracks"):
        torch.testing.assert_close(
            getattr(fused, name).weight, getattr(reference, name).weight, rtol=1e-5, atol=1e-6
        )


def test_fused_mbcf_step_on_two_threads_equals_one_thread():
    """dot_step updates the two tables on two threads when torch may use two: bit for bit
    the single-threaded kernel's result, step after step (repeated rows included)."""
    from jamrec.models.torch.modules import DotModule

    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            module = DotModule(50, 80, 8, torch.Generator().manual_seed(0))
            optimizer = LazyAdam(module.parameters(), lr=0.05)
            gen = torch.Generator().manual_seed(1)
            losses = []
            for _ in range(4):
                users = torch.randint(50, (64,), generator=gen)
                items = torch.randint(80, (64,), generator=gen)
                labels = (torch.rand(64, generator=gen) < 0.4).float()
                losses.append(
                    optimizer.dot_step(
                        module.users.weight, module.tracks.weight, users, items, labels
                    )
                )
            state = [optimizer.state[p]["moments"].clone() for p in module.parameters()]
            results.append(
                (losses, module.users.weight.clone(), module.tracks.weight.clone(), state)
            )
    finally:
        torch.set_num_threads(threads)
    (losses_1, users_1, tracks_1, state_1), (losses_2, users_2, tracks_2, state_2) = results
    assert losses_1 == losses_2
    assert torch.equal(users_1, users_2) and torch.equal(tracks_1, tracks_2)
    assert all(torch.equal(a, b) for a, b in zip(state_1, state_2, strict=True))


def _hybrid_batches(n_users: int, n_tracks: int, steps: int, size: int):
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        users = torch.randint(n_users, (size,), generator=gen)  # repeated rows, summed
        items = torch.randint(n_tracks, (size,), generator=gen)
        yield users, items, (torch.rand(size, generator=gen) < 0.4).float()


@pytest.mark.parametrize("dot", [True, False])
def test_fused_hybrid_step_equals_forward_backward_and_step(dot, monkeypatch):
    """LazyAdam.hybrid_step (no autograd: compiled gathers and head, BLAS products in two
    halves) against the hybrid's forward, BCE, autograd and LazyAdam's torch path on one
    fixed network and three fixed batches (an odd size: unequal halves)."""
    from jamrec.models.torch.modules import HybridModule

    def network() -> HybridModule:
        gen = torch.Generator().manual_seed(0)
        features = torch.randn(80, 5, generator=torch.Generator().manual_seed(2))
        return HybridModule(50, 80, features, 8, 16, gen, dot=dot)

    fused, reference = network(), network()
    reference.users.sparse = reference.tracks.sparse = True
    fused_opt = LazyAdam(fused.parameters(), lr=0.05)
    reference_opt = LazyAdam(reference.parameters(), lr=0.05)
    monkeypatch.setattr(LazyAdam, "_compiled", staticmethod(lambda p: False))
    for users, items, labels in _hybrid_batches(50, 80, 3, 63):
        loss = fused_opt.hybrid_step(fused, users, items, labels)
        expected = torch.nn.BCEWithLogitsLoss()(reference(users, items), labels)
        reference_opt.zero_grad()
        expected.backward()
        reference_opt.step()
        assert loss == pytest.approx(expected.item(), rel=1e-5)
    for (name, got), (_, want) in zip(
        fused.named_parameters(), reference.named_parameters(), strict=True
    ):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5, msg=name)
        assert not torch.equal(got, network().get_parameter(name)), f"{name} did not move"


def test_fused_hybrid_step_on_two_threads_equals_one_thread():
    """hybrid_step's two halves on two threads or one after the other: bit for bit."""
    from jamrec.models.torch.modules import HybridModule

    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            features = torch.randn(80, 5, generator=torch.Generator().manual_seed(2))
            module = HybridModule(50, 80, features, 8, 16, torch.Generator().manual_seed(0), True)
            optimizer = LazyAdam(module.parameters(), lr=0.05)
            losses = [
                optimizer.hybrid_step(module, users, items, labels)
                for users, items, labels in _hybrid_batches(50, 80, 4, 64)
            ]
            results.append((losses, [p.detach().clone() for p in module.parameters()]))
    finally:
        torch.set_num_threads(threads)
    (losses_1, params_1), (losses_2, params_2) = results
    assert losses_1 == losses_2
    assert all(torch.equal(a, b) for a, b in zip(params_1, params_2, strict=True))


_BLAS_PROBE = """
from dataclasses import replace
from threadpoolctl import threadpool_info, threadpool_limits
from tests.planted import make, planted

def blas():
    return sorted({lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"})

seen = []

def hook(step, loss):
    import scipy.linalg  # noqa: F401  (what a model's module may load mid-training)
    seen.append(blas())
    return False

data = replace(planted()[0], on_batch=hook)
with threadpool_limits(2, "blas"):
    make("hybrid").fit(data)
    after = blas()
print(seen[0], seen[-1], after)
"""


def test_hybrid_training_holds_blas_on_one_thread():
    """The fused hybrid's halves run on threads of their own: its training holds every
    BLAS on one thread whatever the process had (two BLAS threads would run them in
    turn), scipy's too though it is loaded later, and gives the setting back at the end.
    In a fresh interpreter: the order in which the BLAS libraries load is the point."""
    import subprocess
    import sys
    from pathlib import Path

    out = subprocess.run(
        [sys.executable, "-c", _BLAS_PROBE],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True, text=True, check=True, timeout=300,
    )  # fmt: skip
    assert out.stdout.split("\n")[-2] == "[1] [1] [2]", out.stdout + out.stderr


def test_lazy_adam_tables_on_two_threads_equal_one_thread():
    """LazyAdam.step updates its compiled sparse tables at once on two threads when torch
    may use two (the two-tower's): bit for bit the result of one after the other, on the
    same gradients (two tables with repeated rows, one dense parameter)."""
    gen = torch.Generator().manual_seed(0)
    shapes = [(50, 8), (80, 9)]
    batches = []
    for _ in range(4):
        grads = [
            torch.sparse_coo_tensor(
                torch.randint(rows, (1, 64), generator=gen),
                torch.randn(64, width, generator=gen),
                (rows, width),
                check_invariants=False,
            )
            for rows, width in shapes
        ]
        batches.append([*grads, torch.randn(9, 8, generator=gen)])
    start = [torch.randn(shape, generator=gen) for shape in [*shapes, (9, 8)]]
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            params = [torch.nn.Parameter(p.clone()) for p in start]
            optimizer = LazyAdam(params, lr=0.05)
            for grads in batches:
                for p, grad in zip(params, grads, strict=True):
                    p.grad = grad
                optimizer.step()
            results.append([p.detach().clone() for p in params])
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(a, b) for a, b in zip(*results, strict=True))
    assert all(not torch.equal(a, b) for a, b in zip(results[0], start, strict=True))


def test_compiled_hybrid_scoring_equals_the_torch_blocks():
    """HybridModule.score_from_parts: the compiled kernel (no gradient, CPU) against the
    torch blocks (what runs with gradients or on CUDA) on random parts."""
    from jamrec.models.torch.modules import HybridModule

    gen = torch.Generator().manual_seed(0)
    module = HybridModule(30, 40, torch.randn(40, 5, generator=gen), 8, 16, gen)
    users, tracks = torch.randn(30, 16, generator=gen), torch.randn(40, 16, generator=gen)
    with torch.no_grad():
        compiled = module.score_from_parts(users, tracks)
    reference = module.score_from_parts(users, tracks).detach()  # gradients on: torch
    torch.testing.assert_close(compiled, reference, rtol=1e-5, atol=1e-6)
    assert (compiled != 0).any()


def test_hybrid_scoring_in_tiles_on_two_threads_equals_one_pass_per_pair():
    """The compiled scoring over several track tiles (the last one partial), on two
    threads and on one: the same bits both ways, and each score the sum numpy gives."""
    import numba

    from jamrec.models.torch.kernels import relu_mlp_scores

    rng = np.random.default_rng(0)
    users = rng.standard_normal((7, 32), dtype=np.float32)
    tracks = rng.standard_normal((1000, 32), dtype=np.float32)
    w2 = rng.standard_normal(32, dtype=np.float32)
    outs = []
    threads = numba.get_num_threads()
    try:
        for n in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(n)
            out = np.full((7, 1000), np.nan, np.float32)
            relu_mlp_scores(users, tracks, w2, 0.5, out)
            outs.append(out)
    finally:
        numba.set_num_threads(threads)
    np.testing.assert_array_equal(outs[0], outs[1])
    expected = np.maximum(users[:, None, :] + tracks[None, :, :], 0) @ w2 + 0.5
    np.testing.assert_allclose(outs[0], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["mbcf", "hybrid"])
def test_training_with_the_compiled_step_equals_the_torch_step(name, dataset, monkeypatch):
    """Whole training runs: the kernel and the torch path give the same scores."""
    data, _ = dataset
    fused = make(name, epochs=2, negatives_per_positive=2).fit(data).score(ALL_USERS)
    monkeypatch.setattr(LazyAdam, "_compiled", staticmethod(lambda p: False))
    reference = make(name, epochs=2, negatives_per_positive=2).fit(data).score(ALL_USERS)
    np.testing.assert_allclose(fused, reference, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["hybrid", "two_tower"])
def test_use_audio_false_feeds_no_audio_feature(name, dataset):
    """The ablation's switch: without audio the networks see no audio column at all, so
    changing every audio feature changes nothing; with it, the scores move."""
    data, _ = dataset
    shuffled = TrainData(**{**vars(data), "features": data.features[::-1].copy()})
    for use_audio, same in ((False, True), (True, False)):
        a = make(name, epochs=1, use_audio=use_audio).fit(data).score(ALL_USERS[:5])
        b = make(name, epochs=1, use_audio=use_audio).fit(shuffled).score(ALL_USERS[:5])
        assert np.array_equal(a, b) == same, (name, use_audio)


def test_random_scores_in_one_compiled_pass_equal_the_three_numpy_passes():
    """Random's scores: the multiply (mod 2**32), shift and or, bit for bit."""
    from jamrec.models.baselines import _random_words

    rng = np.random.default_rng(1)
    values = rng.integers(0, 2**32, 513, dtype=np.uint32)
    values[:3] = [0, 1, 2**32 - 1]
    multipliers = rng.integers(0, 2**32, 9, dtype=np.uint32) | np.uint32(1)
    words = values[None, :] * multipliers[:, None]  # numpy's uint32 product wraps
    expected = (words >> np.uint32(9)) | np.uint32(0x3F800000)
    out = np.empty((9, 513), np.uint32)
    _random_words(values, multipliers, out)
    np.testing.assert_array_equal(out, expected)
    assert ((out.view(np.float32) >= 1) & (out.view(np.float32) < 2)).all()


def test_the_truth_scored_in_chunks_on_every_core_equals_one_pass():
    """Truth.scorer computes the planted score in chunks of users on the product threads:
    the formula, written out here, to float32 rounding; the same bits into any buffer, and
    the same values (to BLAS's rounding) for the users one by one."""
    import math

    from jamrec.models.dataset import Truth

    rng = np.random.default_rng(0)
    n_users, n_tracks, dim, audio_dim = 70, 300, 8, 5  # several chunks of 32 users
    truth = Truth(
        rng.standard_normal((n_users, dim), dtype=np.float32),
        rng.standard_normal((n_tracks, dim), dtype=np.float32),
        rng.standard_normal(n_tracks, dtype=np.float32),
        beta=1.7,
        points=rng.standard_normal((n_users, audio_dim), dtype=np.float32),
        audio=rng.standard_normal((n_tracks, audio_dim), dtype=np.float32),
        audio_share=0.3,
        audio_width=0.8,
        audio_scale=2.0,
        audio_offset=-0.5,
    )
    users, items = rng.permutation(n_users)[:50], rng.permutation(n_tracks)[:200]
    one = truth.users[users] @ truth.tracks[items].T
    one *= np.float32(truth.beta * math.sqrt(1 - truth.audio_share))
    p, a = truth.points[users], truth.audio[items]
    d2 = (p**2).sum(axis=1)[:, None] + (a**2).sum(axis=1)[None, :] - 2 * p @ a.T
    bump = np.exp(np.maximum(d2, 0) * np.float32(-0.5 / truth.audio_width**2))
    weight = truth.beta * math.sqrt(truth.audio_share)
    one += np.float32(weight * truth.audio_scale) * bump
    one += np.float32(weight * truth.audio_offset)
    one += truth.bias[items]
    whole = truth.score(users, items)
    np.testing.assert_allclose(whole, one, rtol=1e-5, atol=1e-5)
    buffer = np.full((64, len(items)), np.nan, np.float32)
    np.testing.assert_array_equal(truth.scorer(items)(users, buffer[: len(users)]), whole)
    scorer = truth.scorer(items)
    alone = np.stack([scorer(users[i : i + 1], buffer[:1])[0].copy() for i in range(len(users))])
    np.testing.assert_allclose(alone, whole, rtol=1e-5, atol=1e-5)  # BLAS may differ by bits
    pairs = truth.pair_scores(np.repeat(users, len(items)), np.tile(items, len(users)))
    np.testing.assert_allclose(pairs.reshape(whole.shape), whole, rtol=1e-5, atol=1e-5)
    no_audio = Truth(truth.users, truth.tracks, truth.bias, beta=1.7)
    np.testing.assert_allclose(
        no_audio.pair_scores(users, items[: len(users)]),
        no_audio.score(users, items[: len(users)]).diagonal(),
        rtol=1e-5,
        atol=1e-5,
    )
    plain = truth.users[users] @ truth.tracks[items].T * np.float32(1.7) + truth.bias[items]
    np.testing.assert_allclose(no_audio.score(users, items), plain, rtol=1e-5, atol=1e-5)


def test_products_split_over_threads_equal_one_product():
    """matmul_into spreads a block's rows over threads of the one-thread BLAS product: one
    np.matmul's values, whatever the buffer held. The same bits where BLAS rounds a row the
    same whatever the product's other rows (OpenBLAS's SkylakeX kernels); its Haswell
    kernels (an AMD Zen 3) differ by float32 rounding between a block and its halves."""
    from jamrec.models.products import matmul_into

    rng = np.random.default_rng(1)
    a = rng.standard_normal((300, 64), dtype=np.float32)
    b = rng.standard_normal((1000, 64), dtype=np.float32).T
    out = np.full((300, 1000), np.nan, np.float32)
    assert matmul_into(a, b, out) is out
    np.testing.assert_allclose(out, np.matmul(a, b), rtol=1e-5, atol=1e-5)
    parts = [np.matmul(a[lo : lo + 150], b) for lo in (0, 150)]  # what two threads compute
    if np.array_equal(np.vstack(parts), np.matmul(a, b)):
        np.testing.assert_array_equal(out, np.matmul(a, b))
