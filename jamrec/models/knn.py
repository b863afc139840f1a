"""Neighbourhood baselines: item-kNN and user-kNN, the literature's first question.

Both compare rows of the train matrix (tracks by their users for ``item_knn``, users by
their tracks for ``user_knn``) with a shrunk cosine:

    sim(a, b) = x_a . x_b / (|x_a| |x_b| + shrinkage)

where ``x`` is the binary row (``similarity="cosine"``) or the row weighted by BM25
(``similarity="bm25"``: ``implicit``'s ``bm25_weight``, rows as documents and the other
side as terms, the feature weighting of Dacrema et al., RecSys 2019). Shrinkage (Koren's
and Bell's damping of similarities supported by few co-occurrences) pulls pairs of rare
rows towards zero. Each row keeps its ``neighbours`` most similar other rows (itself
excluded; ties by index), so the similarity matrix has at most ``neighbours`` entries a
row and fits in memory at TIMJ scale. Defaults are Dacrema et al.'s ItemKNN CF defaults
(50 neighbours, shrinkage 100, cosine); the ``sweep`` flow tunes them on validation.

Scores are sums of similarities: ``item_knn`` scores track ``t`` for a user as the sum,
over the user's train tracks ``i``, of ``sim(i, t)`` when ``t`` is among ``i``'s
neighbours (``implicit``'s ItemItemRecommender convention); ``user_knn`` as the sum, over
the user's neighbours ``v`` that have ``t``, of ``sim(u, v)``. Item-kNN has no per-user
parameters, so a new listener is scored exactly like a trained one (:class:`FoldsIn`).

Why no EASE: its closed form inverts a dense tracks x tracks Gram matrix, 255k x 255k
candidates at TIMJ scale (260 GB in float32); the kNN models keep ``neighbours`` entries
per row (tens of MB).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from jamrec.models.base import BlockScorer, ModelConfig, Recommender, TrainData

_WORK_PER_BLOCK = 1 << 24  # co-occurrences per block of the similarity product (~200 MB)
_SCORE_ROWS = 256  # users per sparse scoring product (bounds its temporaries)


class KNNConfig(ModelConfig):
    """Neighbourhood settings (module docstring)."""

    neighbours: int = Field(
        50, ge=1, description="Most similar rows kept per row (Dacrema et al.)."
    )
    shrinkage: float = Field(
        100.0, ge=0, description="Added to the cosine's denominator (Dacrema et al.'s default)."
    )
    similarity: Literal["cosine", "bm25"] = Field(
        "cosine", description="Cosine of binary rows, or of BM25-weighted rows (implicit's)."
    )
    bm25_k1: float = Field(1.2, gt=0, description="BM25 K1 (implicit's BM25Recommender default).")
    bm25_b: float = Field(0.75, ge=0, le=1, description="BM25 B (implicit's default).")


def weighted_rows(rows: sp.csr_matrix, config: KNNConfig) -> sp.csr_matrix:
    """(n, f) float64 rows to compare: binary, or BM25-weighted (rows = documents)."""
    binary = sp.csr_matrix(rows, dtype=np.float64, copy=True)
    binary.eliminate_zeros()
    binary.data[:] = 1.0
    if config.similarity == "cosine":
        return binary
    from implicit.nearest_neighbours import bm25_weight

    return sp.csr_matrix(bm25_weight(binary, K1=config.bm25_k1, B=config.bm25_b))


def knn_similarity(rows: sp.csr_matrix, neighbours: int, shrinkage: float) -> sp.csr_matrix:
    """(n, n) float32: each row's ``neighbours`` most similar other rows by shrunk cosine.

    ``rows`` is (n, f) float (weighted rows). ``sim(a, b) = x_a . x_b / (|x_a| |x_b| +
    shrinkage)``; only pairs with a common column get a value. Exact: the products are
    computed in blocks of rows whose co-occurrence work (``sum over a row's columns of
    the column's count``) stays under a budget, and the top ``neighbours`` of each row
    are kept by a partition (ties: smaller index first), so the result does not depend on
    the blocks.
    """
    rows = sp.csr_matrix(rows, dtype=np.float64)
    n = rows.shape[0]
    norms = np.sqrt(np.asarray(rows.multiply(rows).sum(axis=1)).ravel())
    columns = rows.T.tocsr()
    counts = np.diff(columns.indptr).astype(np.float64)
    pattern = sp.csr_matrix(rows, copy=True)
    pattern.data[:] = 1.0
    done = np.concatenate([[0], np.cumsum(pattern @ counts)])  # work before each row
    out_rows, out_cols, out_vals = [], [], []
    lo = 0
    while lo < n:
        # As many rows as fit in the budget, at least one.
        hi = int(np.searchsorted(done, done[lo] + _WORK_PER_BLOCK, side="right")) - 1
        hi = min(max(hi, lo + 1), n)
        product = rows[lo:hi] @ columns  # (hi - lo, n) dot products, CSR: row by row
        product.sum_duplicates()
        product.sort_indices()
        r = np.repeat(np.arange(hi - lo), np.diff(product.indptr))
        c, dot = product.indices.astype(np.int64), product.data
        sim = dot / (norms[r + lo] * norms[c] + shrinkage)
        keep = (c != r + lo) & (dot != 0)
        keep[_beyond_top(sim, keep, product.indptr, neighbours)] = False
        out_rows.append(r[keep] + lo)
        out_cols.append(c[keep])
        out_vals.append(sim[keep].astype(np.float32))
        lo = hi
    cat = np.concatenate
    similarity = sp.csr_matrix(
        (cat(out_vals), (cat(out_rows), cat(out_cols))), shape=(n, n), dtype=np.float32
    )
    similarity.sort_indices()
    return similarity


def _beyond_top(sim: np.ndarray, keep: np.ndarray, indptr: np.ndarray, k: int) -> np.ndarray:
    """Positions of kept entries that are not among their row's ``k`` largest ``sim``.

    Rows are the segments ``indptr[i]:indptr[i + 1]`` with columns ascending; ties at the
    k-th value go to the smaller column. Only rows with more than ``k`` kept entries are
    looked at (one partition each, no sort): the result is exact.
    """
    before = np.concatenate([[0], np.cumsum(keep)])
    counts = before[indptr[1:]] - before[indptr[:-1]]  # kept entries per row
    drop = []
    for row in np.flatnonzero(counts > k).tolist():
        start = indptr[row]
        where = start + np.flatnonzero(keep[start : indptr[row + 1]])
        values = sim[where]
        kth = np.partition(values, len(values) - k)[len(values) - k]
        above = values > kth
        # Columns ascend within the row: the first ties are the smaller columns.
        ties = np.flatnonzero(values == kth)[: k - int(above.sum())]
        chosen = above.copy()
        chosen[ties] = True
        drop.append(where[~chosen])
    return np.concatenate(drop) if drop else np.zeros(0, np.int64)


def _sparse_scores(
    left: sp.csr_matrix, right: sp.csr_matrix, items: np.ndarray | None, n_tracks: int
) -> np.ndarray:
    """(B, len(items)) float32 columns ``items`` of the sparse product ``left @ right``
    ((B, m) @ (m, n_tracks)), computed ``_SCORE_ROWS`` rows at a time; None = every track."""
    if items is None:
        items = np.arange(n_tracks)
    items = np.asarray(items, dtype=np.int64)
    unique, inverse = np.unique(items, return_inverse=True)
    if len(unique) != len(items):  # repeated items: the distinct ones, then copied
        return _sparse_scores(left, right, unique, n_tracks)[:, inverse]
    position = np.full(n_tracks, -1, np.int64)
    position[items] = np.arange(len(items))
    out = np.zeros((left.shape[0], len(items)), np.float32)
    for lo in range(0, left.shape[0], _SCORE_ROWS):
        # A CSR product holds each (row, column) once: scatter it without sorting.
        product = sp.csr_matrix(left[lo : lo + _SCORE_ROWS] @ right)
        rows = lo + np.repeat(np.arange(product.shape[0]), np.diff(product.indptr))
        cols = position[product.indices]
        keep = cols >= 0
        out[rows[keep], cols[keep]] = product.data[keep]
    return out


class ItemKNN(Recommender):
    """Item-based neighbours (module docstring). After :meth:`fit`, ``similarity`` is the
    (n_tracks, n_tracks) float32 CSR matrix: row ``i`` holds track ``i``'s neighbours."""

    name = "item_knn"
    Config = KNNConfig
    config: KNNConfig

    def _fit(self, data: TrainData) -> None:
        rows = weighted_rows(data.train.T.tocsr(), self.config)
        self.similarity = knn_similarity(rows, self.config.neighbours, self.config.shrinkage)
        self.stats = {"similarity_nnz": int(self.similarity.nnz)}
        data.step(0, None, self)

    def _scores_of(self, tracks: sp.csr_matrix, items: np.ndarray | None) -> np.ndarray:
        """(B, len(items)) float32 for B listeners given as rows of tracks (n_tracks)."""
        tracks = sp.csr_matrix(tracks, dtype=np.float32, copy=True)
        tracks.data[:] = 1.0
        return _sparse_scores(tracks, self.similarity, items, self.n_tracks)

    def score(self, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        """(len(users), len(items)) float32: summed similarities of the users' train tracks."""
        users = np.atleast_1d(np.asarray(users, dtype=np.int64))
        if self.seen is None:
            raise ValueError(f"{self.name}: not fitted (fit or load it first)")
        return self._scores_of(self.seen[users], items)

    def fold_in_scores(self, tracks: sp.csr_matrix, items: np.ndarray) -> np.ndarray:
        """(B, len(items)): a new listener is scored exactly like a trained one."""
        return self._scores_of(tracks, items)

    def block_scorer(self, items: np.ndarray) -> BlockScorer:
        """Blocks written into the caller's ``out``: the similarity's ``items`` columns
        taken once (the products then hold no column to drop), each block zeroed and the
        product's entries scattered into it, instead of a fresh zeroed block per batch
        (:meth:`Recommender.block_scorer`). Each score is the same sum as :meth:`score`'s:
        a sparse product adds a row's terms in the order of the user's tracks, whichever
        columns it keeps."""
        items = np.asarray(items, dtype=np.int64)
        if self.seen is None or len(np.unique(items)) != len(items):
            return super().block_scorer(items)
        seen = self.seen
        right = sp.csr_matrix(self.similarity[:, items])

        def scorer(users: np.ndarray, out: np.ndarray) -> np.ndarray:
            tracks = sp.csr_matrix(seen[np.atleast_1d(users)], dtype=np.float32, copy=True)
            tracks.data[:] = 1.0
            out.fill(0.0)
            for lo in range(0, tracks.shape[0], _SCORE_ROWS):
                product = sp.csr_matrix(tracks[lo : lo + _SCORE_ROWS] @ right)
                rows = lo + np.repeat(np.arange(product.shape[0]), np.diff(product.indptr))
                out[rows, product.indices] = product.data
            return out

        return scorer

    def _save(self, folder: Path) -> None:
        sp.save_npz(folder / "similarity.npz", self.similarity)
        sp.save_npz(folder / "seen.npz", sp.csr_matrix(self.seen, dtype=np.float32))

    def _load(self, folder: Path) -> None:
        self.similarity = sp.load_npz(folder / "similarity.npz").tocsr()
        self.seen = sp.load_npz(folder / "seen.npz").tocsr()


class UserKNN(Recommender):
    """User-based neighbours (module docstring). After :meth:`fit`, ``similarity`` is the
    (n_users, n_users) float32 CSR matrix: row ``u`` holds user ``u``'s neighbours."""

    name = "user_knn"
    Config = KNNConfig
    config: KNNConfig

    def _fit(self, data: TrainData) -> None:
        rows = weighted_rows(data.train.tocsr(), self.config)
        self.similarity = knn_similarity(rows, self.config.neighbours, self.config.shrinkage)
        self.items = sp.csr_matrix(data.train, dtype=np.float32, copy=True)
        self.items.data[:] = 1.0
        self.stats = {"similarity_nnz": int(self.similarity.nnz)}
        data.step(0, None, self)

    def score(self, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        """(len(users), len(items)) float32: summed similarities of the neighbours who
        have each track."""
        users = np.atleast_1d(np.asarray(users, dtype=np.int64))
        return _sparse_scores(self.similarity[users], self.items, items, self.n_tracks)

    def _save(self, folder: Path) -> None:
        sp.save_npz(folder / "similarity.npz", self.similarity)
        sp.save_npz(folder / "items.npz", self.items)

    def _load(self, folder: Path) -> None:
        self.similarity = sp.load_npz(folder / "similarity.npz").tocsr()
        self.items = sp.load_npz(folder / "items.npz").tocsr()
