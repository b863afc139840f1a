"""New listeners: scores for someone known only by a few tracks, without retraining.

:func:`fold_in` maps track indexes (:class:`jamrec.models.dataset.Dataset` id space) to a score for
every catalogue track, model by model:

- models with the :class:`jamrec.models.base.FoldsIn` capability score the listener
  themselves: ALS with the exact least-squares user vector for fixed track factors (half
  an ALS iteration), the two-tower with its user tower from tracks alone (the mean of
  their track vectors, no user id);
- every other model: train popularity. MBCF and the hybrid learn a free vector per user
  that only gradient steps on that user can fit (retraining), and the baselines have no
  user side at all; the most played tracks are the honest answer there.

:func:`fold_in_agreement` checks how much a listener loses by being folded in rather
than trained: on held-out users it compares fold-in from their train tracks with the
trained user vectors, as :class:`jamrec.evaluation.protocols.MetricRow` rows.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from jamrec.errors import JamrecError
from jamrec.evaluation.metrics import bootstrap_ci, per_user_metrics, ranks_full
from jamrec.evaluation.protocols import MetricRow, sample_users, split_view
from jamrec.models.base import FoldsIn, Recommender, top_k
from jamrec.models.dataset import Dataset

K = 10


def _rows(tracks: list[np.ndarray], n_tracks: int) -> sp.csr_matrix:
    """(len(tracks), n_tracks) 0/1 matrix: row b marks the tracks of listener b."""
    cols = [np.unique(np.asarray(t, dtype=np.int64)) for t in tracks]
    rows = np.repeat(np.arange(len(cols)), [len(c) for c in cols])
    data = np.ones(len(rows), np.float32)
    flat = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    return sp.csr_matrix((data, (rows, flat)), shape=(len(cols), n_tracks))


def fold_in_scores(
    model: Recommender,
    tracks: sp.csr_matrix,
    items: np.ndarray | None = None,
    popularity: np.ndarray | None = None,
) -> np.ndarray:
    """(B, len(items)) float32 scores of B new listeners; ``items=None`` = every track.

    ``tracks`` is ``(B, n_tracks)``: row b marks listener b's tracks. The given tracks are
    scored too: the caller excludes them (as ``recommend(exclude_seen=True)`` would).
    ``popularity`` (``(n_tracks,)`` train counts) is only needed by the fallback models
    when ``model.seen`` is gone (a loaded model).
    """
    tracks = sp.csr_matrix(tracks)
    items = np.arange(model.n_tracks) if items is None else np.asarray(items, dtype=np.int64)
    if isinstance(model, FoldsIn):
        return model.fold_in_scores(tracks, items)
    if popularity is None:
        if model.seen is None:
            raise JamrecError(f"{model.name}: fold-in falls back to popularity; pass popularity=")
        popularity = model.seen.getnnz(axis=0)
    counts = np.asarray(popularity, dtype=np.float32)[items]
    return np.broadcast_to(counts, (tracks.shape[0], len(items))).copy()


def fold_in(
    model: Recommender, track_indexes: np.ndarray, popularity: np.ndarray | None = None
) -> np.ndarray:
    """(n_tracks,) float32 scores for one new listener with these tracks (module docstring).

    ``track_indexes``: the listener's tracks, any number (none: the model's cold answer).
    """
    return fold_in_scores(model, _rows([track_indexes], model.n_tracks), None, popularity)[0]


def fold_in_agreement(
    model: Recommender, data: Dataset, n_users: int = 500, seed: int = 0
) -> dict[str, MetricRow]:
    """Folded-in vs trained users, on a seeded sample of the test split's evaluated users.

    For each sampled user (:func:`~jamrec.evaluation.protocols.sample_users`, ``n_users``
    at most) the fold-in scores come from their train tracks only, the trained ones from
    ``model.score``. Both rank every candidate with the user's train and val positives
    left out (the full-ranking protocol), against the user's test positives. Returns
    ``{"ndcg": ..., "ndcg_trained": ..., "overlap": ...}``: NDCG@10 of each and the share
    of the two top-10 lists in common, each a ``MetricRow`` (protocol ``fold_in``, split
    ``test``, ``k = 10``) with a 95% bootstrap interval (paired: the same resamples).
    """
    view = split_view(data, "test")
    users = sample_users(view, n_users, seed)
    if not len(users):
        return {}  # a mean over nobody is no result
    relevant, excluded = view.relevant[users], view.excluded[users]
    folded = fold_in_scores(model, data.train[users], view.candidates)
    trained = np.asarray(model.score(users, view.candidates), dtype=np.float32)
    ndcgs, tops = [], []
    for scores in (folded, trained):
        rows, cols = relevant.nonzero()
        ranks = ranks_full(scores, rows, cols, exclude=excluded.nonzero())
        per_user = per_user_metrics(ranks, np.diff(relevant.indptr), ks=(K,))
        ndcgs.append(per_user.values[:, per_user.columns.index(("ndcg", K))])
        masked = scores.copy()
        masked[excluded.nonzero()] = -np.inf
        # candidates are in tie order: the column index is the tie rank
        order = np.arange(len(view.candidates))
        tops.append(top_k(masked, order, K, order)[0])
    overlap = [len(np.intersect1d(a[a >= 0], b[b >= 0])) / K for a, b in zip(*tops)]
    values = np.column_stack([*ndcgs, overlap])
    low, high = bootstrap_ci(values, seed=[seed, 0xF01D])
    names = ("ndcg", "ndcg_trained", "overlap")
    return {
        name: MetricRow("fold_in", "test", name, K, float(v), float(lo), float(hi), len(users))
        for name, v, lo, hi in zip(names, values.mean(axis=0), low, high)
    }
