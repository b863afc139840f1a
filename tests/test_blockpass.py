"""The one-pass reading of a score block (:mod:`jamrec.evaluation.blockpass`) equals the
separate passes it replaces: ranks_full's ranks and the top-k of the block with the masked
columns written to ``-inf``, on blocks full of ties, infinities and NaN."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from jamrec.evaluation.blockpass import block_pass
from jamrec.evaluation.metrics import ranks_full
from jamrec.models.base import top_k


def _pattern(rng, n_rows, n, density, taken=None):
    picked = rng.random((n_rows, n)) < density
    if taken is not None:
        picked &= ~taken
    return picked


def _case(rng, n_rows, n, levels):
    scores = rng.integers(-levels, levels, (n_rows, n)).astype(np.float32)
    if levels > 50:
        scores = rng.standard_normal((n_rows, n)).astype(np.float32)
    special = rng.random((n_rows, n))
    scores[special < 0.03] = -np.inf
    scores[(special >= 0.03) & (special < 0.05)] = np.nan
    scores[(special >= 0.05) & (special < 0.06)] = np.inf
    if n_rows > 3:
        scores[1] = np.nan  # every column NaN
        scores[2] = 0.5  # every column tied
    relevant = _pattern(rng, n_rows, n, 0.01)
    relevant[:, rng.integers(0, n)] = True  # one held-out column per row at least
    excluded = _pattern(rng, n_rows, n, 0.05, relevant)
    seen = excluded & (rng.random((n_rows, n)) < 0.6)
    return scores, relevant, excluded, seen


def _masked_top(scores, mask, k):
    block = scores.copy()
    block[mask] = -np.inf
    return top_k(block, np.arange(scores.shape[1]), k, np.arange(scores.shape[1]))


@pytest.mark.parametrize(
    ("n_rows", "n", "levels", "k", "k_sample"),
    [(9, 1000, 4, 10, 5), (6, 700, 1000, 20, 10), (5, 130, 2, 70, 3), (4, 30, 3, 40, 100)],
)
@pytest.mark.parametrize("seed", [0, 1])
def test_block_pass_equals_the_separate_passes(n_rows, n, levels, k, k_sample, seed):
    rng = np.random.default_rng(seed)
    scores, relevant, excluded, seen = _case(rng, n_rows, n, levels)
    sample_rows = np.flatnonzero(rng.random(n_rows) < 0.5)
    got = block_pass(
        scores,
        sp.csr_matrix(relevant),
        sp.csr_matrix(excluded),
        k=k,
        sample_rows=sample_rows,
        seen=sp.csr_matrix(seen),
        k_sample=k_sample,
    )
    rows, cols = np.nonzero(relevant)  # row by row, columns sorted: the CSR order
    np.testing.assert_array_equal(
        got.ranks, ranks_full(scores, rows, cols, exclude=np.nonzero(excluded))
    )
    ids, values = _masked_top(scores, relevant | excluded, k)
    np.testing.assert_array_equal(got.list_cols, ids)
    np.testing.assert_array_equal(got.list_scores, values)
    ids, values = _masked_top(scores[sample_rows], seen[sample_rows], k_sample)
    np.testing.assert_array_equal(got.sample_cols, ids)
    np.testing.assert_array_equal(got.sample_scores, values)
    assert not np.shares_memory(got.list_scores, scores)


@pytest.mark.parametrize("levels", [3, 1000])
@pytest.mark.parametrize("seed", [0, 1])
def test_deep_lists_equal_the_separate_passes(levels, seed):
    """200-deep lists (the re-rankers' pool) over 20,000 columns, where a chunk that only
    ties the worst kept entry is skipped: the same lists and ranks, with ties, NaN and
    infinities, a row of NaN, a row of one value, rows with NaN in every chunk."""
    rng = np.random.default_rng(seed)
    n_rows, n, k = 7, 20_000, 200
    scores, _, _, _ = _case(rng, n_rows, n, levels)
    scores[3, : n - 64 * 150] = np.nan  # mostly NaN
    scores[4, ::64] = np.nan  # a NaN in every chunk
    relevant = _pattern(rng, n_rows, n, 0.0005)
    relevant[:, rng.integers(0, n)] = True
    excluded = _pattern(rng, n_rows, n, 0.002, relevant)
    got = block_pass(scores, sp.csr_matrix(relevant), sp.csr_matrix(excluded), k=k)
    rows, cols = np.nonzero(relevant)
    np.testing.assert_array_equal(
        got.ranks, ranks_full(scores, rows, cols, exclude=np.nonzero(excluded))
    )
    ids, values = _masked_top(scores, relevant | excluded, k)
    np.testing.assert_array_equal(got.list_cols, ids)
    np.testing.assert_array_equal(got.list_scores, values)


def test_block_pass_lists_alone_and_nothing_asked():
    rng = np.random.default_rng(3)
    scores, relevant, excluded, _ = _case(rng, 5, 300, 3)
    lists_only = block_pass(scores, sp.csr_matrix(relevant), sp.csr_matrix(excluded), False, 7)
    assert lists_only.ranks.shape == (0,)
    ids, _ = _masked_top(scores, relevant | excluded, 7)
    np.testing.assert_array_equal(lists_only.list_cols, ids)
    nothing = block_pass(scores, sp.csr_matrix(relevant), sp.csr_matrix(excluded), False)
    assert nothing.list_cols.shape == (5, 0) and nothing.sample_cols.shape == (0, 0)


def test_block_pass_does_not_write_the_block():
    rng = np.random.default_rng(4)
    scores, relevant, excluded, seen = _case(rng, 5, 200, 3)
    before = scores.copy()
    block_pass(
        scores,
        sp.csr_matrix(relevant),
        sp.csr_matrix(excluded),
        k=5,
        sample_rows=np.arange(5),
        seen=sp.csr_matrix(seen),
        k_sample=5,
    )
    np.testing.assert_array_equal(scores, before)


@pytest.mark.parametrize("levels", [3, 50, 1000])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_shared_row_read_without_its_block_equals_the_block_pass(levels, seed):
    """A model that scores every user alike (popularity): ranks and both lists read off
    the row's order equal the block pass over the block of that row repeated, ties
    included; a row with a NaN or an infinity, or too few unmasked columns for a list,
    is left to the block pass (None)."""
    from jamrec.evaluation.blockpass import shared_row_pass

    rng = np.random.default_rng(seed)
    n_rows, n = 9, 900
    row = rng.integers(-levels, levels, n).astype(np.float32)
    if levels > 100:
        row = rng.standard_normal(n).astype(np.float32)
    row[rng.integers(0, n, 5)] = -0.0  # -0.0 and 0.0 tie
    row[rng.integers(0, n, 5)] = 0.0
    block = np.broadcast_to(row, (n_rows, n)).copy()
    _, relevant, excluded, seen = _case(rng, n_rows, n, levels)
    args = (sp.csr_matrix(relevant), sp.csr_matrix(excluded))
    sample_rows = np.flatnonzero(rng.random(n_rows) < 0.5)
    options = {"k": 40, "sample_rows": sample_rows, "seen": sp.csr_matrix(seen), "k_sample": 10}
    got = shared_row_pass(row, *args, **options)
    want = block_pass(block, *args, **options)
    assert got is not None
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)
    for bad in (np.nan, np.inf, -np.inf):
        broken = row.copy()
        broken[7] = bad
        assert shared_row_pass(broken, *args, **options) is None
    assert shared_row_pass(row, *args, k=n) is None  # some row masks columns
