"""Evaluation: the one place where a model, a split and the metrics meet (docs/protocols.md).

Users and tracks are :class:`jamrec.models.dataset.Dataset` indexes. For a held-out split ``s``
(val or test):

- candidates: tracks with at least one train interaction, renumbered ``0..C-1`` in the
  fixed tie order (:func:`jamrec.models.base.tie_rank`), so a score block's columns are
  in tie order and :func:`jamrec.evaluation.metrics.ranks_full` breaks ties at no cost;
- relevant: the user's ``s`` positives that are candidates; the others are counted
  (``n_cold_items``, cold-start material), never ranked;
- excluded from the ranking: the user's positives in the two other splits;
- evaluated users: users with at least one relevant track.

Protocols (:data:`PROTOCOLS`): ``full`` scores every candidate for every evaluated user;
``full_sample`` does the same on a seeded user sample, the same for every model (the only
full ranking of ``pairwise`` models); ``sampled_100`` ranks each relevant track among
itself and 100 seeded candidates the user has no positive with. On a temporal dataset
(trained before a time cut, tested after it) the two full rankings are recorded as
``temporal`` and ``temporal_sample`` (:data:`TEMPORAL_PROTOCOLS`).

The seed here is the *evaluation* seed (:class:`EvaluationSettings`), never a model's
training seed: every seeded choice (the user sample, the sampled-100 candidates, the
bootstrap resamples) is a function of the evaluation seed, the protocol, the split and
the user only, never of the model, its training seed or the batching. So every run
evaluated with the same settings on one build is measured on the same users, the same
negatives and the same resamples, and its per-user results (:class:`PerUser`) pair with
every other run's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

from jamrec.evaluation.blockpass import block_pass, shared_row_pass
from jamrec.evaluation.metrics import (
    UserMetrics,
    bootstrap_ci,
    metric_columns,
    per_user_metrics,
    ranks_full,
    sample_negatives,
)
from jamrec.log import log
from jamrec.models.base import BlockScorer, Recommender, tie_rank
from jamrec.models.dataset import Dataset
from jamrec.models.early_stopping import PROBE_USERS

# Validation users of the training curve when nothing is decided on it (early stopping
# off): the curve is drawn, not tested, so 1,000 users do; early stopping's 10,000
# (PROBE_USERS) would cost every epoch a full ranking of 10,000 users, at TIMJ scale
# 10-40 s for a dot-product model and minutes for the pairwise hybrid.
CURVE_PROBE_USERS = 1000

PROTOCOLS = ("full", "full_sample", "sampled_100")
TEMPORAL_PROTOCOLS = ("temporal", "temporal_sample")
# What each protocol ranks: the temporal protocols are the full rankings of a temporal split.
RANKING = {
    "full": "full",
    "full_sample": "full_sample",
    "sampled_100": "sampled_100",
    "temporal": "full",
    "temporal_sample": "full_sample",
}
_PROTOCOL_CODES = (*PROTOCOLS, *TEMPORAL_PROTOCOLS)  # seeds the bootstrap of each protocol
KS = (5, 10, 20)
N_SAMPLED = 100
SPLIT_CODES = {"val": 1, "test": 2}  # seeds the choices made for each split
_BLOCK_ELEMS = 1 << 27  # float32 scores per full-ranking block: 512 MB
_MAX_BLOCK_USERS = 2048
_SAMPLED_BLOCK_USERS = 256


class MetricRow(NamedTuple):
    """One line of the warehouse ``metrics`` table (less the run id)."""

    protocol: str
    split: str
    metric: str  # "hr", "ndcg" or "mrr"
    k: int | None  # None for mrr
    value: float  # mean over evaluated users
    ci_low: float  # 95% bootstrap interval over users
    ci_high: float
    n_users: int


@dataclass(frozen=True)
class EvaluationSettings:
    """What decides an evaluation's random choices, apart from any model's training seed.

    ``seed`` draws the ``full_sample`` users, the ``sampled_100`` candidates and the
    bootstrap resamples; ``user_sample`` is the size of the user sample; ``n_boot`` the
    number of bootstrap resamples. Runs evaluated with equal settings on one build are
    measured on the same users, negatives and resamples (recorded with every metrics row
    and run).
    """

    seed: int = 0
    user_sample: int = 5000
    n_boot: int = 1000


@dataclass
class PerUser:
    """Per-user results of one protocol and split: row ``i`` is user ``users[i]``.

    ``metrics.values`` is (n, 7): HR@5,10,20, NDCG@5,10,20 and the reciprocal rank
    (:func:`jamrec.evaluation.metrics.metric_columns`), the rows whose means are the
    metrics rows; ``n_relevant`` (n,) the held-out tracks ranked (sampled_100: the lists);
    ``best_rank`` (n,) the rank of the user's best-ranked held-out track.
    """

    protocol: str
    split: str
    users: np.ndarray  # (n,) sorted Dataset user indexes
    metrics: UserMetrics
    n_relevant: np.ndarray  # (n,) int64
    best_rank: np.ndarray  # (n,) int64
    user_ids: np.ndarray | None = None  # (n,) str TIMJ ids, filled in by evaluate

    def take(self, rows: np.ndarray, protocol: str) -> PerUser:
        """The same results for a subset of the rows, under another protocol name."""
        return PerUser(
            protocol,
            self.split,
            self.users[rows],
            UserMetrics(self.metrics.columns, self.metrics.values[rows]),
            self.n_relevant[rows],
            self.best_rank[rows],
        )


@dataclass
class TopLists:
    """Each user's best ``n`` candidates among those the user has no positive for, in any
    split: what the ``recommendations`` table serves, read off the score blocks of the full
    ranking of the test split (:func:`evaluate` with ``top_n``), so that serving a new
    champion costs no second scoring pass. Row ``u`` is the Dataset's user ``u``."""

    ids: np.ndarray  # (n_users, n) track indexes, best first; -1 past the candidates
    scores: np.ndarray  # (n_users, n) float32; -inf past the candidates

    @classmethod
    def empty(cls, n_users: int, n: int) -> TopLists:
        """Lists to fill: int32 ids (200 x 200k users is 160 MB, half of int64)."""
        return cls(np.full((n_users, n), -1, np.int32), np.full((n_users, n), -np.inf, np.float32))


