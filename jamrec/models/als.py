"""Implicit-feedback ALS (Hu, Koren & Volinsky 2008): a thin adapter over ``implicit``.

The model learns user and track factors so that ``user . track`` approximates the
preference ``p = 1`` on train positives and ``0`` elsewhere, each cell weighted by the
confidence ``c = 1 + alpha * r`` (``r`` = 1 per train positive). Scores are dot products,
so every evaluated user can be full-ranked.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from numba import njit
from pydantic import Field

from jamrec.models.base import BlockScorer, Recommender, TrainData
from jamrec.models.early_stopping import EarlyStopping, EarlyStoppingConfig
from jamrec.models.products import matmul_into, one_blas_thread, pair_dots


@njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _observed_loss(
    indptr: np.ndarray,
    indices: np.ndarray,
    confidence: np.ndarray,
    users: np.ndarray,
    tracks: np.ndarray,
    start: int,
    stop: int,
) -> tuple[float, float]:
    """Over the stored cells of rows ``start:stop``: the sum of ``c - 2 c s + (c - 1) s^2``
    (``s = x_u . y_i``) and the sum of the confidences ``c``, both in float64."""
    total = 0.0
    confidence_sum = 0.0
    for u in range(start, stop):
        for k in range(indptr[u], indptr[u + 1]):
            i = indices[k]
            c = confidence[k]
            s = np.float32(0.0)
            for j in range(users.shape[1]):
                s += users[u, j] * tracks[i, j]
            total += c + (np.float32(-2.0) * c + (c - np.float32(1.0)) * s) * s
            confidence_sum += c
    return total, confidence_sum


def training_loss(
    confidence: sp.csr_matrix, users: np.ndarray, tracks: np.ndarray, regularization: float
) -> float:
    """implicit's ALS training loss (``implicit.cpu._als.calculate_loss``), computed in
    half its time: the weighted squared error over every cell, ``sum_u x_u' Y'Y x_u`` plus
    the stored cells' correction, plus ``regularization * (|X|^2 + |Y|^2)``, divided by the
    total weight (the stored confidences and 1 for every other cell). implicit calls BLAS
    twice per stored cell; here the stored cells run in one compiled loop (its two halves
    on two threads, summed in a fixed order, so the value is deterministic) and the
    quadratic term is one matrix product. Confidences are positive (``1 + alpha r``)."""
    half = int(np.searchsorted(confidence.indptr, confidence.nnz // 2))
    cells = (confidence.indptr, confidence.indices, confidence.data, users, tracks)
    with ThreadPoolExecutor(1, thread_name_prefix="jamrec-als-loss") as pool:
        second = pool.submit(_observed_loss, *cells, half, users.shape[0])
        first = _observed_loss(*cells, 0, half)
        other = second.result()
    observed, confidence_sum = first[0] + other[0], first[1] + other[1]
    quadratic = np.einsum("ij,ij->", users @ (tracks.T @ tracks), users, dtype=np.float64)
    norms = np.einsum("ij,ij->", users, users, dtype=np.float64) + np.einsum(
        "ij,ij->", tracks, tracks, dtype=np.float64
    )
    n_cells = confidence.shape[0] * confidence.shape[1]
    weight = confidence_sum + n_cells - confidence.nnz
    return float((observed + quadratic + regularization * norms) / weight)


class ALSConfig(EarlyStoppingConfig):
    """The study's ALS settings (docs/architecture.md, "The models"), with early stopping
    (:mod:`jamrec.models.early_stopping`): ``iterations`` is the maximum."""

    factors: int = Field(40, description="The study's setting.")
    regularization: float = Field(0.01, description="implicit's default; the study kept it.")
    alpha: float = Field(40.0, description="The study's setting (Hu et al.'s): c = 1 + alpha*r.")
    iterations: int = Field(
        20, ge=1, description="The study's setting; the most iterations with early stopping."
    )


class _Stop(Exception):
    """Raised from implicit's per-iteration callback to end its loop early."""


