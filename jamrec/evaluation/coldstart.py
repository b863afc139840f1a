"""Cold-start protocol: can a model rank tracks it never saw an interaction with?

Users and tracks are :class:`jamrec.models.dataset.Dataset` indexes; the id spaces never change.

- :func:`withhold` draws a seeded share of the tracks that have an interaction (any split)
  and moves *every* interaction with them (train, val and test positives) into
  :attr:`ColdStart.held`; the derived :attr:`ColdStart.train_view` is the same dataset
  with those columns emptied in train, val, test and negatives. Models are fitted on
  ``TrainData.from_dataset(cold.train_view)``: withheld tracks are not candidates there,
  nor negatives, nor feature-scaling statistics. Features and the planted truth are
  kept whole: content models need the withheld tracks' features, and the oracle's
  cold-start numbers are the ceiling.
- :func:`evaluate_cold_start` evaluates the users with at least one held interaction
  (split label ``"cold"``: the held set mixes all three splits, so it is none of them).
  Relevant: the user's withheld tracks. Protocol ``cold_start`` ranks them among the
  withheld tracks only (nothing excluded: the user's other positives are not withheld);
  ``cold_start_catalogue`` ranks them among the whole catalogue (every ``Dataset`` track,
  jammed or not) minus the user's other positives (any split). Both report HR/NDCG@5,10,20
  and MRR with 95% bootstrap intervals over users, via :mod:`jamrec.evaluation.protocols`'s block
  scoring and :mod:`jamrec.evaluation.metrics`. Ties follow the fixed tie order, as in evaluate.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from jamrec.evaluation.metrics import bootstrap_ci
from jamrec.evaluation.protocols import (
    KS,
    MetricRow,
    PerUser,
    SplitView,
    _full_metrics,
    _on_candidates,
)
from jamrec.log import log
from jamrec.models.base import Recommender, tie_rank
from jamrec.models.dataset import Dataset

SPLIT = "cold"
PROTOCOLS = ("cold_start", "cold_start_catalogue")
PAIRWISE_SAMPLE = 5000  # pairwise models are full-ranked on a user sample, as in evaluate
_CODE = 0xC01D  # seeds every choice of this protocol, apart from evaluate's


@dataclass
class ColdStart:
    """Withheld tracks, their interactions, and the training view without them."""

    seed: int
    share: float
    tracks: np.ndarray  # (n_withheld,) int64 sorted track indexes
    held: sp.csr_matrix  # (n_users, n_tracks) 1 per positive (any split) on a withheld track
    train_view: Dataset  # same ids; withheld columns empty in train/val/test/negatives

    @property
    def users(self) -> np.ndarray:
        """(n,) sorted user indexes with at least one held interaction: the evaluated users."""
        return np.flatnonzero(self.held.getnnz(axis=1))

    def track_ids(self) -> np.ndarray:
        """(n_withheld,) str: the withheld tracks' ids, in index order."""
        return self.train_view.tracks[self.tracks]


def interacted(data: Dataset) -> np.ndarray:
    """(n,) sorted track indexes with at least one positive in any split."""
    return np.flatnonzero(data.positives().getnnz(axis=0))


def withhold(data: Dataset, share: float = 0.1, seed: int = 0) -> ColdStart:
    """Withhold ``round(share * n_interacted)`` interacted tracks, drawn uniformly (seeded).

    A function of ``data``'s interactions, ``share`` and ``seed`` only. ``0 <= share < 1``.
    """
    if not 0 <= share < 1:
        raise ValueError(f"share must be in [0, 1), got {share}")
    pool = interacted(data)
    n = int(np.floor(share * len(pool) + 0.5))
    rng = np.random.default_rng([seed, _CODE])
    tracks = np.sort(rng.choice(pool, size=n, replace=False)).astype(np.int64)
    keep = np.ones(data.n_tracks, np.float32)
    keep[tracks] = 0

    def without(matrix: sp.csr_matrix) -> sp.csr_matrix:
        out = sp.csr_matrix(matrix @ sp.diags(keep), dtype=matrix.dtype)
        out.eliminate_zeros()
        out.sort_indices()
        return out

    held = data.positives() @ sp.diags(1 - keep)
    held = sp.csr_matrix(held > 0, dtype=np.float32)
    held.sort_indices()
    view = dataclasses.replace(
        data,
        train=without(data.train),
        val=without(data.val),
        test=without(data.test),
        negatives=without(data.negatives),
        _user_index=None,
    )
    return ColdStart(seed=seed, share=share, tracks=tracks, held=held, train_view=view)


