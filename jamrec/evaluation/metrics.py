"""Ranking metrics as pure functions: ranks, per-user HR/NDCG/MRR, bootstrap intervals,
and the seeded candidate draw of the sampled protocol.

Nothing here knows about models or datasets (:mod:`jamrec.evaluation.protocols` combines them). The
shared conventions:

- a score block is ``(n_rows, n_cols)``, higher is better; its columns are in tie order:
  among equal scores the smaller column ranks first (:mod:`jamrec.evaluation.protocols` puts the
  candidates in the fixed :func:`jamrec.models.base.tie_rank` order before scoring, so the
  tie break costs nothing);
- excluded entries (the user's other positives) are passed as sparse ``(rows, cols)``,
  not written into the block; ``-inf`` is an ordinary lowest score and NaN counts as
  ahead of every relevant item, so a model can never gain from either;
- ranks are 1-based and every relevant item is ranked among all listed items, the
  other relevant items of its row included.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from jamrec.rand import GOLDEN, splitmix64


def ranks_full(
    scores: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    exclude: tuple[np.ndarray, np.ndarray] | None = None,
    tie: np.ndarray | None = None,
) -> np.ndarray:
    """1-based rank of each relevant entry ``(rows[i], cols[i])`` of ``scores``.

    ``rank = 1 + #{listed j: s_j > s} + #{listed j: s_j == s, j before the item in tie
    order}``, where listed = every entry of the row not in ``exclude``. ``-inf`` is an
    ordinary (lowest) score: a model cannot drop tracks from its ranking by scoring them
    ``-inf``. NaN counts as ahead of every relevant entry; a relevant entry scored NaN is
    ranked after every listed entry (NaN relevant entries ordered among themselves by tie).

    Args:
        scores: (n_rows, n_cols) float block; never copied or written (unless ``tie``).
        rows, cols: (R,) int, the relevant entries; unique, in any order.
        exclude: optional ``(rows, cols)`` entries left out of the ranking (the user's
            positives in other splits, ...); duplicates allowed, relevant entries not.
            Writing ``-inf`` into the block instead gives the same ranks as long as no
            relevant entry scores ``-inf``, at the cost of a write into a large block.
        tie: optional (n_cols,) tie rank per column (smaller first). Default: the column
            order. Giving it permutes a copy of the block (the slow path).

    Returns:
        (R,) int64 ranks, in the order of ``rows``.

    Cost: one comparison pass over each relevant entry's row, a row at a time so that the
    temporaries stay in cache (a whole-block comparison needs two passes plus a tie pass
    and measured ~4x slower); no sort.
    """
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-D, got shape {scores.shape}")
    n_rows, n_cols = scores.shape
    rows, cols = _pairs(rows, cols, n_rows, n_cols, "relevant")
    excluded_rows, excluded_cols = exclude or ((), ())
    erows, ecols = _pairs(excluded_rows, excluded_cols, n_rows, n_cols, "excluded")
    if tie is not None:
        order = np.argsort(np.asarray(tie), kind="stable")
        position = np.empty(n_cols, np.int64)
        position[order] = np.arange(n_cols)
        scores, cols, ecols = scores[:, order], position[cols], position[ecols]
    keys = rows * n_cols + cols
    if len(np.unique(keys)) != len(keys):
        raise ValueError("relevant entries must be unique")
    ekeys, first = np.unique(erows * n_cols + ecols, return_index=True)
    erows, ecols = erows[first], ecols[first]
    if np.isin(keys, ekeys).any():
        raise ValueError("a relevant entry is also excluded")

    s = scores[rows, cols]
    nan = np.isnan(s)  # ranked after the list, see the end
    ranks = np.ones(len(rows), np.int64)
    last = n_cols - 1
    for i in np.flatnonzero(~nan).tolist():
        x, c, v = scores[rows[i]], int(cols[i]), s[i]
        # Before c in tie order: ahead unless strictly lower; after c: ahead unless lower or
        # equal. "not (x < v)" rather than "x >= v" so that NaN counts as ahead.
        ranks[i] += c - np.count_nonzero(x[:c] < v) + last - c - np.count_nonzero(x[c + 1 :] <= v)

    # Take back what the row passes counted but is not ahead: the excluded entries and the
    # NaN relevant ones (they go last). Both are sparse: join them to the relevant entries
    # of their row.
    orows, ocols = np.concatenate([erows, rows[nan]]), np.concatenate([ecols, cols[nan]])
    by_row = np.argsort(rows, kind="stable")
    start = np.searchsorted(rows[by_row], orows, "left")
    count = np.searchsorted(rows[by_row], orows, "right") - start
    o = np.repeat(np.arange(len(orows)), count)
    p = by_row[np.repeat(start - np.cumsum(count) + count, count) + np.arange(count.sum())]
    xo, v = scores[orows[o], ocols[o]], s[p]
    ahead = np.where(ocols[o] < cols[p], ~(xo < v), ~(xo <= v)) & ~nan[p]
    ranks -= np.bincount(p[ahead], minlength=len(rows))

    if nan.any():
        # After every listed entry that is not itself a NaN relevant one, in tie order.
        n_excluded = np.bincount(erows, minlength=n_rows)
        n_nan = np.bincount(rows[nan], minlength=n_rows)
        for i in np.flatnonzero(nan).tolist():
            r = rows[i]
            before = np.count_nonzero(nan & (rows == r) & (cols < cols[i]))
            ranks[i] = 1 + n_cols - n_excluded[r] - n_nan[r] + before
    return ranks


def _pairs(
    rows: npt.ArrayLike, cols: npt.ArrayLike, n_rows: int, n_cols: int, what: str
) -> tuple[np.ndarray, np.ndarray]:
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    cols = np.asarray(cols, dtype=np.int64).reshape(-1)
    if rows.shape != cols.shape:
        raise ValueError(f"{what} rows and cols differ in length")
    inside = (rows >= 0) & (rows < n_rows) & (cols >= 0) & (cols < n_cols)
    if not inside.all():
        raise ValueError(f"{what} entries out of the block's bounds")
    return rows, cols


class UserMetrics(NamedTuple):
    """Per-user metric values: ``values[u, j]`` is metric ``columns[j]`` for user ``u``."""

    columns: tuple[tuple[str, int | None], ...]  # (metric, k): ("hr", 10), ("mrr", None)
    values: np.ndarray  # (n_users, len(columns)) float64


def metric_columns(ks: Sequence[int] = (5, 10, 20)) -> tuple[tuple[str, int | None], ...]:
    """The columns of :func:`per_user_metrics`: HR@k for each k, NDCG@k for each k, MRR."""
    return (*(("hr", k) for k in ks), *(("ndcg", k) for k in ks), ("mrr", None))


def per_user_metrics(
    ranks: np.ndarray, n_relevant: np.ndarray, ks: Sequence[int] = (5, 10, 20)
) -> UserMetrics:
    """HR@k, NDCG@k and MRR of each user from the ranks of their relevant items.

    Args:
        ranks: (R,) int >= 1, the ranks of every user's relevant items, user after user
            (user ``u`` owns ``ranks[o[u]:o[u+1]]`` with ``o = [0, *cumsum(n_relevant)]``).
        n_relevant: (n_users,) int, relevant items per user; ``sum == R``.
        ks: cut-offs.

    Definitions: HR@k = 1 if any relevant rank <= k; NDCG@k = sum over ranks r <= k of
    1/log2(r+1), divided by the ideal DCG of min(n_relevant, k) hits (ranks 1..); MRR =
    1/(smallest rank), uncut. A k larger than the list simply counts every hit.
    Users with no relevant item get NaN in every column: they are not evaluated, and the
    caller must leave them out of averages (a NaN mean makes a mistake visible).
    """
    ranks = np.asarray(ranks, dtype=np.int64).reshape(-1)
    n_relevant = np.asarray(n_relevant, dtype=np.int64).reshape(-1)
    if n_relevant.sum() != len(ranks) or (n_relevant < 0).any():
        raise ValueError("n_relevant must be >= 0 and sum to len(ranks)")
    if len(ranks) and ranks.min() < 1:
        raise ValueError("ranks are 1-based")
    n_users = len(n_relevant)
    user = np.repeat(np.arange(n_users), n_relevant)
    gain = 1.0 / np.log2(ranks + 1.0)
    ideal = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(2, max(ks, default=1) + 2)))])
    columns = metric_columns(ks)
    values = np.empty((n_users, len(columns)))
    for j, k in enumerate(ks):
        hit = ranks <= k
        values[:, j] = np.bincount(user, weights=hit, minlength=n_users) > 0
        dcg = np.bincount(user, weights=hit * gain, minlength=n_users)
        with np.errstate(invalid="ignore", divide="ignore"):
            values[:, len(ks) + j] = dcg / ideal[np.minimum(n_relevant, k)]
    first = np.full(n_users, np.inf)
    some = n_relevant > 0
    if some.any():
        # reduceat over the non-empty users only: each segment runs to the next start.
        starts = (np.cumsum(n_relevant) - n_relevant)[some]
        first[some] = np.minimum.reduceat(ranks, starts)
    values[:, -1] = 1.0 / first
    values[~some] = np.nan
    return UserMetrics(columns, values)


_BOOT_ELEMS = 1 << 21  # draws per chunk (16 MB of int64): bounds memory; fastest measured


def bootstrap_ci(
    values: np.ndarray,
    n_boot: int = 1000,
    seed: int | Sequence[int] = 0,
    alpha: float = 0.05,
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval of the mean over users, for each column.

    Args:
        values: (n_users,) or (n_users, n_metrics) float; one row per evaluated user.
        n_boot: bootstrap replicates; every column uses the same resamples.
        seed: anything ``numpy.random.default_rng`` takes; same seed and values, same
            interval (the draws form one stream: the chunk size does not change them).
        alpha: 0.05 gives the 95% interval (quantiles alpha/2 and 1 - alpha/2).

    Returns:
        ``(low, high)``, each (n_metrics,) float64 (shape (1,) for 1-D input); always
        ``low <= values.mean(axis=0) <= high``. No users: NaN. One user: the value.

    Each replicate resamples n_users users with replacement (exact multinomial counts,
    drawn a chunk of replicates at a time) and its means are ``counts @ values / n``: a
    matrix product, so 200k users x 1000 replicates takes seconds, not minutes.
    """
    values = np.asarray(values, dtype=np.float64)
    values = values[:, None] if values.ndim == 1 else values
    if values.ndim != 2:
        raise ValueError(f"values must be (n_users,) or (n_users, n_metrics), got {values.shape}")
    n, m = values.shape
    if n == 0:
        return np.full(m, np.nan), np.full(m, np.nan)
    rng = np.random.default_rng(seed)
    means = np.empty((n_boot, m))
    chunk = max(1, min(n_boot, _BOOT_ELEMS // n))
    for b0 in range(0, n_boot, chunk):
        b = min(chunk, n_boot - b0)
        draws = rng.integers(0, n, size=(b, n))
        draws += np.arange(b)[:, None] * n
        counts = np.bincount(draws.ravel(), minlength=b * n).reshape(b, n)
        means[b0 : b0 + b] = (counts.astype(np.float64) @ values) / n
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2], axis=0)
    # The resampled means are matrix-product sums, the sample mean a pairwise sum: they
    # can differ in the last bit (all users equal), so widen to always hold the mean.
    mean = values.mean(axis=0)
    return np.minimum(low, mean), np.maximum(high, mean)


