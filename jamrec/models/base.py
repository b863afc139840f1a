"""The recommender contract every jamrec model implements.

Modelled on implicit's ``RecommenderBase`` and LensKit's scorers. Ids are indexes into
:class:`jamrec.models.dataset.Dataset` (users ``0..n_users-1``, tracks ``0..n_tracks-1``).

- ``fit(data)`` learns from :class:`TrainData` (train positives; negatives, features or
  the planted truth for the models that use them). Everything random takes
  ``config.seed``: the same data and seed give the same model.
- ``score(users, items=None)`` returns a ``(len(users), len(items))`` float32 array, higher
  is better; ``items=None`` means every track. A user's row does not depend on which
  other users are in the batch.
- ``recommend(users, k, exclude_seen=True)`` returns ``(items, scores)``, each
  ``(len(users), k')`` with ``k' = min(k, number of rankable tracks)``, best first. Ties
  are broken by one fixed seeded order of the tracks (:func:`tie_rank`), the same for
  every model. ``exclude_seen`` removes the user's train positives; rows with fewer
  rankable tracks than ``k'`` are padded with item ``-1`` and score ``-inf``.
- ``save(folder)`` writes the model in its library's own format plus ``model.json``
  (name and config); :func:`jamrec.models.load` reads any saved model back.

What a model can do beyond the contract is declared, not guessed: the capability
protocols :class:`FoldsIn` (score a new listener from a few tracks) and
:class:`ItemVectors` (tracks as vectors), checked with ``isinstance``; ``pairwise`` (a
network pass per pair) and ``reference`` (random, oracle) are class attributes. How a model
runs (:class:`Runtime`: device, threads) is separate from its config, which identifies it.
The models are listed by name in :data:`jamrec.models.MODELS`.

Models whose score needs a network pass per (user, track) pair set
``pairwise = True``: the evaluation full-ranks them on a seeded user sample.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import scipy.sparse as sp
from pydantic import BaseModel, Field

from jamrec.models.dataset import Dataset, Truth
from jamrec.models.topk import top_k_columns

if TYPE_CHECKING:
    from jamrec.models.early_stopping import StopOutcome

TIE_SEED = 20150926  # TIMJ's last day: the tie order is part of the protocol, not a knob


class ModelConfig(BaseModel):
    """Settings every model has; each model subclasses it with its own."""

    seed: int = Field(0, description="Seeds every random choice of the model.")


def tie_rank(n_tracks: int) -> np.ndarray:
    """(n_tracks,) int64: each track's place in the fixed random tie-breaking order."""
    order = np.random.default_rng(TIE_SEED).permutation(n_tracks)
    rank = np.empty(n_tracks, dtype=np.int64)
    rank[order] = np.arange(n_tracks)
    return rank


@dataclass
class TrainData:
    """What a model may learn from: the train split and what goes with it.

    ``probe`` (optional) returns a model's per-user validation NDCG@10 mid-training:
    ``(n,)`` float64, the same ``n`` users in the same order at every call (a fixed sample,
    so successive steps compare paired: :mod:`jamrec.models.early_stopping`). ``on_step``
    (optional) receives ``(step, loss, val_ndcg_at_10)`` after each epoch or iteration, the
    last being the probe's mean. ``on_batch`` (optional, models trained in mini-batches:
    the torch trainer) receives ``(step, batch_loss)`` after every optimiser step and
    returns whether to stop training there (the study's step curves, ``jamrec study``).
    """

    train: sp.csr_matrix  # (n_users, n_tracks) train positives
    negatives: sp.csr_matrix  # (n_users, n_tracks) published negatives
    features: np.ndarray  # (n_tracks, n_features) float32, documented units
    feature_names: tuple[str, ...]
    truth: Truth | None = None
    popularity: np.ndarray | None = None  # (n_tracks,) Spotify popularity, NaN if unknown
    probe: Callable[[Recommender], np.ndarray] | None = None
    on_step: Callable[[int, float | None, float | None], None] | None = None
    on_batch: Callable[[int, float], bool] | None = None

    @property
    def n_users(self) -> int:
        """Rows of the matrices."""
        return self.train.shape[0]

    @property
    def n_tracks(self) -> int:
        """Columns of the matrices."""
        return self.train.shape[1]

    @property
    def candidates(self) -> np.ndarray:
        """(n_tracks,) bool: tracks with a train interaction."""
        return np.asarray(self.train.getnnz(axis=0) > 0)

    @classmethod
    def from_dataset(cls, data: Dataset, **extra: Any) -> TrainData:
        """The train-side view of a dataset (val and test stay with the evaluation).

        Raises :class:`LeakError` when the train matrix holds a val or test pair: what a
        model is fitted on can never contain a held-out pair.
        """
        check_no_leak(data.train, data)
        return cls(
            train=data.train,
            negatives=data.negatives,
            features=data.features,
            feature_names=data.feature_names,
            truth=data.truth,
            popularity=data.popularity,
            **extra,
        )

    def step(self, step: int, loss: float | None, model: Recommender) -> np.ndarray | None:
        """Report one epoch/iteration: probes validation NDCG@10 and calls ``on_step``.

        Returns the probe's per-user values (``(n,)`` float64; empty without validation
        users, ``None`` without a probe), what early stopping decides on.
        """
        values = None
        ndcg = None
        if self.probe is not None:
            values = np.asarray(self.probe(model), dtype=np.float64).reshape(-1)
            ndcg = float(values.mean()) if len(values) else float("nan")
        if self.on_step is not None:
            self.on_step(step, loss, ndcg)
        return values


