"""Beyond accuracy: what a model's top-K lists look like, the filter bubble measured.

Pure metric functions over recommendation lists, and :func:`beyond_accuracy`, which
combines a model with the test split. A list block ``recs`` is ``(n_users, K)`` int64
track indexes (:class:`jamrec.models.dataset.Dataset` ids), best first, ``-1`` for padding
(ignored everywhere). Popularity is the train count of users per track (``counts``,
(n_tracks,)); nothing from val or test enters a statistic except the users' held-out
tracks in ``jam_popularity_pct``.
"""

from __future__ import annotations

import numpy as np

from jamrec.evaluation.metrics import bootstrap_ci
from jamrec.evaluation.protocols import MetricRow, sample_users, split_view
from jamrec.models.base import Recommender
from jamrec.models.dataset import Dataset, standardise

PROTOCOL, SPLIT = "beyond", "test"
PER_USER = ("novelty", "diversity", "rec_popularity_pct", "jam_popularity_pct")
_CODE = 0xBE70  # seeds the bootstrap: same users and seed, same resamples for every model
_BLOCK_ELEMS = 1 << 24  # scores per recommend() block: 64 MB of float32 (x3 inside top_k)
_PAIR_ELEMS = 1 << 22  # pairwise differences per diversity block
IGNORED = ("key",)  # a pitch class, not an ordered quantity: no distance (as in feature_knn)


def coverage(recs: np.ndarray, n_candidates: int) -> float:
    """Distinct recommended tracks / ``n_candidates`` (catalogue coverage@K)."""
    return len(np.unique(recs[recs >= 0])) / n_candidates if n_candidates else float("nan")


def row_means(recs: np.ndarray, values: np.ndarray) -> np.ndarray:
    """(n_users,) mean of ``values[track]`` over each list's tracks; NaN for empty lists."""
    valid = recs >= 0
    total = np.where(valid, values[np.where(valid, recs, 0)], 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / valid.sum(axis=1)


def self_information(counts: np.ndarray) -> np.ndarray:
    """(n_tracks,) ``-log2(p)`` with ``p = counts / counts.sum()`` (share of train
    interactions); ``inf`` for tracks without any. Novelty = its mean over a list."""
    counts = np.asarray(counts, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return -np.log2(counts / max(counts.sum(), 1.0))


def popularity_percentile(counts: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """(n_tracks,) mid-rank percentile (0..100) of each track's count among the candidates:
    ``100 * (#{c: n_c < n_t} + #{c: n_c == n_t} / 2) / C``. A random list averages 50."""
    counts = np.asarray(counts, dtype=np.float64)
    ref = np.sort(counts[candidates])
    below = np.searchsorted(ref, counts, "left")
    equal = np.searchsorted(ref, counts, "right") - below
    return 100.0 * (below + equal / 2) / max(len(ref), 1)


def intra_list_diversity(recs: np.ndarray, z: np.ndarray) -> np.ndarray:
    """(n_users,) mean Euclidean distance between the ``z`` rows (standardised features,
    (n_tracks, F)) of every pair of a list's tracks; NaN for lists under two tracks."""
    n_rows, k = recs.shape
    out = np.empty(n_rows)
    step = max(1, _PAIR_ELEMS // max(k * k * z.shape[1], 1))
    for lo in range(0, n_rows, step):
        valid = recs[lo : lo + step] >= 0
        x = z[np.where(valid, recs[lo : lo + step], 0)].astype(np.float64)  # (n, K, F)
        dist = np.linalg.norm(x[:, :, None, :] - x[:, None, :, :], axis=-1)
        pair = valid[:, :, None] & valid[:, None, :]
        n = valid.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[lo : lo + step] = np.where(pair, dist, 0.0).sum(axis=(1, 2)) / (n * (n - 1))
    return out


def beyond_accuracy(
    model: Recommender,
    data: Dataset,
    k: int = 10,
    n_users: int = 5000,
    seed: int = 0,
    n_boot: int = 1000,
    lists: tuple[np.ndarray, np.ndarray] | None = None,
) -> list[MetricRow]:
    """Coverage, novelty, diversity and popularity of ``model``'s top-``k`` lists.

    Users: the seeded sample of test users of :func:`jamrec.evaluation.protocols.sample_users` (the
    same for every model). Lists: top-``k`` among the candidates (train tracks), the
    user's train positives excluded. Rows (protocol "beyond", split "test", k=``k``):
    ``coverage`` (one value: ci_low = ci_high = value), and per-user means with 95%
    bootstrap intervals: ``novelty`` (bits), ``diversity`` (:func:`intra_list_diversity`
    over standardised audio features), ``rec_popularity_pct`` (mean popularity percentile
    of the recommended tracks) beside ``jam_popularity_pct`` (the same for the user's
    held-out test tracks that are candidates). ``n_users``: users with a finite value.
    ``lists``: ``(users, (n, k) ids)`` as the evaluation's scoring pass kept them
    (:class:`jamrec.evaluation.protocols.SampleLists`), used when they are these users'
    top-``k``; else the lists are computed here.
    """
    view = split_view(data, SPLIT)
    users = sample_users(view, n_users, seed)
    if not len(users):
        return []
    counts = np.asarray(data.train.getnnz(axis=0), dtype=np.float64)
    keep = [i for i, name in enumerate(data.feature_names) if name not in IGNORED]
    z, _, _ = standardise(data.features[:, keep], data.candidates)
    if lists is not None and np.array_equal(lists[0], users) and lists[1].shape[1] == k:
        recs = lists[1]
    else:
        block = max(1, _BLOCK_ELEMS // max(len(view.candidates), 1))
        recs = np.concatenate(
            [
                model.recommend(users[lo : lo + block], k, items=view.candidates, seen=data.train)[
                    0
                ]
                for lo in range(0, len(users), block)
            ]
        )
    pct = popularity_percentile(counts, data.candidates)
    jams = view.relevant[users]
    jam_pct = np.bincount(
        np.repeat(np.arange(len(users)), np.diff(jams.indptr)),
        weights=pct[view.candidates[jams.indices]],
        minlength=len(users),
    ) / np.diff(jams.indptr)
    values = {
        "novelty": row_means(recs, self_information(counts)),
        "diversity": intra_list_diversity(recs, z),
        "rec_popularity_pct": row_means(recs, pct),
        "jam_popularity_pct": jam_pct,
    }
    cov = coverage(recs, len(view.candidates))
    rows = [MetricRow(PROTOCOL, SPLIT, "coverage", k, cov, cov, cov, len(users))]
    for name in PER_USER:
        v = values[name][np.isfinite(values[name])]
        low, high = bootstrap_ci(v, n_boot=n_boot, seed=[seed, _CODE])
        mean = float(v.mean()) if len(v) else float("nan")
        rows.append(
            MetricRow(PROTOCOL, SPLIT, name, k, mean, float(low[0]), float(high[0]), len(v))
        )
    return rows