class ALS(Recommender):
    """Matrix factorisation of the users x tracks train matrix, weighted by confidence.

    After :meth:`fit`, ``user_factors`` is ``(n_users, factors)`` and ``item_factors``
    ``(n_tracks, factors)``, both float32 and indexed like :class:`jamrec.models.dataset.Dataset`.
    """

    name = "als"
    Config = ALSConfig
    config: ALSConfig
    pair_scoring = True  # a pair is one dot product: the sampled lists go as pairs

    def _confidence(self, rows: sp.csr_matrix) -> sp.csr_matrix:
        # implicit treats each stored value as the confidence c itself (its solver adds
        # (c - 1) * y y^T for stored cells), and its own `alpha` only multiplies the
        # matrix. So we hand it 1 + alpha * r and keep its alpha at 1: scaled once, exactly.
        conf = sp.csr_matrix(rows, dtype=np.float32, copy=True)
        conf.data = 1.0 + np.float32(self.config.alpha) * conf.data
        return conf

    def _fit(self, data: TrainData) -> None:
        cfg = self.config
        # Early stopping rides on implicit's callback: one fit, so with early stopping off
        # the iterations are exactly those of a plain fit. (Calling fit once per iteration
        # would also continue from the current factors, but transposes the matrix again
        # each time.) The callback raises _Stop to leave implicit's loop.
        stopper: EarlyStopping[tuple[np.ndarray, np.ndarray]] = EarlyStopping(cfg)

        confidence = self._confidence(data.train)

        def after_iteration(iteration: int, _elapsed: float, _loss: None) -> None:
            # implicit initialises the factors before its first iteration, so the probe in
            # data.step can score with the current factors; step = iterations completed.
            # The training loss is implicit's, computed here in half the time.
            step = iteration + 1
            loss = training_loss(
                confidence, self.model.user_factors, self.model.item_factors, cfg.regularization
            )
            values = data.step(step, loss, self)
            if stopper.observe(step, values, self._copy_factors):
                raise _Stop

        # One BLAS thread (OpenBLAS's own pool fights implicit's: implicit warns) and
        # implicit's threads on every core: each half-step solves every user (or track)
        # independently from fixed factors, so the result does not depend on the threads.
        with one_blas_thread():
            self.model = AlternatingLeastSquares(
                factors=cfg.factors,
                regularization=cfg.regularization,
                alpha=1.0,
                iterations=cfg.iterations,
                calculate_training_loss=False,  # training_loss, in the callback
                num_threads=0,
                random_state=cfg.seed,
                dtype=np.float32,
            )
            try:
                self.model.fit(confidence, show_progress=False, callback=after_iteration)
            except _Stop:
                # the check implicit makes after its last iteration (NaN or zero factors)
                self.model._check_fit_errors()
        best = stopper.restore_state()
        if best is not None:
            # fit's cached norms and Gram matrices were reset when it started and nothing
            # in training computes them, so replacing the factors leaves nothing stale
            self.model.user_factors, self.model.item_factors = best
        self.stopping = stopper.outcome

    def _copy_factors(self) -> tuple[np.ndarray, np.ndarray]:
        return self.model.user_factors.copy(), self.model.item_factors.copy()

    def score(self, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        """(len(users), len(items)) float32: ``user_factors[users] @ item_factors[items].T``."""
        users = np.atleast_1d(np.asarray(users, dtype=np.int64))
        tracks = self.model.item_factors
        if items is not None:
            tracks = tracks[np.asarray(items, dtype=np.int64)]
        return (self.model.user_factors[users] @ tracks.T).astype(np.float32, copy=False)

    def score_pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """(P,) float32: each aligned pair's factors' dot product (:func:`pair_dots`)."""
        factors, tracks = self.model.user_factors, self.model.item_factors
        if factors.dtype != np.float32 or tracks.dtype != np.float32:
            return super().score_pairs(users, items)
        return pair_dots(factors, tracks, users, items)

    def block_scorer(self, items: np.ndarray) -> BlockScorer:
        """The items' factors gathered once; each block one product into ``out``, its rows
        on every core (:func:`jamrec.models.products.matmul_into`)."""
        factors, tracks = self.model.user_factors, self.model.item_factors
        if factors.dtype != np.float32 or tracks.dtype != np.float32:
            return super().block_scorer(items)
        tracks_t = tracks[np.asarray(items, dtype=np.int64)].T

        def score(users: np.ndarray, out: np.ndarray) -> np.ndarray:
            return matmul_into(factors[np.asarray(users, dtype=np.int64)], tracks_t, out)

        return score

    def recalculate_user(self, item_ids: np.ndarray) -> np.ndarray:
        """Fold in a user who is not in the model: ``(factors,)`` float32.

        ``item_ids`` are the track indexes the new user has as positives. The vector is the
        exact least-squares solution with the track factors fixed (one half of an ALS
        iteration, implicit's ``recalculate_user``), so ``vector @ item_factors.T`` scores
        the new user like a trained one, without retraining.
        """
        item_ids = np.unique(np.asarray(item_ids, dtype=np.int64))
        row = sp.csr_matrix(
            (np.ones(len(item_ids), np.float32), (np.zeros(len(item_ids), np.int64), item_ids)),
            shape=(1, self.n_tracks),
        )
        with one_blas_thread():
            return self.model.recalculate_user(0, self._confidence(row)).astype(np.float32)

    # -- capabilities: FoldsIn, ItemVectors ---------------------------------------------
    def fold_in_scores(self, tracks: sp.csr_matrix, items: np.ndarray) -> np.ndarray:
        """(B, len(items)) float32: each listener's :meth:`recalculate_user` vector (the
        exact least-squares fit to their tracks) against the track factors."""
        tracks = sp.csr_matrix(tracks)
        vectors = np.stack([self.recalculate_user(row.indices) for row in tracks])
        factors = self.model.item_factors[np.asarray(items, dtype=np.int64)]
        return (vectors.reshape(tracks.shape[0], -1) @ factors.T).astype(np.float32)

    def item_vectors(self, items: np.ndarray | None = None) -> np.ndarray:
        """(len(items), factors) float32 track factors; ``None`` = every track."""
        factors = np.asarray(self.model.item_factors, np.float32)
        return factors if items is None else factors[np.asarray(items, dtype=np.int64)]

    def learnt_tracks(self) -> np.ndarray | None:
        """Tracks with a train interaction (the others keep their random start)."""
        return None if self.seen is None else np.asarray(self.seen.getnnz(axis=0) > 0)

    def _save(self, folder: Path) -> None:
        self.model.save(str(folder / "als.npz"))

    def _load(self, folder: Path) -> None:
        with one_blas_thread():
            self.model = AlternatingLeastSquares.load(str(folder / "als.npz"))
