"""Metrics against brute-force references: explicit sorts and Python loops."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

import jamrec.evaluation.metrics as metrics
from jamrec.evaluation.metrics import (
    bootstrap_ci,
    metric_columns,
    per_user_metrics,
    ranks_full,
    sample_negatives,
)


def brute_ranks(scores, rows, cols, exclude=(), tie=None):
    """Sort each row's listed items by an explicit key and read off positions."""
    n_cols = scores.shape[1]
    tie = np.arange(n_cols) if tie is None else tie
    relevant = set(zip(rows.tolist(), cols.tolist()))
    excluded = set(exclude)
    out = []
    for r, c in zip(rows.tolist(), cols.tolist()):
        keyed = []
        for j in range(n_cols):
            x = float(scores[r, j])
            if (r, j) in excluded:
                continue
            if math.isnan(x):
                # NaN: ahead of everything, unless relevant (then after everything).
                key = (2, 0.0, tie[j]) if (r, j) in relevant else (0, 0.0, tie[j])
            else:
                key = (1, -x, tie[j])  # -inf is an ordinary lowest score
            keyed.append((key, j))
        keyed.sort()
        out.append(1 + [j for _, j in keyed].index(c))
    return np.array(out, dtype=np.int64)


def random_case(rng, with_nan=True):
    n_rows, n_cols = rng.integers(1, 7), rng.integers(1, 40)
    levels = rng.integers(1, 6)  # few distinct values: many ties
    scores = rng.integers(0, levels, (n_rows, n_cols)).astype(np.float32)
    if rng.random() < 0.3:
        scores = rng.standard_normal((n_rows, n_cols)).astype(np.float32)
    special = rng.random((n_rows, n_cols))
    scores[special < 0.1] = -np.inf
    scores[(special > 0.97) & with_nan] = np.nan
    scores[special > 0.995] = np.inf
    entries = rng.permutation(n_rows * n_cols)
    n_rel = rng.integers(0, min(len(entries), 3 * n_rows) + 1)
    rel, rest = entries[:n_rel], entries[n_rel:]
    excl = rest[rng.random(len(rest)) < 0.2]
    tie = rng.permutation(n_cols) if rng.random() < 0.5 else None
    return scores, rel // n_cols, rel % n_cols, (excl // n_cols, excl % n_cols), tie


def test_ranks_full_matches_brute_force():
    rng = np.random.default_rng(7)
    for _ in range(400):
        scores, rows, cols, (er, ec), tie = random_case(rng)
        # Duplicated exclusions are allowed and count once.
        er, ec = np.concatenate([er, er[:2]]), np.concatenate([ec, ec[:2]])
        got = ranks_full(scores, rows, cols, exclude=(er, ec), tie=tie)
        want = brute_ranks(scores, rows, cols, list(zip(er.tolist(), ec.tolist())), tie)
        np.testing.assert_array_equal(got, want)


def test_ranks_full_ties_minus_inf_and_nan():
    scores = np.array([[1.0, 1.0, 1.0, 1.0, -np.inf, 2.0]], np.float32)
    # All equal: column (= tie) order decides; 2.0 ahead of all; -inf is ranked, last.
    np.testing.assert_array_equal(ranks_full(scores, [0, 0, 0, 0], [0, 2, 3, 4]), [2, 4, 5, 6])
    # A tie order given explicitly: column 3 first among the 1.0s.
    np.testing.assert_array_equal(ranks_full(scores, [0], [3], tie=[1, 2, 3, 0, 4, 5]), [2])
    # Excluding columns 5 and 0 lifts the others.
    got = ranks_full(scores, [0, 0], [1, 4], exclude=([0, 0], [5, 0]))
    np.testing.assert_array_equal(got, [1, 4])
    # A model scoring everything -inf ranks by tie order alone: it gains nothing.
    flat = np.full((1, 6), -np.inf, np.float32)
    np.testing.assert_array_equal(ranks_full(flat, [0], [4]), [5])
    # NaN elsewhere is ahead; a NaN relevant entry goes after the whole list.
    nan = np.array([[np.nan, 3.0, np.nan, 0.0]], np.float32)
    np.testing.assert_array_equal(ranks_full(nan, [0, 0], [1, 2]), [2, 4])
    with pytest.raises(ValueError, match="also excluded"):
        ranks_full(scores, [0], [1], exclude=([0], [1]))
    with pytest.raises(ValueError, match="unique"):
        ranks_full(scores, [0, 0], [1, 1])
    with pytest.raises(ValueError, match="bounds"):
        ranks_full(scores, [0], [6])
    assert ranks_full(scores, [], []).shape == (0,)