def sample_negatives(
    positives: sp.csr_matrix, users: np.ndarray, n: int, seed: Sequence[int]
) -> np.ndarray:
    """(len(users), n) int64 columns, ``n`` per user, none of them a positive; -1 pads.

    ``positives`` is (len(users), C): row i holds the positives of user ``users[i]`` (any
    split) as columns ``0..C-1``. Row i is the first ``n`` distinct non-positive columns
    of a random stream keyed by ``(seed, users[i])``: uniform without replacement, and a
    function of the seed, the user and their positives only (not of the batch). Users
    with at most ``n`` eligible columns get all of them (sorted), then padding.
    """
    n_cols = positives.shape[1]
    positives = sp.csr_matrix(positives, copy=True)
    positives.eliminate_zeros()
    out = np.full((len(users), n), -1, np.int64)
    eligible = n_cols - np.diff(positives.indptr)
    for i in np.flatnonzero(eligible <= n):  # tiny catalogues or near-complete users only
        free = np.setdiff1d(np.arange(n_cols), positives[i].indices)
        out[i, : len(free)] = free
    key = np.zeros(1, np.uint64)
    for part in seed:
        key = splitmix64(key ^ np.array(part).astype(np.uint64))
    key = splitmix64(key ^ np.asarray(users).astype(np.uint64))
    rows = np.repeat(np.arange(len(users)), np.diff(positives.indptr))
    taken = np.sort(rows * n_cols + positives.indices)
    taken = np.append(taken, np.iinfo(np.int64).max)  # a sentinel: searchsorted stays inside
    todo, m = np.flatnonzero(eligible > n), 2 * n
    while len(todo):
        # The stream's first m draws; a longer prefix only appends, so the result does not
        # depend on m, and a row is settled once its prefix holds n acceptable draws.
        steps = np.arange(m, dtype=np.uint64) * GOLDEN
        draws = (splitmix64(key[todo, None] + steps) % np.uint64(n_cols)).astype(np.int64)
        cells = todo[:, None] * n_cols + draws
        is_pos = taken[np.searchsorted(taken, cells)] == cells
        order = np.argsort(draws, axis=1, kind="stable")
        ordered = np.take_along_axis(draws, order, axis=1)
        repeat = np.zeros(draws.shape, bool)
        np.put_along_axis(repeat, order[:, 1:], ordered[:, 1:] == ordered[:, :-1], axis=1)
        ok = ~is_pos & ~repeat
        done = ok.sum(axis=1) >= n
        first = np.argsort(~ok[done], axis=1, kind="stable")[:, :n]
        out[todo[done]] = np.sort(np.take_along_axis(draws[done], first, axis=1), axis=1)
        todo, m = todo[~done], 2 * m
    return out