class LeakError(ValueError):
    """A model was about to be fitted on (or was fitted on) a held-out pair."""


def leaked_pairs(train: sp.spmatrix, data: Dataset) -> int:
    """How many (user, track) pairs of ``train`` ((n_users, n_tracks), any values) are
    val or test positives of ``data``."""
    held = (data.val + data.test).tocsr()
    held.data[:] = 1
    pattern = sp.csr_matrix(train, copy=True)
    pattern.eliminate_zeros()
    pattern.data[:] = 1
    return int(pattern.multiply(held).count_nonzero())


def check_no_leak(train: sp.spmatrix, data: Dataset) -> None:
    """Raise :class:`LeakError` naming the count when ``train`` holds a held-out pair."""
    leaked = leaked_pairs(train, data)
    if leaked:
        raise LeakError(
            f"{leaked:,} held-out (val/test) pairs are in the training data of build "
            f"{data.build_id} ({data.protocol}): a model must never be fitted on them"
        )


class Runtime(BaseModel):
    """How a model runs, not what it is: never part of its identity.

    A run's config (hyperparameters and seed) identifies the model: the same config on
    the same build is the same model, whatever the device or thread count it was trained
    with. Runtime options are recorded with the run's timings, not in its config.
    """

    device: str = Field(
        "cpu", pattern=r"^(cpu|cuda(:\d+)?)$", description="Where torch models train and score."
    )
    threads: int | None = Field(
        None, ge=1, description="torch threads while training; None keeps torch's default."
    )


RUNTIME_OPTIONS = frozenset(Runtime.model_fields)


@runtime_checkable
class FoldsIn(Protocol):
    """A model that scores a listener it was not trained on from a few tracks alone."""

    def fold_in_scores(self, tracks: sp.csr_matrix, items: np.ndarray) -> np.ndarray:
        """(B, len(items)) float32 scores of B new listeners; row b of ``tracks``
        ``(B, n_tracks)`` marks listener b's tracks."""
        ...


# (users, out) -> the (len(users), n_items) float32 score block: Recommender.block_scorer
BlockScorer = Callable[[np.ndarray, np.ndarray], np.ndarray]


@runtime_checkable
class ItemVectors(Protocol):
    """A model whose tracks live in a vector space of its own (similar tracks, explanations)."""

    def item_vectors(self, items: np.ndarray | None = None) -> np.ndarray:
        """(len(items), d) float32 track vectors; ``None`` = every track."""
        ...

    def learnt_tracks(self) -> np.ndarray | None:
        """(n_tracks,) bool: tracks whose vector was learnt (None: every track's is)."""
        ...