def brute_user_metrics(ranks, n_relevant, ks):
    out, o = [], 0
    for n in n_relevant:
        user = sorted(ranks[o : o + n])
        o += n
        if n == 0:
            out.append([math.nan] * (2 * len(ks) + 1))
            continue
        hr = [float(any(r <= k for r in user)) for k in ks]
        ndcg = []
        for k in ks:
            dcg = sum(1 / math.log2(r + 1) for r in user if r <= k)
            ideal = sum(1 / math.log2(i + 2) for i in range(min(n, k)))
            ndcg.append(dcg / ideal)
        out.append(hr + ndcg + [1 / user[0]])
    return np.array(out).reshape(len(n_relevant), 2 * len(ks) + 1)


def test_per_user_metrics_matches_brute_force():
    rng = np.random.default_rng(3)
    for _ in range(300):
        n_users = rng.integers(0, 8)
        n_relevant = rng.integers(0, 5, n_users)
        ks = tuple(sorted(rng.choice([1, 2, 3, 5, 10, 20, 50], rng.integers(1, 4), replace=False)))
        # Distinct ranks per user, as ranks_full gives; the list may be shorter than k.
        n_cols = rng.integers(max(n_relevant.max(initial=0), 1), 30)
        ranks = np.concatenate(
            [rng.choice(n_cols, n, replace=False) + 1 for n in n_relevant] + [np.zeros(0, int)]
        )
        got = per_user_metrics(ranks, n_relevant, ks)
        assert got.columns == metric_columns(ks)
        np.testing.assert_allclose(got.values, brute_user_metrics(ranks, n_relevant, ks))


def test_metrics_of_ranked_blocks_with_k_beyond_the_list():
    rng = np.random.default_rng(11)
    for _ in range(100):
        scores, rows, cols, exclude, tie = random_case(rng, with_nan=False)
        order = np.argsort(rows, kind="stable")
        rows, cols = rows[order], cols[order]
        ranks = ranks_full(scores, rows, cols, exclude=exclude, tie=tie)
        n_relevant = np.bincount(rows, minlength=scores.shape[0])
        got = per_user_metrics(ranks, n_relevant, ks=(1, 5, 100))
        want = brute_user_metrics(
            brute_ranks(scores, rows, cols, list(zip(*exclude)), tie), n_relevant, (1, 5, 100)
        )
        np.testing.assert_allclose(got.values, want)
        # k beyond every list: HR is 1 for every user with a relevant item.
        assert np.all(got.values[n_relevant > 0, 2] == 1.0)


def test_per_user_metrics_examples():
    got = per_user_metrics(np.array([1, 3, 4, 2]), np.array([2, 0, 1, 1]), ks=(2,)).values
    # user 0: ranks 1, 3 -> HR@2 1, NDCG@2 = 1 / (1 + 1/log2 3), MRR 1
    np.testing.assert_allclose(got[0], [1, 1 / (1 + 1 / math.log2(3)), 1])
    assert np.isnan(got[1]).all()  # no relevant item: not evaluated
    np.testing.assert_allclose(got[2], [0, 0, 0.25])
    np.testing.assert_allclose(got[3], [1, 1 / math.log2(3), 0.5])
    with pytest.raises(ValueError):
        per_user_metrics(np.array([1, 2]), np.array([1]))