def withheld_rows(cold: ColdStart) -> list[tuple[str, int, float, str]]:
    """``(build_id, seed, share, track_id)`` per withheld track: rows for the
    ``coldstart_tracks`` history table."""
    build = cold.train_view.build_id
    return [(build, cold.seed, cold.share, str(t)) for t in cold.track_ids()]


def cold_users(cold: ColdStart, n: int | None, seed: int) -> np.ndarray:
    """The evaluated users, or a seeded sample of ``n`` of them (sorted); same for every model."""
    users = cold.users
    if n is None or n >= len(users):
        return users
    rng = np.random.default_rng([seed, _CODE, 0x5A4D])
    return np.sort(rng.choice(users, size=n, replace=False))


def protocol_view(cold: ColdStart, protocol: str) -> SplitView:
    """What ``protocol`` ranks, as a :class:`~jamrec.evaluation.protocols.SplitView`
    (columns in tie order)."""
    n_tracks = cold.train_view.n_tracks
    if protocol == "cold_start":
        items = cold.tracks
    elif protocol == "cold_start_catalogue":
        items = np.arange(n_tracks)
    else:
        raise ValueError(f"unknown protocol {protocol!r}; known: {PROTOCOLS}")
    items = items[np.argsort(tie_rank(n_tracks)[items], kind="stable")]
    column = np.full(n_tracks, -1, np.int64)
    column[items] = np.arange(len(items))
    relevant = _on_candidates(cold.held, column, len(items))
    # Other positives: every non-withheld positive; none of them is a withheld column.
    excluded = _on_candidates(cold.train_view.positives(), column, len(items))
    return SplitView(SPLIT, items, relevant, excluded, cold.users, 0)


def bootstrap_code(seed: int, protocol: str) -> list[int]:
    """The bootstrap seed of a cold-start protocol (``seed``: the evaluation seed): its
    metrics intervals and paired differences of models on the same users resample with it."""
    return [seed, _CODE, PROTOCOLS.index(protocol)]


def evaluate_cold_start(
    model: Recommender,
    cold: ColdStart,
    seed: int = 0,
    n_boot: int = 1000,
    user_sample: int | None = None,
    per_user: list[PerUser] | None = None,
) -> list[MetricRow]:
    """Both cold-start protocols for ``model`` (fitted on ``cold.train_view``), split "cold".

    ``seed`` is the evaluation seed. ``user_sample``: None evaluates every cold user
    (pairwise models: a seeded sample of :data:`PAIRWISE_SAMPLE`); a number samples that
    many for every model alike. Bootstrap resamples are seeded by ``(seed, protocol)``:
    paired across models. No cold users: []. ``per_user``, when given, receives the
    per-user results of each protocol (for ``user_metrics``).
    """
    if user_sample is None and model.pairwise:
        user_sample = PAIRWISE_SAMPLE
    users = cold_users(cold, user_sample, seed)
    rows: list[MetricRow] = []
    if not len(users):
        log.warning("cold start %s: no cold users", model.name)
        return rows
    for protocol in PROTOCOLS:
        block = _full_metrics(model, protocol_view(cold, protocol), users, {}, KS)
        if per_user is not None:
            block.protocol, block.split = protocol, SPLIT
            block.user_ids = cold.train_view.users[block.users]
            per_user.append(block)
        values = block.metrics
        low, high = bootstrap_ci(values.values, n_boot=n_boot, seed=bootstrap_code(seed, protocol))
        means = values.values.mean(axis=0)
        rows += [
            MetricRow(protocol, SPLIT, metric, k, float(m), float(lo), float(hi), len(users))
            for (metric, k), m, lo, hi in zip(values.columns, means, low, high)
        ]
        ndcg = rows[-len(values.columns) + values.columns.index(("ndcg", 10))].value
        log.info("cold start %s %s: users=%d ndcg@10=%.4f", model.name, protocol, len(users), ndcg)
    return rows