@dataclass
class SampleLists:
    """The top-``k`` lists of the seeded sample of test users with only their train
    positives excluded (what :func:`jamrec.evaluation.beyond.beyond_accuracy` measures),
    read off the test split's scoring pass that covers those users."""

    users: np.ndarray  # (n,) sorted user indexes: sample_users of the test view
    seen: sp.csr_matrix  # (n_users, C) the train positives among the candidates
    ids: np.ndarray  # (n, k) int64 track indexes, best first; -1 pads
    filled: np.ndarray  # (n,) bool: the users whose lists are in

    @classmethod
    def for_view(cls, data: Dataset, view: SplitView, users: np.ndarray, k: int) -> SampleLists:
        column = np.full(data.n_tracks, -1, np.int64)
        column[view.candidates] = np.arange(len(view.candidates))
        seen = _on_candidates(data.train, column, len(view.candidates))
        ids = np.full((len(users), k), -1, np.int64)
        return cls(users, seen, ids, np.zeros(len(users), bool))


@dataclass
class EvaluationResult:
    """What :func:`evaluate` measured for one model.

    ``rows``: the means and intervals (the ``metrics`` table); ``per_user``: the per-user
    results behind them (the ``user_metrics`` table), one :class:`PerUser` per protocol and
    split. ``timings["<protocol>/<split>"]`` holds ``total_s`` and, where scoring happened,
    ``score_s`` (inside ``model.score``), ``rank_s`` (ranks and per-user metrics) and
    ``bootstrap_s``. ``n_cold_items[split]``: held-out (user, track) pairs whose track is
    not a candidate, left out of every protocol.
    """

    model: str
    seed: int  # the evaluation seed (settings.seed)
    rows: list[MetricRow] = field(default_factory=list)
    timings: dict[str, dict[str, float]] = field(default_factory=dict)
    n_cold_items: dict[str, int] = field(default_factory=dict)
    per_user: list[PerUser] = field(default_factory=list)
    settings: EvaluationSettings = field(default_factory=EvaluationSettings)
    top_lists: TopLists | None = None  # with evaluate(top_n=...): the served lists
    # with evaluate(beyond_k=...): (users, (n, k) ids), beyond-accuracy's lists
    beyond_lists: tuple[np.ndarray, np.ndarray] | None = None

    def value(self, protocol: str, split: str, metric: str, k: int | None = None) -> float:
        """The mean of one metric (KeyError when it was not measured)."""
        for row in self.rows:
            if (row.protocol, row.split, row.metric, row.k) == (protocol, split, metric, k):
                return row.value
        raise KeyError((protocol, split, metric, k))


