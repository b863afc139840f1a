"""Everything the full ranking reads off a score block, in one compiled pass per row.

A full-ranking block holds ~500 users x 255k candidates at TIMJ scale (512 MB), far more
than the caches: every separate pass over it (counting each held-out track's rank, writing
``-inf`` over the user's positives, picking the served list, picking the sample's list)
reads it back from memory. Here each row is read once, in chunks of
:data:`jamrec.models.topk._CHUNK` columns that stay in the first-level cache while every
held-out track's count and both lists look at them; the positives are masked as they are
met (a merge against the row's sorted positive columns), never written into the block.

The results are exactly those of the separate passes (tests/test_blockpass.py):

- ranks: :func:`jamrec.evaluation.metrics.ranks_full` with the columns in tie order;
- lists: :func:`jamrec.models.topk.top_k_columns` of the row with the masked columns set
  to ``-inf`` (a masked column ranks as a ``-inf`` score would, by its column).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
from numba import njit, prange

from jamrec.models.topk import _CHUNK, _after, _sift_down

_NEG_INF = float("-inf")


@njit(cache=True, inline="always")
def _not_below(values: np.ndarray, v: float) -> int:  # pragma: no cover - compiled
    """#{j: not (values[j] < v)}: ``>= v`` or NaN (vectorised)."""
    count = 0
    for q in range(values.shape[0]):
        count += not (values[q] < v)
    return count


@njit(cache=True, inline="always")
def _above(values: np.ndarray, v: float) -> int:  # pragma: no cover - compiled
    """#{j: not (values[j] <= v)}: ``> v`` or NaN (vectorised)."""
    count = 0
    for q in range(values.shape[0]):
        count += not (values[q] <= v)
    return count


@njit(cache=True, inline="always")
def _none_above(values: np.ndarray, threshold: float) -> bool:  # pragma: no cover
    """Whether no entry of ``values`` is ``> threshold`` (NaN never is), vectorised."""
    count = 0
    for q in range(values.shape[0]):
        count += values[q] > threshold
    return count == 0


@njit(cache=True, inline="always")
def _masked(mask: np.ndarray, at: np.ndarray, j: int) -> bool:  # pragma: no cover
    """Whether column ``j`` is in the sorted ``mask``; ``at[0]`` is a cursor that only moves
    forwards (the columns are asked for in increasing order)."""
    p = at[0]
    while p < mask.shape[0] and mask[p] < j:
        p += 1
    at[0] = p
    return p < mask.shape[0] and mask[p] == j


@njit(cache=True, inline="always")
def _sift(hs: np.ndarray, hc: np.ndarray, size: int, s: float, c: int) -> None:  # pragma: no cover
    """Put (s, c) at the root of the heap (its root ranks last) and sift it down: the
    top-k's sift with the column as its own tie rank."""
    _sift_down(hs, hc, hc, size, s, c, c)


@njit(cache=True, inline="always")
def _push(hs: np.ndarray, hc: np.ndarray, size: int, s: float, c: int) -> None:  # pragma: no cover
    """Add (s, c) as entry ``size`` of the heap and sift it up."""
    i = size
    while i > 0:
        parent = (i - 1) >> 1
        if not _after(s, c, hs[parent], hc[parent]):
            break
        hs[i], hc[i] = hs[parent], hc[parent]
        i = parent
    hs[i], hc[i] = s, c