class Recommender(ABC):
    """Base class of every model: see the module docstring for the contract."""

    name: ClassVar[str]
    Config: ClassVar[type[ModelConfig]] = ModelConfig
    pairwise: ClassVar[bool] = False
    # score_pairs costs less per pair than scoring a block of users against the union of
    # their sampled lists (the sampled protocol then scores pairs): pairwise models, and
    # scores far dearer than a dot product (the oracle's audio taste).
    pair_scoring: ClassVar[bool] = False
    # Every user gets the same scores (popularity): the full ranking orders one row once
    # (blockpass.shared_row_pass) instead of scoring and reading a block per batch.
    shared_scores: ClassVar[bool] = False
    # A reference point reported beside the models (the random floor, the oracle's
    # ceiling): never a champion's serving choice, never folded in.
    reference: ClassVar[bool] = False

    def __init__(self, config: ModelConfig | None = None, runtime: Runtime | None = None):
        self.config = config or self.Config()
        self.runtime = runtime or Runtime()
        self.seen: sp.csr_matrix | None = None
        self.n_users = 0
        self.n_tracks = 0
        self._tie_rank: np.ndarray | None = None
        # how the last fit ended (iterative models: the step kept and why); None otherwise
        self.stopping: StopOutcome | None = None

    # -- to implement --------------------------------------------------------------------
    @abstractmethod
    def _fit(self, data: TrainData) -> None:
        """Learn from ``data``."""

    @abstractmethod
    def score(self, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        """(len(users), len(items)) float32 scores; ``items=None`` = every track."""

    def block_scorer(self, items: np.ndarray) -> BlockScorer:
        """A function ``(users, out) -> block`` giving the :meth:`score` block of
        ``users`` x ``items``, for scoring many batches of users against the same items
        while the model does not change (one evaluation pass).

        ``out`` is a C-contiguous ``(len(users), len(items))`` float32 array the caller
        reuses batch after batch: a fresh 512 MB block costs about as much in page faults
        as the matrix product that fills it. Models that can write the block into ``out``
        and return it, and prepare what depends on ``items`` alone (their factors
        gathered, a track tower run) once; this default returns :meth:`score`'s new array.
        """
        return lambda users, out: self.score(users, items)

    def score_pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """(P,) float32 scores of the aligned pairs ``(users[i], items[i])``.

        The default scores the distinct users against the distinct items in one
        :meth:`score` call and picks the pairs; pairwise models override it.
        """
        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        user_ids, user_at = np.unique(users, return_inverse=True)
        item_ids, item_at = np.unique(items, return_inverse=True)
        if not len(users):
            return np.zeros(0, np.float32)
        return self.score(user_ids, item_ids)[user_at, item_at].astype(np.float32, copy=False)

    def _save(self, folder: Path) -> None:  # noqa: B027 - optional hook
        """Write the learned state into ``folder`` (nothing, for stateless models)."""

    def _load(self, folder: Path) -> None:  # noqa: B027 - optional hook
        """Read back what :meth:`_save` wrote."""

    # -- provided ------------------------------------------------------------------------
    def fit(self, data: TrainData) -> Recommender:
        """Train on ``data``; keeps its train matrix to exclude seen tracks later."""
        self.n_users, self.n_tracks = data.train.shape
        self.seen = data.train
        self._tie_rank = None
        self.stopping = None
        self._fit(data)
        return self

    @property
    def tie_rank(self) -> np.ndarray:
        """The fixed tie-breaking order over this model's tracks."""
        if self._tie_rank is None or len(self._tie_rank) != self.n_tracks:
            self._tie_rank = tie_rank(self.n_tracks)
        return self._tie_rank

    def recommend(
        self,
        users: np.ndarray,
        k: int = 10,
        exclude_seen: bool = True,
        items: np.ndarray | None = None,
        seen: sp.csr_matrix | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` tracks for each user (see the module docstring).

        ``items`` restricts the ranking to those track indexes; ``seen`` overrides the
        positives excluded (default: the matrix the model was fitted on).
        """
        users = np.asarray(users, dtype=np.int64).reshape(-1)
        items = np.arange(self.n_tracks) if items is None else np.asarray(items, dtype=np.int64)
        scores = self.score(users, items).astype(np.float32, copy=False)
        if exclude_seen:
            seen = self.seen if seen is None else seen
            if seen is None:
                raise ValueError("exclude_seen needs the seen matrix: pass seen= after load()")
            scores = scores.copy()
            mask = np.asarray(seen[users][:, items].todense(), dtype=bool)
            scores[mask] = -np.inf
        return top_k(scores, items, min(k, len(items)), self.tie_rank[items])

    def save(self, folder: Path) -> Path:
        """Write the model to ``folder`` (created); returns the folder."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        meta = {
            "name": self.name,
            "config": self.config.model_dump(),
            "n_users": self.n_users,
            "n_tracks": self.n_tracks,
        }
        (folder / "model.json").write_text(json.dumps(meta, indent=2) + "\n")
        self._save(folder)
        return folder


def top_k(
    scores: np.ndarray, items: np.ndarray, k: int, tie: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` columns of each row of ``scores`` (ties by ``tie``), as item ids.

    Returns ``(ids, scores)`` of shape ``(rows, k)``; ``-inf`` entries come back as id -1.
    One compiled pass per row (:func:`jamrec.models.topk.top_k_columns`); NaN ranks after
    every number.
    """
    n_rows = scores.shape[0]
    if k <= 0 or scores.shape[1] == 0:
        return np.zeros((n_rows, 0), np.int64), np.zeros((n_rows, 0), np.float32)
    cols, best = top_k_columns(scores, k, tie)
    ids = np.asarray(items)[cols]
    ids[np.isneginf(best)] = -1
    return ids, best