@dataclass
class SplitView:
    """What one held-out split ranks, the same for every model (module docstring)."""

    split: str
    candidates: np.ndarray  # (C,) track indexes, in tie order: column j = candidates[j]
    relevant: sp.csr_matrix  # (n_users, C) the split's positives among the candidates
    excluded: sp.csr_matrix  # (n_users, C) the other splits' positives among them
    users: np.ndarray  # (n_evaluated,) sorted user indexes with >= 1 relevant column
    n_cold_items: int  # held-out positives whose track is not a candidate
    memo: dict = field(default_factory=dict, repr=False)  # the Dataset's: kept across models


def split_view(data: Dataset, split: str) -> SplitView:
    """Candidates, relevant and excluded columns and evaluated users of ``split``."""
    if split not in SPLIT_CODES:
        raise ValueError(f"can only evaluate on val or test, not {split!r}")
    cand = np.flatnonzero(data.candidates)
    cand = cand[np.argsort(tie_rank(data.n_tracks)[cand], kind="stable")]
    column = np.full(data.n_tracks, -1, np.int64)
    column[cand] = np.arange(len(cand))
    held = data.split(split)
    others = sum(data.split(s) for s in ("train", "val", "test") if s != split)
    relevant = _on_candidates(held, column, len(cand))
    users = np.flatnonzero(relevant.getnnz(axis=1))
    n_cold = held.count_nonzero() - relevant.nnz
    return SplitView(
        split, cand, relevant, _on_candidates(others, column, len(cand)), users, n_cold, data.memo
    )


def _on_candidates(matrix: sp.spmatrix, column: np.ndarray, n_cols: int) -> sp.csr_matrix:
    """(n_users, n_tracks) pattern -> (n_users, C) pattern over candidate columns."""
    coo = sp.coo_matrix(matrix)
    keep = (coo.data != 0) & (column[coo.col] >= 0)
    rows, cols = coo.row[keep], column[coo.col[keep]]
    out = sp.csr_matrix(
        (np.ones(len(rows), np.int8), (rows, cols)), shape=(matrix.shape[0], n_cols)
    )
    out.sum_duplicates()
    out.data[:] = 1
    return out


def sample_users(view: SplitView, n: int, seed: int) -> np.ndarray:
    """(min(n, n_evaluated),) sorted evaluated users: a function of the seed and split only."""
    if n >= len(view.users):
        return view.users
    rng = np.random.default_rng([seed, SPLIT_CODES[view.split], 0x5A4D])
    return np.sort(rng.choice(view.users, size=n, replace=False))


def default_protocols(model: Recommender, data: Dataset) -> list[str]:
    """Every protocol that applies to ``model`` on ``data``: the three leave-k-out ones (the
    temporal pair on a temporal dataset), less the full ranking of every user for
    ``pairwise`` models."""
    names = TEMPORAL_PROTOCOLS if data.protocol == "temporal" else PROTOCOLS
    return [p for p in names if RANKING[p] != "full" or not model.pairwise]