@njit(cache=True, inline="always")
def _heap_chunk(
    x: np.ndarray,
    lo: int,
    hi: int,
    hs: np.ndarray,
    hc: np.ndarray,
    size: np.ndarray,
    k: int,
    mask_a: np.ndarray,
    at_a: np.ndarray,
    mask_b: np.ndarray,
    at_b: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """Offer columns ``lo..hi-1`` of ``x`` to the heap of the best ``k`` (``size[0]``
    entries so far), the columns in ``mask_a`` or ``mask_b`` as ``-inf``."""
    j = lo
    while j < hi and size[0] < k:  # filling: every column goes in
        s = _NEG_INF if _masked(mask_a, at_a, j) or _masked(mask_b, at_b, j) else x[j]
        _push(hs, hc, size[0], s, j)
        size[0] += 1
        j += 1
    if j >= hi:
        return
    worst = hs[0]
    # Nothing in the chunk beats the worst kept: one vectorised count. The chunk's columns
    # come after every kept one, so a score equal to the worst ranks after it (a row of
    # ties, e.g. item-kNN's zeros, is skipped too). Masked columns are -inf, below any
    # worst but -inf itself; and every number beats a NaN worst.
    if worst == worst and worst > _NEG_INF and _none_above(x[j:hi], worst):
        return
    for q in range(j, hi):
        s = x[q]
        if s < worst:  # below the worst kept (False for NaN)
            continue
        if _masked(mask_a, at_a, q) or _masked(mask_b, at_b, q):
            s = _NEG_INF
        if _after(hs[0], hc[0], s, q):
            _sift(hs, hc, k, s, q)
            worst = hs[0]


@njit(cache=True, inline="always")
def _pop_all(
    hs: np.ndarray, hc: np.ndarray, size: int, out_cols: np.ndarray, out_scores: np.ndarray
) -> None:  # pragma: no cover - compiled
    """Write the heap's entries into ``out_*[:size]`` best first (columns past it: -1)."""
    for m in range(size, out_cols.shape[0]):
        out_cols[m], out_scores[m] = -1, _NEG_INF
    for m in range(size - 1, -1, -1):
        out_scores[m], out_cols[m] = hs[0], hc[0]
        _sift(hs, hc, m, hs[m], hc[m])


@njit(parallel=True, cache=True)
def _pass(
    scores: np.ndarray,
    rel_ptr: np.ndarray,
    rel_cols: np.ndarray,
    exc_ptr: np.ndarray,
    exc_cols: np.ndarray,
    ranks: np.ndarray,
    with_ranks: bool,
    list_cols: np.ndarray,
    list_scores: np.ndarray,
    sample_row: np.ndarray,
    seen_ptr: np.ndarray,
    seen_cols: np.ndarray,
    sample_cols: np.ndarray,
    sample_scores: np.ndarray,
) -> None:  # pragma: no cover - compiled
    n_rows, n = scores.shape
    k, ks = list_cols.shape[1], sample_cols.shape[1]
    for r in prange(n_rows):
        x = scores[r]
        rel = rel_cols[rel_ptr[r] : rel_ptr[r + 1]]
        exc = exc_cols[exc_ptr[r] : exc_ptr[r + 1]]
        n_rel = rel.shape[0] if with_ranks else 0
        v = np.empty(n_rel, np.float32)
        count = np.zeros(n_rel, np.int64)
        for i in range(n_rel):
            v[i] = x[rel[i]]
        hs, hc, size = np.empty(k, np.float32), np.empty(k, np.int64), np.zeros(1, np.int64)
        at_a, at_b = np.zeros(1, np.int64), np.zeros(1, np.int64)
        sampled = ks > 0 and sample_row[r] >= 0
        seen = seen_cols[seen_ptr[r] : seen_ptr[r + 1]]
        ss, sc, s_size = np.empty(ks, np.float32), np.empty(ks, np.int64), np.zeros(1, np.int64)
        at_s, at_none = np.zeros(1, np.int64), np.zeros(1, np.int64)
        none = seen[:0]
        for lo in range(0, n, _CHUNK):
            hi = min(lo + _CHUNK, n)
            chunk = x[lo:hi]
            for i in range(n_rel):
                c, value = rel[i], v[i]
                if value != value:
                    continue
                # Before c in tie order: ahead unless strictly lower; after c: ahead unless
                # lower or equal (NaN is ahead of every number).
                if hi <= c:
                    count[i] += _not_below(chunk, value)
                elif lo > c:
                    count[i] += _above(chunk, value)
                else:
                    count[i] += _not_below(x[lo:c], value) + _above(x[c + 1 : hi], value)
            if k > 0:
                _heap_chunk(x, lo, hi, hs, hc, size, k, rel, at_a, exc, at_b)
            if sampled:
                _heap_chunk(x, lo, hi, ss, sc, s_size, ks, seen, at_s, none, at_none)
        if n_rel:
            n_nan = 0
            for i in range(n_rel):
                n_nan += v[i] != v[i]
            for i in range(n_rel):
                c, value = rel[i], v[i]
                if value != value:
                    # After every listed column that is not a NaN relevant one, NaN relevant
                    # ones by column.
                    before = 0
                    for q in range(i):
                        before += v[q] != v[q]
                    ranks[rel_ptr[r] + i] = 1 + n - exc.shape[0] - n_nan + before
                    continue
                ahead = count[i]
                for e in exc:  # the excluded columns are not listed: take them back
                    xe = x[e]
                    ahead -= (not (xe < value)) if e < c else (not (xe <= value))
                ahead -= n_nan  # NaN relevant columns go last, counted ahead above
                ranks[rel_ptr[r] + i] = 1 + ahead
        if k > 0:
            _pop_all(hs, hc, size[0], list_cols[r], list_scores[r])
        if sampled:
            _pop_all(ss, sc, s_size[0], sample_cols[sample_row[r]], sample_scores[sample_row[r]])


class BlockResult(NamedTuple):
    """What :func:`block_pass` read off one block (columns are the block's columns)."""

    ranks: np.ndarray  # (relevant.nnz,) int64 1-based ranks, in the CSR order of relevant
    list_cols: np.ndarray  # (rows, k) int64, best first; -1 where fewer columns or masked
    list_scores: np.ndarray  # (rows, k) float32; -inf where list_cols is -1 or masked
    sample_cols: np.ndarray  # (len(sample_rows), ks) int64, as list_cols
    sample_scores: np.ndarray  # (len(sample_rows), ks) float32


def _sorted_csr(matrix: sp.csr_matrix, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    if matrix.shape[0] != n_rows:
        raise ValueError(f"a pattern has {matrix.shape[0]} rows, the block {n_rows}")
    if not matrix.has_canonical_format:  # sorted columns, no duplicates
        matrix = matrix.copy()
        matrix.sum_duplicates()
    return matrix.indptr.astype(np.int64), matrix.indices.astype(np.int64)


class _Patterns(NamedTuple):
    """A block's patterns as the compiled passes read them (sorted CSR arrays)."""

    rel_ptr: np.ndarray
    rel_cols: np.ndarray
    exc_ptr: np.ndarray
    exc_cols: np.ndarray
    sample_row: np.ndarray  # (rows,) each row's place among the sample rows, or -1
    seen_ptr: np.ndarray
    seen_cols: np.ndarray


def _prepare(
    n_rows: int,
    n: int,
    relevant: sp.csr_matrix,
    excluded: sp.csr_matrix,
    ranks: bool,
    k: int,
    sample_rows: np.ndarray | None,
    seen: sp.csr_matrix | None,
    k_sample: int,
) -> tuple[_Patterns, BlockResult]:
    """The patterns and the empty result of a pass over ``n_rows`` x ``n`` (the lists'
    lengths cut to ``n``), shared by :func:`block_pass` and :func:`shared_row_pass`."""
    rel_ptr, rel_cols = _sorted_csr(relevant, n_rows)
    exc_ptr, exc_cols = _sorted_csr(excluded, n_rows)
    k = max(0, min(int(k), n))
    sample_rows = np.zeros(0, np.int64) if sample_rows is None else np.asarray(sample_rows)
    k_sample = max(0, min(int(k_sample), n))
    row_of = np.full(n_rows, -1, np.int64)
    row_of[sample_rows] = np.arange(len(sample_rows))
    if seen is None:
        seen_ptr, seen_cols = np.zeros(n_rows + 1, np.int64), np.zeros(0, np.int64)
    else:
        seen_ptr, seen_cols = _sorted_csr(seen, n_rows)
    out = BlockResult(
        np.zeros(len(rel_cols) if ranks else 0, np.int64),
        np.full((n_rows, k), -1, np.int64),
        np.full((n_rows, k), -np.inf, np.float32),
        np.full((len(sample_rows), k_sample), -1, np.int64),
        np.full((len(sample_rows), k_sample), -np.inf, np.float32),
    )
    patterns = _Patterns(rel_ptr, rel_cols, exc_ptr, exc_cols, row_of, seen_ptr, seen_cols)
    return patterns, out


def block_pass(
    scores: np.ndarray,
    relevant: sp.csr_matrix,
    excluded: sp.csr_matrix,
    ranks: bool = True,
    k: int = 0,
    sample_rows: np.ndarray | None = None,
    seen: sp.csr_matrix | None = None,
    k_sample: int = 0,
) -> BlockResult:
    """Read everything the full ranking needs off ``scores`` (``(rows, n)`` float32, the
    columns in tie order) in one pass per row (module docstring); ``scores`` is never
    written.

    ``relevant``, ``excluded``: ``(rows, n)`` patterns, disjoint, the held-out columns of
    each row and the columns left out of its ranking. ``ranks``: the rank of each relevant
    entry (:func:`jamrec.evaluation.metrics.ranks_full`). ``k``: each row's best ``k``
    columns with its relevant and excluded ones masked (the served list). ``sample_rows``
    (sorted row indexes), ``seen``, ``k_sample``: the best ``k_sample`` columns of those
    rows with only their ``seen`` columns masked (the sample's list).
    """
    scores = np.ascontiguousarray(scores, dtype=np.float32)
    n_rows, n = scores.shape
    p, out = _prepare(n_rows, n, relevant, excluded, ranks, k, sample_rows, seen, k_sample)
    if n_rows and n:
        _pass(
            scores,
            p.rel_ptr,
            p.rel_cols,
            p.exc_ptr,
            p.exc_cols,
            out.ranks,
            ranks,
            out.list_cols,
            out.list_scores,
            p.sample_row,
            p.seen_ptr,
            p.seen_cols,
            out.sample_cols,
            out.sample_scores,
        )
    for cols, values in ((out.list_cols, out.list_scores), (out.sample_cols, out.sample_scores)):
        cols[np.isneginf(values)] = -1
    return out


def shared_row_pass(
    row: np.ndarray,
    relevant: sp.csr_matrix,
    excluded: sp.csr_matrix,
    ranks: bool = True,
    k: int = 0,
    sample_rows: np.ndarray | None = None,
    seen: sp.csr_matrix | None = None,
    k_sample: int = 0,
) -> BlockResult | None:
    """:func:`block_pass` of a block whose every row is ``row`` (a model that scores every
    user alike: popularity), without the block: the columns are put in ranking order once
    (score, then column), a held-out column's rank is its place in that order less the
    row's excluded columns ahead of it, and a list is the order's first columns that the
    row does not mask. A row costs its own columns, not the catalogue's 255k.

    None when the shortcut does not apply (a score that is not a finite number, or a row
    with fewer unmasked columns than a list needs): the caller scores the block."""
    row = np.asarray(row, dtype=np.float32)
    n_rows, n = relevant.shape
    if n_rows == 0 or n == 0 or not np.isfinite(row).all() or len(row) != n:
        return None
    p, out = _prepare(n_rows, n, relevant, excluded, ranks, k, sample_rows, seen, k_sample)
    k, k_sample = out.list_cols.shape[1], out.sample_cols.shape[1]
    if k and (n - np.diff(p.rel_ptr) - np.diff(p.exc_ptr)).min() < k:
        return None
    in_sample = p.sample_row >= 0
    if k_sample and in_sample.any() and (n - np.diff(p.seen_ptr)[in_sample]).min() < k_sample:
        return None
    order = np.lexsort((np.arange(n), -row))  # higher score first, then the column
    place = np.empty(n, np.int64)
    place[order] = np.arange(n)
    _shared_pass(
        row,
        order,
        place,
        p.rel_ptr,
        p.rel_cols,
        p.exc_ptr,
        p.exc_cols,
        out.ranks,
        ranks,
        out.list_cols,
        out.list_scores,
        p.sample_row,
        p.seen_ptr,
        p.seen_cols,
        out.sample_cols,
        out.sample_scores,
    )
    return out


@njit(cache=True, inline="always")
def _in_sorted(cols: np.ndarray, c: int) -> bool:  # pragma: no cover - compiled
    at = np.searchsorted(cols, c)
    return at < cols.shape[0] and cols[at] == c


@njit(cache=True, inline="always")
def _first_unmasked(
    row: np.ndarray,
    order: np.ndarray,
    mask_a: np.ndarray,
    mask_b: np.ndarray,
    out_cols: np.ndarray,
    out_scores: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """The order's first ``len(out_cols)`` columns in neither sorted mask."""
    m = 0
    for c in order:
        if m == out_cols.shape[0]:
            break
        if _in_sorted(mask_a, c) or _in_sorted(mask_b, c):
            continue
        out_cols[m], out_scores[m] = c, row[c]
        m += 1


@njit(parallel=True, cache=True)
def _shared_pass(
    row: np.ndarray,
    order: np.ndarray,
    place: np.ndarray,
    rel_ptr: np.ndarray,
    rel_cols: np.ndarray,
    exc_ptr: np.ndarray,
    exc_cols: np.ndarray,
    ranks: np.ndarray,
    with_ranks: bool,
    list_cols: np.ndarray,
    list_scores: np.ndarray,
    sample_row: np.ndarray,
    seen_ptr: np.ndarray,
    seen_cols: np.ndarray,
    sample_cols: np.ndarray,
    sample_scores: np.ndarray,
) -> None:  # pragma: no cover - compiled
    n_rows = rel_ptr.shape[0] - 1
    for r in prange(n_rows):
        rel = rel_cols[rel_ptr[r] : rel_ptr[r + 1]]
        exc = exc_cols[exc_ptr[r] : exc_ptr[r + 1]]
        if with_ranks:
            for i in range(rel.shape[0]):
                p = place[rel[i]]
                ahead = p
                for e in exc:
                    ahead -= place[e] < p
                ranks[rel_ptr[r] + i] = 1 + ahead
        if list_cols.shape[1] > 0:
            _first_unmasked(row, order, rel, exc, list_cols[r], list_scores[r])
        if sample_cols.shape[1] > 0 and sample_row[r] >= 0:
            seen = seen_cols[seen_ptr[r] : seen_ptr[r + 1]]
            s = sample_row[r]
            _first_unmasked(row, order, seen, seen[:0], sample_cols[s], sample_scores[s])
