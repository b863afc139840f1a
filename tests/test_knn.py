"""The neighbourhood baselines: exact shrunk-cosine neighbours, scores, and implicit."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from jamrec.models import knn
from jamrec.models.knn import KNNConfig, knn_similarity, weighted_rows
from tests.planted import ALL_USERS, make, planted


def _brute_force(rows: np.ndarray, k: int, shrinkage: float) -> np.ndarray:
    """Dense (n, n): each row's k best other rows by shrunk cosine, ties by index."""
    norms = np.sqrt((rows**2).sum(axis=1))
    dots = rows @ rows.T
    with np.errstate(invalid="ignore", divide="ignore"):  # empty rows: never neighbours
        sim = dots / (norms[:, None] * norms[None, :] + shrinkage)
    out = np.zeros_like(sim)
    for i in range(len(rows)):
        others = [j for j in range(len(rows)) if j != i and dots[i, j] != 0]
        best = sorted(others, key=lambda j: (-sim[i, j], j))[:k]
        out[i, best] = sim[i, best]
    return out


@pytest.mark.parametrize(("k", "shrinkage"), [(3, 0.0), (3, 5.0), (50, 1.0)])
def test_similarity_is_the_exact_top_k_whatever_the_blocks(monkeypatch, k, shrinkage):
    rng = np.random.default_rng(4)
    # Binary rows with many ties (equal cosines), the case where the tie rule matters.
    rows = (rng.random((40, 12)) < 0.3).astype(np.float64)
    rows[5] = 0  # a row without any column: no neighbours
    expected = _brute_force(rows, k, shrinkage)
    got = knn_similarity(sp.csr_matrix(rows), k, shrinkage).toarray()
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    monkeypatch.setattr(knn, "_WORK_PER_BLOCK", 7)  # a row or two per block
    assert np.array_equal(knn_similarity(sp.csr_matrix(rows), k, shrinkage).toarray(), got)


# implicit's CosineRecommender converts its own normalised matrix to CSR and warns about it
@pytest.mark.filterwarnings("ignore:Method expects CSR input:implicit.utils.ParameterWarning")
def test_without_shrinkage_item_knn_has_implicits_cosine_neighbours():
    from implicit.nearest_neighbours import CosineRecommender

    data, _ = planted()
    k = 10
    ours = make("item_knn", neighbours=k, shrinkage=0.0).fit(data).similarity
    theirs = CosineRecommender(K=k + 1)  # implicit keeps each track itself as a neighbour
    theirs.fit(sp.csr_matrix(data.train), show_progress=False)
    reference = theirs.similarity.tocsr().astype(np.float64)
    reference.setdiag(0)
    reference.eliminate_zeros()
    for row in range(ours.shape[0]):
        # Equal similarity values (which of equally similar tracks is kept may differ).
        mine = np.sort(ours[row].data)[::-1]
        np.testing.assert_allclose(mine, np.sort(reference[row].data)[::-1][: len(mine)], 1e-5)


def test_scores_are_summed_similarities_and_fold_in_equals_trained():
    data, _ = planted()
    for name in ("item_knn", "user_knn"):
        model = make(name, neighbours=5).fit(data)
        train = data.train.toarray()
        sim = model.similarity.toarray()
        expected = train @ sim if name == "item_knn" else sim @ train
        np.testing.assert_allclose(model.score(ALL_USERS), expected, rtol=1e-5)
        items = np.array([7, 3, 3, 0])  # any order, repeats allowed
        np.testing.assert_allclose(model.score(ALL_USERS[:4], items), expected[:4][:, items])
    model = make("item_knn").fit(data)
    folded = model.fold_in_scores(data.train[:6], np.arange(data.n_tracks))
    np.testing.assert_array_equal(folded, model.score(ALL_USERS[:6]))


def test_bm25_weights_rows_with_implicit():
    data, _ = planted()
    rows = weighted_rows(data.train.T.tocsr(), KNNConfig(similarity="bm25"))
    assert rows.shape == (data.n_tracks, data.n_users)
    assert not np.allclose(rows.data, 1.0)  # weighted, unlike the cosine's binary rows
    model = make("item_knn", similarity="bm25").fit(data)
    assert model.similarity.nnz > 0 and np.isfinite(model.similarity.data).all()