def evaluate(
    model: Recommender,
    data: Dataset,
    splits: Sequence[str] = ("val", "test"),
    protocols: Sequence[str] | None = None,
    seed: int = 0,
    user_sample: int = 5000,
    n_boot: int = 1000,
    full_splits: Sequence[str] = ("test",),
    top_n: int = 0,
    beyond_k: int = 0,
) -> EvaluationResult:
    """Measure ``model`` on ``data`` under each protocol and split (module docstring).

    With the default protocols, the full ranking of *every* user runs on ``full_splits``
    only (default the test split): validation serves model selection (champions, sweeps,
    early stopping), which reads ``full_sample``, so ranking every validation user would
    cost a second full pass for numbers nothing uses. Protocols asked for by name run on
    every split.

    ``seed``, ``user_sample`` and ``n_boot`` are the evaluation settings
    (:class:`EvaluationSettings`), never the model's training seed. ``protocols=None``
    runs :func:`default_protocols` (asking a ``pairwise`` model for a full ranking of
    every user is an error). The same scores and settings give identical values and
    intervals. A split without evaluated users gives no rows (a mean over nobody is no
    result). When a full ranking of every user and of the sample both run, the sample
    reuses the per-user results (a user's ranks do not depend on the batch), so its timing
    shows no scoring.

    ``top_n > 0`` also keeps each user's best ``top_n`` unseen candidates
    (``result.top_lists``, :class:`TopLists`) from the full ranking of the test split: the
    same score blocks, with every positive of the user masked after the ranks are counted;
    the few users without a test positive among the candidates are scored for their lists
    alone. Nothing is kept when that ranking does not run (a pairwise model, a temporal
    dataset). ``beyond_k > 0`` likewise keeps the top-``beyond_k`` lists of the seeded
    sample of test users, with their train positives excluded
    (``result.beyond_lists``, :class:`SampleLists`), from whichever test pass scores them
    (``full``, or ``full_sample`` for a pairwise model).
    """
    chosen = protocols is not None
    if protocols is None:
        protocols = default_protocols(model, data)
    unknown = set(protocols) - set(RANKING)
    if unknown:
        raise ValueError(f"unknown protocols {sorted(unknown)}; known: {tuple(RANKING)}")
    if model.pairwise and any(RANKING[p] == "full" for p in protocols):
        raise ValueError(f"{model.name} is pairwise: full-rank it on a sample (full_sample)")
    settings = EvaluationSettings(seed, user_sample, n_boot)
    result = EvaluationResult(model=model.name, seed=seed, settings=settings)
    for split in splits:
        view = split_view(data, split)
        result.n_cold_items[split] = int(view.n_cold_items)
        full = None
        sample = None
        if beyond_k > 0 and split == "test":
            sample = SampleLists.for_view(
                data, view, sample_users(view, user_sample, seed), beyond_k
            )
        for protocol in protocols:
            if not chosen and RANKING[protocol] == "full" and split not in full_splits:
                continue
            start = time.perf_counter()
            timing: dict[str, float] = {}
            ranking = RANKING[protocol]
            if ranking == "sampled_100":
                per_user = _sampled_metrics(model, view, seed, timing)
            elif ranking == "full_sample" and full is not None:
                users = sample_users(view, user_sample, seed)
                per_user = full.take(np.searchsorted(view.users, users), protocol)
            else:
                users = (
                    sample_users(view, user_sample, seed)
                    if ranking == "full_sample"
                    else view.users
                )
                lists = None
                if top_n > 0 and ranking == "full" and split == "test":
                    lists = result.top_lists = TopLists.empty(data.n_users, top_n)
                per_user = _full_metrics(model, view, users, timing, lists=lists, sample=sample)
                full = per_user if ranking == "full" else full
                if lists is not None:
                    # Users with no test positive among the candidates: scored for lists only.
                    rest = np.setdiff1d(np.arange(data.n_users), view.users)
                    _full_metrics(model, view, rest, timing, lists=lists, metrics=False)
            per_user.protocol = protocol
            per_user.user_ids = data.users[per_user.users]
            if not len(per_user.users):
                log.warning("evaluate %s %s/%s: no evaluated users", model.name, protocol, split)
                continue
            result.per_user.append(per_user)
            result.rows += _summarise(protocol, split, per_user.metrics, seed, n_boot, timing)
            timing["total_s"] = time.perf_counter() - start
            result.timings[f"{protocol}/{split}"] = {k: round(v, 4) for k, v in timing.items()}
            log.info(
                "evaluate %s %s/%s: %.1f s  users=%d  ndcg@10=%.4f",
                model.name,
                protocol,
                split,
                timing["total_s"],
                len(per_user.users),
                result.value(protocol, split, "ndcg", 10),
            )
        if sample is not None and sample.filled.all():
            result.beyond_lists = (sample.users, sample.ids)
    return result


def val_probe(
    data: Dataset, n_users: int = PROBE_USERS, seed: int = 0
) -> Callable[[Recommender], np.ndarray]:
    """The training probe: full-ranking NDCG@10 of each user in a fixed sample of val users.

    The sample (``min(n_users, n_evaluated)`` users, drawn with ``seed``), candidates and
    exclusions are built once; each call scores those users against every candidate and
    returns their NDCG@10, ``(n,)`` float64 in sorted user order: the same users every
    call, so calls pair (early stopping, :mod:`jamrec.models.early_stopping`; the training
    curve records the mean). Empty without val users.
    """
    metrics = val_probe_metrics(data, n_users, seed, ks=(10,))

    def probe(model: Recommender) -> np.ndarray:
        per_user = metrics(model)
        if not len(per_user.values):
            return np.zeros(0, np.float64)
        return per_user.values[:, per_user.columns.index(("ndcg", 10))].astype(np.float64)

    return probe


