"""Is a gap between two models real? Paired statistics over users, as pure functions.

Two runs evaluated with the same evaluation settings on one build are measured on the same
users (:mod:`jamrec.evaluation.protocols`), so their per-user results pair up: a user's
difference ``d_u = a_u - b_u`` removes what is hard or easy about that user, and the
questions are asked of the ``(n,)`` vector of differences:

- :func:`paired_interval`: the mean difference with a percentile bootstrap 95% interval,
  resampling users with the resamples of the metrics intervals
  (:func:`jamrec.evaluation.metrics.bootstrap_ci` with the same seed);
- :func:`permutation_p`: a two-sided paired permutation test of the mean difference (under
  the null each user's two results are exchangeable: random sign flips of ``d``); the
  p-value follows ``scipy.stats.permutation_test`` (``permutation_type="samples"``): exact
  enumeration of the ``2**n`` sign patterns when that is no more than the resamples asked
  for, otherwise Monte Carlo with the observed statistic counted once;
- :func:`wilcoxon_p`: the Wilcoxon signed-rank test (``scipy.stats.wilcoxon``, zero
  differences dropped), a rank-based second opinion;
- :func:`holm`: Holm's step-down adjustment of a family of p-values (every pair of models
  compared at once).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from numba import njit, prange

from jamrec.evaluation.metrics import bootstrap_ci

ALPHA = 0.05
N_PERMUTATIONS = 10_000
# Sign patterns drawn per block, each block from its own generator keyed by (seed, block):
# the patterns do not depend on memory limits. 64 x 10k users stays in cache (fastest).
_PERM_BLOCK = 64
# scipy.stats.permutation_test's tolerance: null statistics within 100 ulps of the observed
# one count as equal (theoretically equal sums differ in the last bits).
_EPS = np.finfo(np.float64).eps * 100


class PairedResult(NamedTuple):
    """The paired comparison of two per-user vectors ``a`` and ``b`` (``a - b``)."""

    n_users: int
    mean_a: float
    mean_b: float
    difference: float  # mean of a - b
    ci_low: float  # paired bootstrap 95% interval of the difference
    ci_high: float
    p_value: float  # two-sided paired permutation test
    wilcoxon_p: float  # two-sided Wilcoxon signed-rank test


def paired_interval(
    diff: np.ndarray, n_boot: int = 1000, seed: int | Sequence[int] = 0
) -> tuple[float, float]:
    """Percentile bootstrap 95% interval of ``diff.mean()`` ((n,) float); NaN for n = 0."""
    low, high = bootstrap_ci(np.asarray(diff, dtype=np.float64), n_boot=n_boot, seed=seed)
    return float(low[0]), float(high[0])


def bootstrap_intervals(
    diffs: Sequence[np.ndarray], n_boot: int = 1000, seed: int | Sequence[int] = 0
) -> list[tuple[float, float]]:
    """:func:`paired_interval` of each of ``diffs`` (per-user differences of a pair, or
    one model's per-user values), the vectors of the same length in one bootstrap: its
    resamples depend on the number of users and the seed only, so every such vector gets
    the resamples it would get alone, and the draws (most of the cost, 160M at TIMJ
    scale) are made once, not once per pair."""
    out: list[tuple[float, float]] = [(float("nan"), float("nan"))] * len(diffs)
    by_length: dict[int, list[int]] = {}
    for i, diff in enumerate(diffs):
        by_length.setdefault(len(diff), []).append(i)
    for positions in by_length.values():
        values = np.stack([np.asarray(diffs[i], np.float64) for i in positions], axis=1)
        low, high = bootstrap_ci(values, n_boot=n_boot, seed=seed)
        for column, i in enumerate(positions):
            out[i] = (float(low[column]), float(high[column]))
    return out


def permutation_p(
    diff: np.ndarray, n_permutations: int = N_PERMUTATIONS, seed: int | Sequence[int] = 0
) -> float:
    """Two-sided paired permutation p-value of the mean of ``diff`` ((n,) float).

    The statistic is ``mean(s * diff)`` over sign patterns ``s``: every pattern when
    ``2**n <= n_permutations`` (exact: no adjustment), otherwise ``n_permutations``
    patterns drawn with ``seed``, the observed one counted once
    (``(count + 1) / (n_permutations + 1)``); two-sided is twice the smaller one-sided
    p-value, at most 1 (``scipy.stats.permutation_test``'s conventions). Users with
    ``diff == 0`` do not change the statistic under any sign, so only the others are
    flipped (at TIMJ scale most users miss with both models: this is what keeps the test
    cheap). 1.0 when every difference is zero; NaN without users.
    """
    diff = np.asarray(diff, dtype=np.float64).reshape(-1)
    n = len(diff)
    if n == 0:
        return float("nan")
    d = diff[diff != 0]
    if not len(d):
        return 1.0
    observed = d.sum() / n
    gamma = abs(_EPS * observed)
    m = len(d)
    less: int | np.intp
    greater: int | np.intp
    if m < 63 and 2**m <= n_permutations:
        # Exact: all 2**m patterns of the nonzero differences (each with 2**(n - m) equal
        # copies for the zero ones, which leave the proportions unchanged).
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=m)))
        null = signs @ d / n
        total, adjustment = len(null), 0
        less = np.count_nonzero(null <= observed + gamma)
        greater = np.count_nonzero(null >= observed - gamma)
    else:
        less = greater = 0
        n_bytes = (m + 7) // 8
        key = [int(x) for x in np.atleast_1d(seed)]
        for block, start in enumerate(range(0, n_permutations, _PERM_BLOCK)):
            b = min(_PERM_BLOCK, n_permutations - start)
            rng = np.random.default_rng([*key, block])
            # One random bit per sign: sum(s * d) = sum(d) - 2 * (bits @ d), s = 1 - 2 * bit.
            words = rng.integers(0, 256, size=(b, n_bytes), dtype=np.uint8)
            bits = np.unpackbits(words, axis=1, count=m)
            sums = np.empty(b)
            _bit_sums(bits, d, sums)
            null = (d.sum() - 2.0 * sums) / n
            less += np.count_nonzero(null <= observed + gamma)
            greater += np.count_nonzero(null >= observed - gamma)
        total, adjustment = n_permutations, 1
    p_less = (less + adjustment) / (total + adjustment)
    p_greater = (greater + adjustment) / (total + adjustment)
    return float(min(1.0, 2 * min(p_less, p_greater)))


@njit(parallel=True, cache=True, fastmath={"reassoc"})
def _bit_sums(bits: np.ndarray, d: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover
    """``out[r] = bits[r] @ d`` (``bits`` (b, m) uint8 0/1, ``d`` (m,) float64), a row per
    thread: numpy's product first converts the bits to a float64 block (4.6x slower with
    78k nonzero differences, as ``sampled_100`` has at TIMJ scale). The sum's order
    differs from BLAS's in the last bits only, which the p-value's tolerance absorbs."""
    for r in prange(bits.shape[0]):
        row = bits[r]
        total = 0.0
        for i in range(d.shape[0]):
            total += row[i] * d[i]
        out[r] = total


def wilcoxon_p(diff: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value of ``diff`` ((n,) float), zero differences
    dropped (``scipy.stats.wilcoxon``'s default); 1.0 when every difference is zero."""
    from scipy.stats import wilcoxon

    diff = np.asarray(diff, dtype=np.float64).reshape(-1)
    if not len(diff):
        return float("nan")
    if not np.any(diff != 0):
        return 1.0
    return float(wilcoxon(diff, zero_method="wilcox", alternative="two-sided").pvalue)


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (same order as given).

    Sorted ascending, ``p_(i)`` becomes ``max_{j <= i} min(1, (m - j + 1) * p_(j))`` with
    ``m`` the number of finite p-values; NaN stays NaN. Rejecting where the adjusted value
    is below alpha controls the family-wise error rate at alpha.
    """
    p = np.asarray(p_values, dtype=np.float64).reshape(-1)
    out = np.full(len(p), np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    m = len(finite)
    if not m:
        return out
    order = finite[np.argsort(p[finite], kind="stable")]
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(scaled)
    return out


def compare_paired(
    a: np.ndarray,
    b: np.ndarray,
    n_boot: int = 1000,
    n_permutations: int = N_PERMUTATIONS,
    seed: int | Sequence[int] = 0,
    interval: tuple[float, float] | None = None,
) -> PairedResult:
    """Every paired statistic of ``a - b`` (two (n,) float vectors over the same users).
    ``interval``: the bootstrap interval of the difference when the caller computed it
    (:func:`bootstrap_intervals`, several pairs in one bootstrap)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"paired vectors differ in length: {a.shape} and {b.shape}")
    diff = a - b
    if not len(diff):
        nan = float("nan")
        return PairedResult(0, nan, nan, nan, nan, nan, nan, nan)
    low, high = paired_interval(diff, n_boot, seed) if interval is None else interval
    return PairedResult(
        len(diff),
        float(a.mean()),
        float(b.mean()),
        float(diff.mean()),
        low,
        high,
        permutation_p(diff, n_permutations, [*np.atleast_1d(seed), 0x5167]),
        wilcoxon_p(diff),
    )