def test_bootstrap_is_deterministic_and_matches_a_naive_loop(monkeypatch):
    rng = np.random.default_rng(0)
    values = rng.random((500, 3))
    low, high = bootstrap_ci(values, n_boot=300, seed=42)
    low2, high2 = bootstrap_ci(values, n_boot=300, seed=42)
    np.testing.assert_array_equal(low, low2)
    np.testing.assert_array_equal(high, high2)
    assert not np.array_equal(low, bootstrap_ci(values, n_boot=300, seed=43)[0])
    # One stream of draws: the chunk size does not change the result, and a plain
    # resample-and-average loop over the same draws gives the same interval.
    monkeypatch.setattr(metrics, "_BOOT_ELEMS", 700)
    low3, high3 = bootstrap_ci(values, n_boot=300, seed=42)
    np.testing.assert_allclose(low3, low)
    np.testing.assert_allclose(high3, high)
    draws = np.random.default_rng(42).integers(0, 500, size=(300, 500))
    means = np.array([values[d].mean(axis=0) for d in draws])
    np.testing.assert_allclose(low, np.quantile(means, 0.025, axis=0))
    np.testing.assert_allclose(high, np.quantile(means, 0.975, axis=0))


def test_bootstrap_interval_contains_the_mean_and_narrows():
    rng = np.random.default_rng(1)
    widths = []
    for n in (100, 1_000, 10_000):
        values = (rng.random((n, 2)) < 0.3).astype(float)
        low, high = bootstrap_ci(values, n_boot=400, seed=0)
        mean = values.mean(axis=0)
        assert np.all(low <= mean) and np.all(mean <= high)
        # Close to the normal-approximation width.
        normal = 2 * 1.96 * values.std(axis=0) / math.sqrt(n)
        np.testing.assert_allclose(high - low, normal, rtol=0.2)
        widths.append((high - low).mean())
    assert widths[0] > widths[1] > widths[2]


def test_bootstrap_coverage():
    rng = np.random.default_rng(5)
    covered = 0
    for trial in range(200):
        values = (rng.random(200) < 0.3).astype(float)
        low, high = bootstrap_ci(values, n_boot=200, seed=trial)
        covered += bool(low[0] <= 0.3 <= high[0])
    assert 0.88 <= covered / 200 <= 0.99


def test_bootstrap_edge_cases():
    low, high = bootstrap_ci(np.zeros((0, 2)))
    assert np.isnan(low).all() and np.isnan(high).all()
    low, high = bootstrap_ci(np.array([0.5]), n_boot=50)
    assert low.shape == (1,) and low[0] == high[0] == 0.5


def test_sample_negatives():
    rng = np.random.default_rng(0)
    n_cols, users = 150, np.arange(1000, 3000)
    dense = rng.random((len(users), n_cols)) < 0.05
    dense[5, :80] = True  # stored as explicit zeros below: not positives
    dense[7], dense[7, :60] = False, True  # 90 eligible < 100: all of them
    positives = sp.csr_matrix(dense.astype(np.float32))
    positives.data[positives.indptr[5] : positives.indptr[6]] = 0.0
    negatives = sample_negatives(positives, users, 100, [0, 2])
    for i in [*rng.choice(len(users), 200, replace=False).tolist(), 5, 7]:
        row = negatives[i][negatives[i] >= 0]
        assert len(set(row.tolist())) == len(row)
        assert not set(row.tolist()) & {
            int(c) for c, v in zip(positives[i].indices, positives[i].data) if v
        }
        assert len(row) == min(100, n_cols - np.count_nonzero(positives[i].toarray()))
    assert np.array_equal(negatives[7, :90], np.arange(60, 150))
    # A row depends on the seed, the user and their positives only, not on the batch.
    part = sample_negatives(positives[[9, 3]], users[[9, 3]], 100, [0, 2])
    np.testing.assert_array_equal(part, negatives[[9, 3]])
    assert not np.array_equal(
        sample_negatives(positives[:50], users[:50], 100, [1, 2]), negatives[:50]
    )
    # Uniform: with no positives every column is drawn 100/150 of the time.
    free = sample_negatives(sp.csr_matrix((4000, n_cols)), np.arange(4000), 100, [0, 1])
    share = np.bincount(free.ravel(), minlength=n_cols) / 4000
    assert np.abs(share - 100 / n_cols).max() < 0.04