def val_probe_metrics(
    data: Dataset, n_users: int = PROBE_USERS, seed: int = 0, ks: Sequence[int] = KS
) -> Callable[[Recommender], UserMetrics]:
    """:func:`val_probe` with every per-user metric: HR and NDCG at ``ks`` and the
    reciprocal rank of each probed user (``(n, 2 * len(ks) + 1)``, users in sorted order,
    the same users every call). The study's curves record their means after each step."""
    view = split_view(data, "val")
    users = sample_users(view, n_users, seed)

    def probe(model: Recommender) -> UserMetrics:
        if not len(users):
            return UserMetrics(metric_columns(ks), np.zeros((0, 2 * len(ks) + 1)))
        return _full_metrics(model, view, users, {}, ks=ks).metrics

    return probe


def _scores(model: Recommender, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """(len(users), len(items)) float32 from ``model.score``, read-only from here on."""
    return _checked(model.score(users, items), (len(users), len(items)), f"{model.name}.score")


def _block_scores(
    model: Recommender, scorer: BlockScorer, users: np.ndarray, out: np.ndarray
) -> np.ndarray:
    """``scorer``'s block of ``users`` (written into the first ``len(users)`` rows of the
    reused ``out`` by models that can), checked like :func:`_scores`."""
    block = scorer(users, out[: len(users)])
    return _checked(block, (len(users), out.shape[1]), f"{model.name}.block_scorer")


def _checked(scores: np.ndarray, shape: tuple[int, int], what: str) -> np.ndarray:
    """``scores`` as float32 (read-only from here on), or a ValueError naming ``what``."""
    scores = np.asarray(scores)
    if scores.shape != shape:
        raise ValueError(f"{what} returned {scores.shape}, not {shape}")
    return scores.astype(np.float32, copy=False)


def _full_metrics(
    model: Recommender,
    view: SplitView,
    users: np.ndarray,
    timing: dict[str, float],
    ks: Sequence[int] = KS,
    lists: TopLists | None = None,
    metrics: bool = True,
    sample: SampleLists | None = None,
) -> PerUser:
    """Per-user metrics of ranking every candidate for ``users`` (sorted, evaluated).

    One score block is allocated and reused: a fresh one per batch of users costs its
    page faults, about as much again as the matrix product that fills it; and what depends
    on the candidates alone is prepared once (:meth:`Recommender.block_scorer`). Each block
    is then read once, row by row (:func:`jamrec.evaluation.blockpass.block_pass`): the
    ranks of the held-out tracks and, asked for, the lists. ``lists``: each user's best
    ``n`` candidates with every positive of the user masked (:class:`TopLists`);
    ``metrics=False`` only those (users with nothing to rank; the PerUser is empty).
    ``sample``: the lists of those of ``sample.users`` in ``users`` too, with their train
    positives masked (:class:`SampleLists`).
    """
    block = max(1, min(_MAX_BLOCK_USERS, _BLOCK_ELEMS // max(len(view.candidates), 1)))
    buffer = np.empty((min(block, len(users)), len(view.candidates)), np.float32)
    rank_parts: list[np.ndarray] = []
    relevant_parts: list[np.ndarray] = []
    timing.setdefault("score_s", 0.0)
    timing.setdefault("rank_s", 0.0)
    start = time.perf_counter()
    scorer = model.block_scorer(view.candidates)
    timing["score_s"] += time.perf_counter() - start
    n_list = 0 if lists is None else min(lists.ids.shape[1], len(view.candidates))
    shared = None  # every user's scores, when they are the same row (shared_scores)
    if model.shared_scores and len(users):
        start = time.perf_counter()
        shared = _block_scores(model, scorer, users[:1], buffer)[0].copy()
        timing["score_s"] += time.perf_counter() - start
    for lo in range(0, len(users), block):
        batch = users[lo : lo + block]
        relevant, excluded = view.relevant[batch], view.excluded[batch]
        at, sample_rows, seen, k_sample = _sample_rows(sample, batch)
        start = time.perf_counter()
        read = None
        if shared is not None:
            read = shared_row_pass(
                shared, relevant, excluded, metrics, n_list, sample_rows, seen, k_sample
            )
        scored = start
        if read is None:
            scores = _block_scores(model, scorer, batch, buffer)
            scored = time.perf_counter()
            read = block_pass(
                scores, relevant, excluded, metrics, n_list, sample_rows, seen, k_sample
            )
        if metrics:
            rank_parts.append(read.ranks)
            relevant_parts.append(np.diff(relevant.indptr))
        if lists is not None:
            lists.ids[batch, :n_list] = _track_ids(read.list_cols, view.candidates)
            lists.scores[batch, :n_list] = read.list_scores
        if sample is not None and len(sample_rows):
            sample.ids[at, :k_sample] = _track_ids(read.sample_cols, view.candidates)
            sample.filled[at] = True
        timing["score_s"] += scored - start
        timing["rank_s"] += time.perf_counter() - scored
    if not metrics:
        empty = np.zeros(0, np.int64)
        return PerUser("full", view.split, empty, per_user_metrics(empty, empty, ks), empty, empty)
    start = time.perf_counter()
    ranks, n_relevant = _cat(rank_parts), _cat(relevant_parts)
    per_user = per_user_metrics(ranks, n_relevant, ks)
    best = _segment_min(ranks, n_relevant)
    timing["rank_s"] += time.perf_counter() - start
    return PerUser("full", view.split, users, per_user, n_relevant, best)


def _sample_rows(
    sample: SampleLists | None, batch: np.ndarray
) -> tuple[np.ndarray, np.ndarray, sp.csr_matrix | None, int]:
    """``(at, rows, seen, k)``: the rows of ``batch`` that are sample users, their places in
    ``sample``, the batch's train positives (what their lists mask) and the list length."""
    none = np.zeros(0, np.int64)
    if sample is None or not len(sample.users):
        return none, none, None, 0
    at = np.searchsorted(sample.users, batch)
    hit = sample.users[np.minimum(at, len(sample.users) - 1)] == batch
    if not hit.any():
        return none, none, None, 0
    k = min(sample.ids.shape[1], sample.seen.shape[1])
    return at[hit], np.flatnonzero(hit), sample.seen[batch], k


def _track_ids(cols: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Track indexes of block columns (``-1`` stays ``-1``)."""
    return np.where(cols >= 0, candidates[np.maximum(cols, 0)], -1)


def _segment_min(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """(len(counts),) minimum of each consecutive segment of ``values`` (counts >= 1)."""
    if not len(counts):
        return np.zeros(0, np.int64)
    return np.minimum.reduceat(values, np.cumsum(counts) - counts).astype(np.int64)


class _SampledBlock(NamedTuple):
    """One block of users' sampled lists: the same for every model (seed and split)."""

    batch: np.ndarray  # (B,) user indexes
    rows: np.ndarray  # (R,) each list's row in batch (a list per relevant track)
    lists: np.ndarray  # (R, L) int32 candidate columns in tie order; -1 pads sort first
    position: np.ndarray  # (R,) where the relevant track is in its list
    pads: tuple[np.ndarray, np.ndarray]  # the padding's (rows, columns)


def _sampled_blocks(view: SplitView, seed: int) -> list[_SampledBlock]:
    """Each block of ``_SAMPLED_BLOCK_USERS`` users' lists: every relevant track with its
    user's ``N_SAMPLED`` sampled negatives. They depend on the data, split and seed only,
    so they are drawn for the first model evaluated on a Dataset and kept in its ``memo``
    (about 80 MB a split at TIMJ scale, and 6 s a split for every later model)."""
    key = ("sampled_100", view.split, seed)
    if key in view.memo:
        return view.memo[key]
    code = [seed, SPLIT_CODES[view.split]]
    blocks = []
    for lo in range(0, len(view.users), _SAMPLED_BLOCK_USERS):
        batch = view.users[lo : lo + _SAMPLED_BLOCK_USERS]
        relevant = view.relevant[batch]
        negatives = sample_negatives(relevant + view.excluded[batch], batch, N_SAMPLED, code)
        rows, cols = _entries(relevant)
        # Each relevant track's list: itself and its user's negatives, sorted by column,
        # that is in tie order; padding (-1: too few eligible candidates) sorts first.
        lists = np.sort(np.concatenate([negatives[rows], cols[:, None]], axis=1), axis=1)
        position = np.argmax(lists == cols[:, None], axis=1)
        pad_rows, pad_cols = np.nonzero(lists < 0)
        blocks.append(
            _SampledBlock(batch, rows, lists.astype(np.int32), position, (pad_rows, pad_cols))
        )
    view.memo[key] = blocks
    return blocks


def _sampled_metrics(model: Recommender, view: SplitView, seed: int, timing: dict) -> PerUser:
    """Per-user means of the per-track metrics of ranking among 100 sampled candidates."""
    timing.setdefault("score_s", 0.0)
    timing.setdefault("rank_s", 0.0)
    ranks, owners = [], []
    for batch, rows, lists, position, pads in _sampled_blocks(view, seed):
        start = time.perf_counter()
        values = _list_scores(model, batch, rows, lists, view.candidates)
        scored = time.perf_counter()
        ranks.append(ranks_full(values, np.arange(len(rows)), position, pads))
        owners.append(batch[rows])
        timing["score_s"] += scored - start
        timing["rank_s"] += time.perf_counter() - scored
    start = time.perf_counter()
    all_ranks, all_owners = _cat(ranks), _cat(owners)
    per_track = per_user_metrics(all_ranks, np.ones(len(all_ranks), np.int64), KS).values
    # Pairs come user by user: average each user's tracks here, the users in _summarise.
    users, counts = np.unique_counts(all_owners)
    starts = np.cumsum(counts) - counts
    means = np.add.reduceat(per_track, starts) / counts[:, None] if len(counts) else per_track
    best = _segment_min(all_ranks, counts)
    timing["rank_s"] += time.perf_counter() - start
    metrics = UserMetrics(metric_columns(KS), means)
    return PerUser("sampled_100", view.split, users.astype(np.int64), metrics, counts, best)


def _list_scores(
    model: Recommender, batch: np.ndarray, rows: np.ndarray, lists: np.ndarray, cand: np.ndarray
) -> np.ndarray:
    """(R, L) float32 scores of ``lists`` (candidate columns; -1 pads, scored -inf, and
    excluded from the ranking) for the users ``batch[rows]`` (sorted, every user present)."""
    if not (model.pairwise or model.pair_scoring):
        # One product for the block over the union of its lists: dot products are cheap.
        items = np.unique(lists[lists >= 0])
        values = _scores(model, batch, cand[items])[rows[:, None], np.searchsorted(items, lists)]
    else:
        # Models that pay per scored pair: score each user's own lists only, as pairs.
        values = np.empty(lists.shape, np.float32)
        valid = lists >= 0
        owners = np.broadcast_to(batch[rows][:, None], lists.shape)
        values[valid] = model.score_pairs(owners[valid], cand[lists[valid]])
    values[lists < 0] = -np.inf
    return values


def _summarise(
    protocol: str, split: str, per_user: UserMetrics, seed: int, n_boot: int, timing: dict
) -> list[MetricRow]:
    """Means and bootstrap intervals over users, one row per metric column."""
    start = time.perf_counter()
    values = per_user.values
    # Seeded by (evaluation seed, protocol, split) only: every model on the same users gets
    # the same resamples, so intervals of different models are paired.
    code = bootstrap_code(seed, protocol, split)
    low, high = bootstrap_ci(values, n_boot=n_boot, seed=code)
    means = values.mean(axis=0)
    timing["bootstrap_s"] = time.perf_counter() - start
    return [
        MetricRow(protocol, split, metric, k, float(m), float(lo), float(hi), len(values))
        for (metric, k), m, lo, hi in zip(per_user.columns, means, low, high)
    ]


def bootstrap_code(seed: int, protocol: str, split: str) -> list[int]:
    """The bootstrap seed of one protocol and split: the metrics intervals and the paired
    comparisons of :mod:`jamrec.evaluation.significance` resample users with it."""
    return [seed, _PROTOCOL_CODES.index(protocol), SPLIT_CODES[split]]


def _entries(matrix: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of a csr matrix's entries, row by row."""
    rows = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
    return rows, matrix.indices.astype(np.int64)


def _cat(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)
